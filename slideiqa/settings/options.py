"""``MapOptions``: every choice a person makes about a map, in one object.

The CLI (``map`` and ``batch``), the napari widget and the Python API build one of these and hand it
to :func:`slideiqa.pipeline.mapping.map_slide`, so a new option is added in one place. A lab keeps its choices
in a settings file (TOML) that ``map`` and ``batch`` read with ``--settings``; options given on the
command line win over the file, and the file over the defaults. The options a map was made with are
recorded in its attributes.

This module imports nothing heavy: the CLI builds options before it decides what else to load.
"""

from __future__ import annotations

import csv
import io
import math
import re
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from slideiqa.artefacts.registry import ARTEFACT_NAMES, unknown_artefacts
from slideiqa.errors import SlideIQAError
from slideiqa.settings.defaults import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD
from slideiqa.settings.values import is_whole

#: A tile is assessed when at least this share of it is tissue.
DEFAULT_MIN_TISSUE = 0.25
#: Tiles per side of a block: the unit of work, of writing and of resuming.
DEFAULT_BLOCK = 16
#: Upper bounds that keep one block's chunk (its cell arrays are 7 × 7 per tile) and one inference
#: batch within memory: a typo such as ``block = 100000000`` is refused, not attempted.
MAX_BLOCK, MAX_BATCH_SIZE = 256, 1024
#: Devices ``choose_device`` understands.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


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
    #: Whether preparation artefacts are looked for at all, and which (``artefacts.registry``).
    find_artefacts: bool = True
    artefacts: tuple[str, ...] = ARTEFACT_NAMES
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
        for name in (f.name for f in fields(self)):
            problem = _option_problem(name, getattr(self, name))
            if problem:
                raise SettingsError(f"{_option(name)} {problem}")
        object.__setattr__(self, "artefacts", tuple(self.artefacts))  # a settings file's list, kept as given

    @property
    def artefacts_searched(self) -> tuple[str, ...]:
        """The artefacts a map looks for, in the order it looks: none when ``find_artefacts`` is off."""
        return tuple(name for name in ARTEFACT_NAMES if name in self.artefacts) if self.find_artefacts else ()

    def updated(self, **changes: Any) -> MapOptions:
        """These options with ``changes`` applied; ``None`` values (an option not given) change nothing."""
        given = {key: value for key, value in changes.items() if value is not None}
        unknown = sorted(set(given) - {f.name for f in fields(self)})
        if unknown:
            raise SettingsError(
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(f.name for f in fields(self))}"
            )
        return replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The kind of value each option takes. TOML and Python both tell ``"false"`` from ``false``: a string
#: where a switch is expected is refused, never read as true.
OPTION_KINDS: dict[str, str] = {
    "model": "text",
    "device": "text",
    "mpp": "number",
    "threshold": "number",
    "max_bad_share": "number",
    "min_tissue": "number",
    "use_tissue_mask": "switch",
    "find_artefacts": "switch",
    "artefacts": "names",
    "cells": "switch",
    "tile_geojson": "switch",
    "overwrite": "switch",
    "batch_size": "whole",
    "block": "whole",
}
_WANTED = {
    "text": "text",
    "number": "a number",
    "switch": "true or false",
    "whole": "a whole number",
    "names": "a list of names",
}


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "switch":
        return isinstance(value, bool)
    if kind == "number":  # NaN and infinities pass as numbers, to be refused by their range below
        return isinstance(value, float) or is_whole(value)
    if kind == "whole":
        return is_whole(value)
    if kind == "names":
        return isinstance(value, list | tuple) and all(isinstance(name, str) for name in value)
    return isinstance(value, str)


def _option_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for option ``name`` (its kind, then its range), or None.
    ``mpp`` may be None (taken from the slide)."""
    if name == "mpp" and value is None:
        return None
    kind = OPTION_KINDS[name]
    if not _is_kind(value, kind):
        return f"must be {_WANTED[kind]}, got {value!r}" + (" (text)" if isinstance(value, str) else "")
    if name in ("threshold", "max_bad_share", "min_tissue") and not 0.0 <= value <= 1.0:
        return f"must lie between 0 and 1, got {value}"
    if name == "mpp" and (not math.isfinite(value) or value <= 0):
        return f"must be a positive number of µm per pixel, got {value}"
    limit = {"batch_size": MAX_BATCH_SIZE, "block": MAX_BLOCK}.get(name)
    if limit and not 1 <= value <= limit:
        return f"must lie between 1 and {limit}, got {value}"
    if name == "device" and not DEVICE_PATTERN.fullmatch(value):
        return f"must be auto, cpu, cuda or cuda:N, got {value!r}"
    if name == "model" and not value.strip():
        return "must name a shipped model or a checkpoint file"
    if name == "artefacts" and unknown_artefacts(value):
        return f"must name artefacts among {', '.join(ARTEFACT_NAMES)}; got {', '.join(map(repr, unknown_artefacts(value)))}"
    return None


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


#: Keys a settings file may set: the choices that are a lab's policy, not one run's mechanics.
SETTINGS_KEYS = (
    "model",
    "mpp",
    "threshold",
    "max_bad_share",
    "min_tissue",
    "use_tissue_mask",
    "find_artefacts",
    "artefacts",
    "cells",
    "tile_geojson",
    "batch_size",
    "device",
    "block",
)


def load_settings(path: Path, base: MapOptions | None = None) -> MapOptions:
    """``base`` (default: the defaults) with the values of a settings file applied.

    The file is TOML with the keys of :data:`SETTINGS_KEYS` at the top level or under ``[map]``,
    e.g. ``threshold = 0.6`` and ``mpp = 0.25``; a ``[cluster]`` table holds job settings for
    ``batch --cluster`` (:mod:`slideiqa.execution.jobqueue`). A key that is not one of them is an error, so a
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
        raise SettingsError(
            f"{path}: unknown table(s) {', '.join(sorted(tables - {'map', 'cluster'}))}; known: [map], [cluster]"
        )
    values = {key: value for key, value in document.items() if key not in tables}
    map_table = document["map"] if "map" in tables else {}
    both = sorted(set(values) & set(map_table))
    if both:
        raise SettingsError(f"{path}: {', '.join(both)} set both at the top level and under [map]; keep one")
    values |= map_table
    unknown = sorted(key for key in values if key not in SETTINGS_KEYS)
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS_KEYS)}")
    for key, value in values.items():  # named as the file spells them
        problem = _option_problem(key, value)
        if problem:
            raise SettingsError(f"{path}: {key} {problem}")
    return (base or MapOptions()).updated(**values)


class MppTable(dict):
    """Per-slide µm/px (slide path or file name → µm/px) read from a CSV, with what a person should
    hear about its rows: ``duplicates`` (one message per slide listed more than once)."""

    def __init__(self, path: Path, entries: dict[str, float], duplicates: list[str]) -> None:
        super().__init__(entries)
        self.path, self.duplicates = Path(path), duplicates

    def warnings(self, slides: list[Path]) -> list[str]:
        """Duplicate rows, and rows that name none of ``slides``: a typo there silently gives a slide
        the batch's µm/px (or none), so both are said."""
        keys = {str(Path(slide).resolve()) for slide in slides} | {Path(slide).name for slide in slides}
        unmatched = [key for key in self if key not in keys]
        return self.duplicates + (
            [f"{self.path}: {len(unmatched)} row(s) match no slide of this batch: {', '.join(unmatched)}"]
            if unmatched
            else []
        )


#: Column separators a µm/px table may use: spreadsheets in locales with a decimal comma write ``;``.
TABLE_DELIMITERS = ",;\t"


def load_mpp_table(path: Path) -> MppTable:
    """Per-slide µm/px from a CSV with columns ``slide`` and ``mpp``: for slides whose files do not
    say it (or say it wrongly). ``slide`` is a path or a file name; a file name matches any slide of
    that name. A table as spreadsheets save it is read as meant: a byte-order mark is dropped, ``;``
    or tab separators are recognised (with ``;``, a decimal comma too), and header names are matched
    without regard to case or spaces."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such µm/px table") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not UTF-8 text; save the µm/px table as CSV (UTF-8)") from None
    except OSError as error:
        raise SettingsError(f"{path}: cannot read the µm/px table ({error.strerror or error})") from None
    header = text.splitlines()[0] if text.strip() else ""
    delimiter = max(TABLE_DELIMITERS, key=header.count) if header else ","
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as error:
        raise SettingsError(f"{path}: cannot read the µm/px table ({error})") from None
    columns = [name.strip().lower() for name in rows[0]] if rows else []
    if not {"slide", "mpp"} <= set(columns):
        raise SettingsError(f"{path}: needs the columns slide and mpp, has {', '.join(columns) or 'none'}")
    at_slide, at_mpp = columns.index("slide"), columns.index("mpp")
    entries: dict[str, float] = {}
    first_line: dict[str, int] = {}
    duplicates: list[str] = []
    here = Path(path).resolve().parent
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(at_slide, at_mpp):
            raise SettingsError(f"{path}, line {line}: needs a slide and an mpp, has {len(row)} column(s)")
        name, text_value = row[at_slide].strip(), row[at_mpp].strip()
        if not name:
            raise SettingsError(f"{path}, line {line}: no slide named")
        try:
            value = float(text_value.replace(",", ".") if delimiter == ";" else text_value)
        except ValueError:
            raise SettingsError(f"{path}, line {line}: mpp {text_value!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise SettingsError(f"{path}, line {line}: mpp must be positive, got {value}")
        # A path is taken relative to the table's folder, so the table travels with its cohort.
        key = str((here / name).resolve()) if "/" in name else name
        if key in entries:
            duplicates.append(
                f"{path}: {name} is listed on lines {first_line[key]} and {line}; line {line}'s {value:g} µm/px is used"
            )
        first_line.setdefault(key, line)
        entries[key] = value
    return MppTable(path, entries, duplicates)


def mpp_for(slide: Path, table: dict[str, float]) -> float | None:
    """The table's µm/px for ``slide``: by its absolute path, or by its file name."""
    for key in (str(Path(slide).resolve()), Path(slide).name):
        if key in table:
            return table[key]
    return None
