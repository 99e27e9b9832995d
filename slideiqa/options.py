"""``MapOptions``: every choice a person makes about a map, in one object.

The CLI (``map`` and ``batch``), the napari widget and the Python API build one of these and hand it
to :func:`slideiqa.mapping.map_slide`, so a new option is added in one place. A lab keeps its choices
in a settings file (TOML) that ``map`` and ``batch`` read with ``--settings``; options given on the
command line win over the file, and the file over the defaults. The options a map was made with are
recorded in its attributes.

This module imports nothing heavy: the CLI builds options before it decides what else to load.
"""

from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import SlideIQAError
from .rules import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD

#: A tile is assessed when at least this share of it is tissue.
DEFAULT_MIN_TISSUE = 0.25
#: Tiles per side of a block: the unit of work, of writing and of resuming.
DEFAULT_BLOCK = 16


class SettingsError(SlideIQAError):
    """A settings file or a per-slide µm/px table cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class MapOptions:
    """What a map is made with. ``mpp`` overrides (or supplies) the slide's µm/px; ``min_tissue`` is
    the tissue share that makes a tile worth assessing; the verdict fails a slide when more than
    ``max_bad_share`` of its tissue scores below ``threshold`` (or is lost to ink or bad data)."""

    model: str = "default"
    mpp: float | None = None
    threshold: float = DEFAULT_THRESHOLD
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE
    min_tissue: float = DEFAULT_MIN_TISSUE
    use_tissue_mask: bool = True
    find_artefacts: bool = True
    #: With a model that has a cell head, also write where in each tile (the map's cell arrays).
    cells: bool = True
    #: Also write ``tiles.geojson``: every tissue tile as a QuPath tile object with its measurements.
    tile_geojson: bool = False
    overwrite: bool = False
    batch_size: int = 32
    device: str = "auto"
    block: int = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        # Named as the command line spells them: that is where most values come from.
        for name in ("threshold", "max_bad_share", "min_tissue"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SettingsError(f"{_option(name)} must lie between 0 and 1, got {value}")
        if self.mpp is not None and (not math.isfinite(self.mpp) or self.mpp <= 0):
            raise SettingsError(f"--mpp must be a positive number of µm per pixel, got {self.mpp}")
        for name in ("batch_size", "block"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{_option(name)} must be at least 1, got {getattr(self, name)}")

    def updated(self, **changes: Any) -> "MapOptions":
        """These options with ``changes`` applied; ``None`` values (an option not given) change nothing."""
        given = {key: value for key, value in changes.items() if value is not None}
        unknown = sorted(set(given) - {f.name for f in fields(self)})
        if unknown:
            raise SettingsError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(f.name for f in fields(self))}")
        return replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


#: Keys a settings file may set: the choices that are a lab's policy, not one run's mechanics.
SETTINGS_KEYS = ("model", "mpp", "threshold", "max_bad_share", "min_tissue", "use_tissue_mask", "find_artefacts", "cells",
                 "tile_geojson", "batch_size", "device", "block")


def load_settings(path: Path, base: MapOptions | None = None) -> MapOptions:
    """``base`` (default: the defaults) with the values of a settings file applied.

    The file is TOML with the keys of :data:`SETTINGS_KEYS` at the top level or under ``[map]``,
    e.g. ``threshold = 0.6`` and ``mpp = 0.25``; a ``[cluster]`` table holds job settings for
    ``batch --cluster`` (:mod:`slideiqa.clusters`). A key that is not one of them is an error, so a
    typo is never silently ignored."""
    try:
        document = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such settings file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{path}: cannot read the settings file ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML ({error})") from None
    tables = {key for key, value in document.items() if isinstance(value, dict)}
    if tables - {"map", "cluster"}:
        raise SettingsError(f"{path}: unknown table(s) {', '.join(sorted(tables - {'map', 'cluster'}))}; "
                            "known: [map], [cluster]")
    values = document["map"] if "map" in document else {k: v for k, v in document.items() if k not in tables}
    unknown = sorted(key for key in values if key not in SETTINGS_KEYS)
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS_KEYS)}")
    try:
        return (base or MapOptions()).updated(**values)
    except (SettingsError, TypeError) as error:
        raise SettingsError(f"{path}: {error}") from None


def load_mpp_table(path: Path) -> dict[str, float]:
    """Per-slide µm/px from a CSV with columns ``slide`` and ``mpp``: for slides whose files do not
    say it (or say it wrongly). ``slide`` is a path or a file name; a file name matches any slide of
    that name."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such µm/px table") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SettingsError(f"{path}: cannot read the µm/px table ({error})") from None
    if rows and not {"slide", "mpp"} <= set(rows[0]):
        raise SettingsError(f"{path}: needs the columns slide and mpp, has {', '.join(rows[0])}")
    table: dict[str, float] = {}
    here = Path(path).resolve().parent
    for line, row in enumerate(rows, start=2):
        try:
            value = float(row["mpp"])
        except (TypeError, ValueError):
            raise SettingsError(f"{path}, line {line}: mpp {row['mpp']!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise SettingsError(f"{path}, line {line}: mpp must be positive, got {value}")
        name = (row["slide"] or "").strip()
        # A path is taken relative to the table's folder, so the table travels with its cohort.
        table[str((here / name).resolve()) if "/" in name else name] = value
    return table


def mpp_for(slide: Path, table: dict[str, float]) -> float | None:
    """The table's µm/px for ``slide``: by its absolute path, or by its file name."""
    for key in (str(Path(slide).resolve()), Path(slide).name):
        if key in table:
            return table[key]
    return None
