"""What a map will be, decided before any task runs: the tile grid at the model's µm/px, the tissue
and the preparation artefacts from one thumbnail, the settings that make the map's numbers (its
resume fingerprint), and the existing map to resume, if any."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slideiqa.artefacts.registry import ARTEFACT_NAMES
from slideiqa.artefacts.thumbnail import artefact_labels
from slideiqa.io.grid import COARSEST_RATIO, TileGrid, judging_scale, read_plan, tile_fractions
from slideiqa.io.slide import Slide, SlideError, file_checksum, open_slide
from slideiqa.measure.exposure_evidence import SATURATED
from slideiqa.measure.tissue import tissue_mask
from slideiqa.models.card import ModelCard
from slideiqa.models.predictor import Predictor
from slideiqa.models.zoo import resolve_model
from slideiqa.outputs.store import (
    MapError,
    MapLayout,
    QualityMap,
    is_quality_map,
    open_map,
)
from slideiqa.settings.options import DEFAULT_MIN_TISSUE, MapOptions

MASK_PIXELS_PER_TILE = 8


MAX_MASK_SIDE = 8192


#: A tissue thumbnail that needs more level pixels than this decoded (a slide without a usable
#: pyramid) is announced with an estimate of how long it takes.
SLOW_THUMBNAIL_PIXELS = 400_000_000


Progress = Callable[[int, int], None]


Notice = Callable[[str], None]


log = logging.getLogger(__name__)


#: How tiles are read and judged (``MapFingerprint.judgement``): 1 is edge tiles mirrored past the slide,
#: pale stroma joined into tissue, exposure judged by evidence and the debris colour rule of stains;
#: 2 adds the JPEG step read from the tile and noise measured on its unclipped patches; 3 reads tone on
#: block means, motion on a fine band from 0.13 cycles/px, and floors P(exposure) on certain over-exposure;
#: 4 reads motion on an edge tile's own part and on bands scaled to a slightly coarser slide's µm/px;
#: 5 caps P(defocus) where the tile's spectrum shows fine detail no defocused tile has (defocus_evidence);
#: 6 searches debris on averaged optical densities and counts a grey speck touching marking dye as dye;
#: 7 raises P(defocus) on a tile full of tissue with almost no fine detail (defocus_evidence's floor);
#: 8 lets the measured JPEG step decide P(jpeg) on tiles that are the file's own pixels (judge_jpeg).
JUDGEMENT = 8


@dataclass
class MapFingerprint:
    """Everything that determines a map's numbers: a map is resumed only under an identical
    fingerprint. It is not a settings file (:func:`~slideiqa.settings.options.load_settings`); a map
    stores it under its attribute ``settings``, as maps always have."""

    model_sha256: str
    slide_checksum: str
    slide_mpp: float
    tissue_mask: bool
    min_tissue: float
    block: int
    artefacts: list[str] = field(default_factory=lambda: list(ARTEFACT_NAMES))
    #: Cells per tile side of the cell arrays (0: none; the model has no cell head or was told not to).
    cells_per_side: int = 0
    #: Defect families measured rather than taken from the network (``Predictor.measured_families``).
    #: Maps made before motion was measured lack it, and are not resumed under the new judgement.
    measured_families: list[str] = field(default_factory=list)
    #: Whether each tile's tone is judged against its slide's when the map is finished
    #: (``slide_tone``; what was found goes to the attribute ``tone_context``). Maps made before that
    #: have no tones and are not resumed under it.
    tone_against_slide: bool = False
    #: Whether the cells are judged with their tile (their probabilities kept in ``cell_probs``).
    #: Maps made before keep none, and are not resumed under it.
    cells_against_slide: bool = False
    #: The version of how tiles are read and judged beyond the model and the settings above (edge
    #: tiles mirrored, pale stroma joined into tissue, the debris colour rule): a map made under an
    #: earlier one is not resumed into a mix of both. Raise :data:`JUDGEMENT` with any such change.
    judgement: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _default_output(slide_path: Path) -> Path:
    return slide_path.with_name(slide_path.stem + ".quality.zarr")


def output_path(slide_path: str | Path, out: str | Path | None) -> Path:
    """Where a map goes: ``out``, or beside the slide."""
    return Path(out) if out else _default_output(Path(slide_path).resolve())


def _slide_pixel_size(slide: Slide, mpp: float | None) -> float:
    if mpp is not None:
        if not math.isfinite(mpp) or mpp <= 0:
            raise SlideError(f"{slide.path}: --mpp must be a positive number, got {mpp}")
        return float(mpp)
    if slide.mpp is None:
        raise SlideError(f"{slide.path}: pixel size unknown (no µm/px in its metadata); pass it with --mpp")
    return slide.mpp


def slide_grid(slide: Slide, mpp: float | None, card: ModelCard) -> TileGrid:
    """The grid a map lays on ``slide`` for a model with ``card`` (``mpp`` overriding the file's), or
    a one-line error for a slide too coarse to judge."""
    slide_mpp = _slide_pixel_size(slide, mpp)
    if slide_mpp > card.mpp * COARSEST_RATIO:
        raise MapError(
            f"{slide.path}: {slide_mpp:g} µm/px is more than {COARSEST_RATIO - 1:.0%} coarser than the "
            f"{card.mpp:g} µm/px the model was trained for; enlarged tiles would look blurred, so it "
            "cannot judge this slide"
        )
    return TileGrid(
        slide.dimensions[0], slide.dimensions[1], slide_mpp, judging_scale(slide_mpp, card.mpp), card.tile_size
    )


@dataclass
class TissueMap:
    """What the thumbnail says of each tile: its tissue fraction, and the label slideiqa gives it
    itself (a thumbnail artefact's label, ``artefacts.registry``; 0 elsewhere)."""

    thumbnail: np.ndarray
    tissue: np.ndarray
    fixed: np.ndarray


def tissue_map(
    slide: Slide,
    grid: TileGrid,
    notice: Notice | None = None,
    artefacts: tuple[str, ...] | list[str] = ARTEFACT_NAMES,
    min_tissue: float = DEFAULT_MIN_TISSUE,
) -> TissueMap:
    """Tissue fractions and the tiles under preparation artefacts (pen ink, folds, bubbles, coverslip
    edges: ``artefacts.thumbnail``; those of ``artefacts``) from one thumbnail, sized so every tile spans several mask pixels.
    Where the thumbnail could not be decoded, whether there is tissue is unknown: those tiles get
    fraction 1, so that they are read (and found unreadable, or assessed) instead of silently taken
    for glass. A slide without a pyramid level near the thumbnail's size must be decoded whole for
    it; ``notice`` is then told how long that will take."""
    rows, cols = grid.shape
    side = int(min(MAX_MASK_SIDE, max(256, MASK_PIXELS_PER_TILE * max(rows, cols))))
    gaps: list[tuple[int, int, int, int]] = []
    thumbnail = slide.thumbnail(side, gaps=gaps, progress=_slow_thumbnail_notice(slide, side, notice))
    um_per_px = grid.width * grid.slide_mpp / thumbnail.shape[1]
    stained = tissue_mask(thumbnail, um_per_px=um_per_px)
    if artefacts:
        fractions, fixed = artefact_labels(thumbnail, stained, grid, um_per_px, min_tissue, artefacts)
    else:
        fractions, fixed = tile_fractions(stained, grid), np.zeros(grid.shape, np.uint8)
    if gaps:
        unknown = np.zeros(thumbnail.shape[:2], bool)
        for x0, y0, x1, y1 in gaps:
            unknown[y0:y1, x0:x1] = True
        fractions[tile_fractions(unknown, grid) > 0] = 1.0
    return TissueMap(thumbnail, fractions, fixed)


#: Share of a slide without tissue clipped to pure white beyond which the error asks about exposure.
CLIPPED_WHITE_SHARE = 0.5


def _no_tissue_message(slide_path: Path, min_tissue: float, thumbnail: np.ndarray) -> str:
    """The one-line error of a slide with no tissue tile. Twice the light turns pale tissue (a faint
    IHC counterstain) into glass, so where most of the slide is clipped to pure white the message
    says so: the scan may hold tissue that its exposure erased."""
    message = f"{slide_path}: no tissue found (no tile ≥ {min_tissue:.0%} tissue)"
    white = float((thumbnail.min(axis=-1) >= SATURATED).mean())
    if white > CLIPPED_WHITE_SHARE:
        message += (
            f"; {white:.0%} of it is clipped to pure white, as an over-exposed scan is: if the glass "
            "holds tissue, check the scanner's exposure and rescan"
        )
    return message + "; use --no-tissue-mask to assess every tile"


def _slow_thumbnail_notice(slide: Slide, side: int, notice: Notice | None) -> Progress | None:
    """A thumbnail progress callback that, after the first piece, estimates the whole decode and
    tells ``notice`` (or the log) once, when the thumbnail level is larger than SLOW_THUMBNAIL_PIXELS."""
    level = slide.thumbnail_level(side)
    level_width, level_height = slide.info.level_dimensions[level]
    if level_width * level_height <= SLOW_THUMBNAIL_PIXELS:
        return None
    tell = notice or log.warning
    started = time.perf_counter()
    told = False

    def estimate(done: int, total: int) -> None:
        nonlocal told
        if told:
            return
        told = True
        seconds = (time.perf_counter() - started) * total / max(done, 1)
        pyramid = "has no pyramid" if slide.level_count == 1 else f"has no level near {side} px across"
        tell(
            f"{slide.path}: the slide {pyramid}, so its tissue mask decodes all {total / 1e6:,.0f} Mpx of "
            f"level {level}: about {_duration(seconds)} at the rate of the first part, before tiles are mapped"
        )

    return estimate


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _prepare_output(out: Path, settings: MapFingerprint, overwrite: bool) -> QualityMap | None:
    """The existing map to resume (or to report as complete), or None to start a new one."""
    if overwrite and out.is_symlink():
        raise MapError(
            f"{out}: is a symbolic link (to {os.readlink(out)}); to replace the map, give its own path "
            "with --overwrite, or remove the link"
        )
    if not out.exists() or overwrite:
        if out.exists() and not is_quality_map(out):
            raise MapError(f"{out}: exists and is not a slideiqa quality map; refusing to overwrite it")
        return None
    if not is_quality_map(out):
        raise MapError(f"{out}: exists and is not a slideiqa quality map; refusing to overwrite it")
    existing = open_map(out)
    # Maps made before cell arrays existed have no such setting: they have none.
    stored = existing.fingerprint
    if stored != settings.to_dict():
        raise MapError(
            f"{out}: an existing map {_difference(stored, settings.to_dict())}; use --overwrite to replace it"
        )
    return existing


def _difference(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    """What makes an existing map not this run's, in words: the slide, the model, how slideiqa
    judges, or a setting."""
    if stored.get("slide_checksum") != wanted["slide_checksum"]:
        return "of this slide as it was before: the slide file has changed since"
    if stored.get("model_sha256") != wanted["model_sha256"]:
        return "made with another model"
    if stored.get("judgement", 0) != wanted["judgement"]:
        return "made by an earlier slideiqa, which judged tiles differently (README: what changed)"
    changed = sorted(key for key in wanted if stored.get(key) != wanted[key])
    return f"made with other settings ({', '.join(changed)})"


@dataclass
class MapPlan:
    """What a map will be, decided before any task runs: the model, the grid, the tissue and fixed
    labels from the thumbnail, the settings that make its numbers, and the existing map, if any."""

    slide_path: Path
    out: Path
    options: MapOptions
    checkpoint: Path
    card: Any
    grid: TileGrid
    found: TissueMap
    to_assess: np.ndarray
    settings: MapFingerprint
    slide_attributes: dict[str, Any]
    existing: QualityMap | None

    @property
    def layout(self) -> MapLayout:
        return MapLayout(
            *self.grid.shape, self.card.classes, self.options.block, self.grid.tile_um, self.settings.cells_per_side
        )


def plan_map(
    slide_path: str | Path, out: str | Path | None, options: MapOptions, notice: Notice | None = None
) -> MapPlan:
    """Open the model and the slide, lay the grid, find tissue and ink, and check any existing map:
    everything that can fail on bad input fails here, before any output exists."""
    out = output_path(slide_path, out)
    slide_path = Path(slide_path).resolve()  # workers, possibly on other machines, get absolute paths
    checkpoint = resolve_model(options.model)
    # Loading once here checks the checkpoint against its card and prepares the ONNX graph, so
    # that a bad model fails before any output exists and workers only read the cached graph.
    predictor = Predictor(checkpoint, device=options.device)
    card = predictor.card
    with open_slide(slide_path) as slide:
        grid = slide_grid(slide, options.mpp, card)
        found = tissue_map(slide, grid, notice, artefacts=options.artefacts_searched, min_tissue=options.min_tissue)
        info, reading = slide.info, read_plan(slide, grid)
    tissue, fixed = found.tissue, found.fixed
    to_assess = (tissue >= options.min_tissue if options.use_tissue_mask else np.ones_like(tissue, bool)) & (fixed == 0)
    if not to_assess.any() and not fixed.any():
        raise MapError(_no_tissue_message(slide_path, options.min_tissue, found.thumbnail))
    checksum = file_checksum(slide_path)
    settings = MapFingerprint(
        card.weights_sha256,
        checksum,
        grid.slide_mpp,
        options.use_tissue_mask,
        options.min_tissue if options.use_tissue_mask else 0.0,
        options.block,
        list(options.artefacts_searched),
        card.cells_per_side if options.cells else 0,
        predictor.measured_families,
        tone_against_slide={"good", "exposure"} <= set(card.classes),
        cells_against_slide=bool(options.cells and card.cells_per_side),
        judgement=JUDGEMENT,
    )
    slide_attributes = {
        "path": str(slide_path),
        "size_bytes": slide_path.stat().st_size,
        "checksum": checksum,
        "mpp": grid.slide_mpp,
        "mpp_from": "option" if options.mpp is not None else "metadata",
        "dimensions": list(info.level_dimensions[0]),
        "vendor": info.vendor,
        "reading": {
            "level": reading.level,
            "read_px": reading.read_size,
            "decode_factor": reading.decode_factor,
            "native_pixels": reading.native,
            "decoder": reading.decoder or info.reader,
        },
    }
    existing = _prepare_output(out, settings, options.overwrite)
    return MapPlan(
        slide_path, out, options, checkpoint, card, grid, found, to_assess, settings, slide_attributes, existing
    )
