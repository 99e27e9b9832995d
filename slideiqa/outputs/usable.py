"""The usable-tissue mask of a mapped slide: where there is tissue, and it can be trusted.

HistoQC calls this ``mask_use`` and labs feed it to the analysis that runs after QC (cell counts,
tumour area, a classifier's patches): only pixels on it are worth analysing. It is made from a
finished quality map and the slide itself, at a µm/px of the user's choosing:

* **tissue** — the slide read at that µm/px and :func:`slideiqa.measure.tissue.tissue_mask` applied, so
  the tissue's outline is as fine as the chosen scale, not the 112 µm tile;
* **not under a preparation artefact** — pen ink, coverslip edges, folds and bubbles found again
  at pixel level by the thumbnail detectors the map was made with (:mod:`slideiqa.artefacts.registry`),
  so that ink on the edge of a tile the map kept is still left out (the map only labels a tile when
  enough of it is covered); skipped for a map made without artefact detection;
* **in a tile that passes** — assessed, scoring at least the threshold (the map's own, unless
  another is given), and not labelled an artefact or unreadable — **and in a cell that passes**, where
  the map has cell arrays (16 µm cells of the default model's cell head): a defect inside a tile that
  passes is left out where the cells find it. A failing tile is left out whole: its passing cells are
  not trusted more than the tile's verdict.

The mask is written as a PNG (255 usable, 0 not) whose resolution (pHYs) states its µm/px, and as
QuPath GeoJSON: one annotation per connected piece of usable tissue, in level-0 pixels, holes kept,
with its area in µm².
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from slideiqa.artefacts.registry import thumbnail_artefacts
from slideiqa.io.files import write_atomically
from slideiqa.io.slide import file_checksum, open_slide
from slideiqa.measure.tissue import tissue_mask
from slideiqa.outputs.report import qupath_feature
from slideiqa.outputs.store import BACKGROUND, MapError, QualityMap, open_map
from slideiqa.settings.defaults import DEFAULT_USABLE_UM_PER_PX

#: A mask larger than this across would not fit in memory as the RGB image it is made from; a
#: finer mask of a whole slide is a job for the dense map, not for this export.
MAX_SIDE_PX = 20_000
USABLE_CLASS = "usable tissue"
USABLE_COLOUR = [0, 160, 80]
MICROMETRES_PER_INCH = 25_400.0


@dataclass
class UsableTissue:
    """A usable-tissue mask and where it lies on the slide."""

    mask: np.ndarray  # bool, rows × columns of the mask
    um_per_px: float  # on the glass, per mask pixel (the slide's width in µm over the mask's width)
    level0_per_px: tuple[float, float]  # level-0 slide pixels per mask pixel, across and down
    slide: Path
    threshold: float

    @property
    def area_um2(self) -> float:
        return float(self.mask.sum()) * self.um_per_px**2


def usable_tissue(
    map_path: str | Path,
    um_per_px: float = DEFAULT_USABLE_UM_PER_PX,
    slide_path: str | Path | None = None,
    threshold: float | None = None,
) -> UsableTissue:
    """The usable-tissue mask of the map at ``map_path`` at about ``um_per_px`` (see the module
    docstring). ``slide_path`` overrides the slide the map names (a slide moved since it was
    mapped); it must be the same file, which its checksum tells."""
    quality_map = open_map(map_path)
    if not quality_map.complete:
        raise MapError(
            f"{quality_map.path}: the map is not complete; run `slideiqa map` on its slide again to finish it"
        )
    mapped, grid = quality_map.slide, quality_map.grid
    slide = Path(slide_path or mapped.path)
    if not slide.exists():
        raise MapError(f"{slide}: the map's slide is not there (moved?); name it with --slide")
    if file_checksum(slide) != mapped.checksum:
        raise MapError(f"{slide}: not the slide this map was made from (its content differs)")
    mpp = mapped.mpp
    if not math.isfinite(um_per_px) or um_per_px < mpp:
        raise MapError(f"{slide}: --um-per-px must be at least the slide's own {mpp:g} µm/px, got {um_per_px:g}")
    width, height = mapped.dimensions
    side = math.ceil(max(width, height) * mpp / um_per_px)
    if side > MAX_SIDE_PX:
        raise MapError(
            f"{slide}: a mask at {um_per_px:g} µm/px would be {side} px across (at most {MAX_SIDE_PX}); "
            "choose a coarser --um-per-px"
        )
    threshold = quality_map.options.threshold if threshold is None else float(threshold)

    with open_slide(slide) as opened:
        image = opened.thumbnail(side)
    level0_per_px = (width / image.shape[1], height / image.shape[0])
    found_um_per_px = level0_per_px[0] * mpp
    mask = tissue_mask(image)
    for detector in thumbnail_artefacts(quality_map.artefacts_searched):
        mask &= ~detector.find(image, found_um_per_px)
    mask &= _passing(quality_map, threshold, image.shape[:2], level0_per_px, grid.step)
    return UsableTissue(mask, found_um_per_px, level0_per_px, slide, threshold)


def _passing(
    quality_map: QualityMap, threshold: float, shape: tuple[int, int], level0_per_px: tuple[float, float], step: float
) -> np.ndarray:
    """Whether each mask pixel lies in a tile that passes — and, in a map with cell arrays, in a cell
    that passes too: a defect the cells find inside a passing tile is left out."""
    classes = len(quality_map.classes)

    def passes(score: np.ndarray, label: np.ndarray, cell_step: float) -> np.ndarray:
        judged = (score >= threshold) & (label != BACKGROUND) & (label <= classes)
        rows = _index_of(shape[0], level0_per_px[1], cell_step, judged.shape[0])
        cols = _index_of(shape[1], level0_per_px[0], cell_step, judged.shape[1])
        return judged[np.ix_(rows, cols)]

    passing = passes(quality_map.array("score"), quality_map.array("label"), step)
    if quality_map.cells_per_side:
        passing &= passes(
            quality_map.array("cell_score"), quality_map.array("cell_label"), step / quality_map.cells_per_side
        )
    return passing


def _index_of(pixels: int, level0_per_px: float, step: float, count: int) -> np.ndarray:
    """The tile (or cell) row or column under the centre of each of ``pixels`` mask rows or columns."""
    return np.minimum(((np.arange(pixels) + 0.5) * level0_per_px / step).astype(int), count - 1)


def _mask_png(usable: UsableTissue) -> bytes:
    """The mask as an 8-bit PNG (255 usable) whose pHYs says its µm/px, as QuPath and Fiji read it."""
    dpi = MICROMETRES_PER_INCH / usable.um_per_px
    buffer = io.BytesIO()
    Image.fromarray(usable.mask.astype(np.uint8) * 255).save(buffer, "PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


def mask_geojson(usable: UsableTissue) -> dict[str, Any]:
    """The mask as QuPath annotations (level-0 pixels): one per connected piece, holes kept, its
    outline simplified by at most half a mask pixel."""
    import shapely
    from shapely.affinity import scale
    from shapely.geometry import mapping

    runs = _row_runs(usable.mask)
    union = shapely.union_all(shapely.box(runs[:, 1], runs[:, 0], runs[:, 2], runs[:, 0] + 1)) if len(runs) else None
    pieces = [] if union is None or union.is_empty else getattr(union, "geoms", [union])
    features = []
    for index, piece in enumerate(sorted(pieces, key=lambda p: -p.area)):
        area_um2 = piece.area * usable.um_per_px**2
        outline = scale(piece, *usable.level0_per_px, origin=(0, 0))
        outline = outline.simplify(min(usable.level0_per_px) / 2, preserve_topology=True)
        features.append(
            qupath_feature(
                mapping(outline),
                "annotation",
                USABLE_CLASS,
                USABLE_COLOUR,
                f"usable tissue ({area_um2 / 1e6:.3f} mm²)",
                {"area µm^2": area_um2},
                ("usable", usable.um_per_px, usable.threshold, index),
            )
        )
    return {"type": "FeatureCollection", "features": features}


def _row_runs(mask: np.ndarray) -> np.ndarray:
    """(row, first column, column past the last) of every horizontal run of True in ``mask``."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    rows, starts = np.nonzero(np.diff(padded, axis=1) == 1)
    _, ends = np.nonzero(np.diff(padded, axis=1) == -1)
    return np.stack([rows, starts, ends], axis=1)


def write_usable(usable: UsableTissue, png: Path, geojson: Path | None) -> None:
    """Both files written atomically: an interrupted export leaves no half-written mask."""
    write_atomically(png, _mask_png(usable))
    if geojson is not None:
        write_atomically(geojson, json.dumps(mask_geojson(usable)) + "\n")
