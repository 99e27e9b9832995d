"""A finished map's summary as typed records: what ``summary.json`` and the map's attributes hold.

Code reads the summary's fields (``summary.verdict``, ``summary.tone.glass_median``) rather than
chains of string keys, so a renamed figure is a type error, not a silent ``None``. The JSON keeps
its keys and their order — labs' scripts read it — and :meth:`MapSummary.from_dict` reads the
summaries of maps written by earlier versions (missing figures take their defaults; figures this
version does not know are kept as they were).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


class _Record:
    """A record whose JSON form is its fields in order, nested records and containers copied."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]  # every subclass is a dataclass


@dataclass(frozen=True)
class MapWarning(_Record):
    """What a person must know beyond the figures: ``code`` (an artefact's name, ``unreadable``,
    ``tone``, ``dye`` or ``glass``), ``count`` (tissue tiles; 1 for the slide's glass), ``message``."""

    code: str
    count: int
    message: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MapWarning:
        return cls(str(data.get("code", "")), int(data.get("count") or 0), str(data.get("message", "")))


@dataclass(frozen=True)
class CellSummary(_Record):
    """What the cell arrays add: of the cells of assessed tiles, the share below the threshold and
    how many of those each class has (defects smaller than a tile, which the tile figures miss)."""

    cell_um: float
    assessed_cells: int
    share_below_threshold: float
    below_threshold_by_class: dict[str, int]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellSummary:
        return cls(
            float(data["cell_um"]),
            int(data["assessed_cells"]),
            float(data["share_below_threshold"]),
            dict(data.get("below_threshold_by_class") or {}),
        )


@dataclass(frozen=True)
class ToneSummary(_Record):
    """The slide's tone, as its tiles were judged against it (``measure.slide_tone``): per tone
    measurement its median and allowed spread (``reference``), and how many tiles were compared,
    depart from it, and fit it."""

    reference: dict[str, dict[str, float | None]]
    tiles_compared: int
    tiles_departing: int
    tiles_fitting: int

    @property
    def glass_median(self) -> float | None:
        """The slide's median glass level, or None where too few tiles showed glass."""
        return (self.reference.get("glass") or {}).get("median")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToneSummary:
        return cls(
            {name: dict(values) for name, values in (data.get("reference") or {}).items()},
            int(data.get("tiles_compared") or 0),
            int(data.get("tiles_departing") or 0),
            int(data.get("tiles_fitting") or 0),
        )


@dataclass(frozen=True)
class VerdictFigures:
    """The figures a verdict rests on, over tissue tiles (assessed, or given a fixed label: an
    artefact, unreadable); ``outputs.report.summarize`` computes them for any threshold and rule."""

    tissue_tiles: int
    unreadable_tiles: int
    artefact_tiles: dict[str, int]
    grid_tiles: int
    share_per_class: dict[str, float]
    mean_score: float | None
    share_below_threshold: float
    threshold: float
    max_bad_share: float
    verdict: str
    verdict_rule: str

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def figures(self) -> dict[str, Any]:
        """These figures alone, by name (to start a :class:`MapSummary` or replace its verdict)."""
        return {spec.name: getattr(self, spec.name) for spec in fields(VerdictFigures)}


#: Sections a summary holds only where the map has them (cell arrays, a tone judgement).
_OPTIONAL_SECTIONS = ("cells", "tone")
_SECTION_TYPES: dict[str, Any] = {"cells": CellSummary, "tone": ToneSummary}


@dataclass(frozen=True)
class MapSummary(VerdictFigures):
    """A finished map's summary: the verdict's figures, what a lab records of the slide (size,
    µm/px and where it came from, tissue area, provenance), the run, and the warnings."""

    slide: str = ""
    model: str = ""
    mpp: float | None = None
    mpp_from: str | None = None
    dimensions_px: list[int] = field(default_factory=list)
    size_mm: list[float] = field(default_factory=list)
    tissue_area_mm2: float | None = None
    tile_um: float | None = None
    slideiqa_version: str = ""
    created: str = ""
    runtime_s: float | None = None
    tiles_per_s: float | None = None
    resumed_blocks: int = 0
    dye_tiles: int = 0
    #: How the slide was read (level, decoder, decode factor, fallbacks): the reader's own record.
    reading: dict[str, Any] = field(default_factory=dict)
    cells: CellSummary | None = None
    tone: ToneSummary | None = None
    warnings: list[MapWarning] = field(default_factory=list)
    #: Figures of an earlier version's summary that this one does not know, kept as they were.
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The summary as ``summary.json`` holds it (sections the map lacks left out)."""
        document = asdict(self)
        extra = document.pop("extra")
        for name in _OPTIONAL_SECTIONS:
            if document[name] is None:
                del document[name]
        return document | extra

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MapSummary:
        """A summary from its JSON form, also one written by an earlier version."""
        known = {spec.name for spec in fields(cls)} - {"extra"}
        values = {name: data[name] for name in known if name in data}
        for name, kind in _SECTION_TYPES.items():
            if values.get(name) is not None:
                values[name] = kind.from_dict(values[name])
        values["warnings"] = [MapWarning.from_dict(warning) for warning in values.get("warnings") or []]
        missing = {spec.name: None for spec in fields(VerdictFigures) if spec.name not in values}
        return cls(**(missing | values), extra={key: value for key, value in data.items() if key not in known})


@dataclass(frozen=True)
class VerdictRecord(_Record):
    """One verdict a map was given, kept in its attributes' history (a rerun under another rule
    adds one, so a verdict never changes silently)."""

    verdict: str | None
    verdict_rule: str | None
    threshold: float | None
    max_bad_share: float | None
    share_below_threshold: float | None
    at: str | None = None

    @classmethod
    def of(cls, summary: VerdictFigures, at: str | None = None) -> VerdictRecord:
        return cls(
            summary.verdict,
            summary.verdict_rule,
            summary.threshold,
            summary.max_bad_share,
            summary.share_below_threshold,
            at,
        )

    def same_verdict(self, other: VerdictRecord) -> bool:
        """Whether two records give the same verdict under the same rule, whenever given."""
        return {**self.to_dict(), "at": None} == {**other.to_dict(), "at": None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerdictRecord:
        return cls(**{spec.name: data.get(spec.name) for spec in fields(cls)})
