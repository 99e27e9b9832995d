"""The defect families judged by measuring them, applied in one place for maps, explanations and
the generalisation benchmark.

Five families have a physical signature a network trained on a few labs does not reliably learn:
noise (``noise_level``: fine-scale energy everywhere in the tile), motion (``motion_blur``: fine
detail gone along one direction only), defocus (``defocus_evidence``: fine detail gone in every
direction, coarse structure kept), JPEG (``jpeg_quantisation``: the DCT lattice of the block grid,
read as the quality's step) and exposure (``exposure_evidence``: a white point no light source
leaves, stain clipped to white, a crushed black level — never a tile's darkness alone). Where a
model sees tiles at the scale the noise and motion measurements were calibrated on, its P(noise)
and P(motion) are replaced by the measurements' and its P(defocus) is capped where the tile shows
fine detail no defocused tile has and raised where a tile full of tissue has almost none (what it
takes or gives goes to the families not measured); the other
classes keep their ratios. Its P(jpeg) is the measured step's on tiles that are their file's own
pixels (compression leaves its lattice there) and raised to it elsewhere, and its P(exposure) is
capped by the exposure evidence, at any scale. Elsewhere the network's own probabilities stand.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from slideiqa.io.edge_tiles import own_extent
from slideiqa.measure.blas_threads import one_blas_thread
from slideiqa.measure.defocus_evidence import DEFOCUS_RULE, judge_defocus, measures_defocus, tissue_share
from slideiqa.measure.exposure_evidence import (
    EXPOSURE_RULE,
    ExposureEvidence,
    exposure_evidence,
    judge_exposure,
    measures_exposure,
)
from slideiqa.measure.families import how_measured
from slideiqa.measure.jpeg_quantisation import JPEG_RULE, jpeg_scale, judge_jpeg, measures_jpeg, readable
from slideiqa.measure.motion_blur import MOTION_RULE, judge_motion, measures_motion, motion_score, sector_energies
from slideiqa.measure.noise_level import NOISE_RULE, PatchNoise, judge_noise, measures_noise, patch_noise

#: Every family that can be measured, in the order the measurements are applied.
MEASURABLE = ("noise", "motion", "defocus", "jpeg", "exposure")


def measured_families(classes: list[str], mpp: float) -> list[str]:
    """The families measured for a model with these classes seeing tiles at ``mpp`` µm/px."""
    applies = {
        "noise": measures_noise(classes, mpp),
        "motion": measures_motion(classes, mpp),
        "defocus": measures_defocus(classes, mpp),
        "jpeg": measures_jpeg(classes),
        "exposure": measures_exposure(classes),
    }
    return [family for family in MEASURABLE if applies[family]]


@dataclass(frozen=True)
class TileMeasurements:
    """What the measured families read from a batch of tiles, per tile (None where a family is not
    measured): taken from the pixels alone, then applied to the network's probabilities of the
    tiles (:func:`judge_tiles`) and of their cells (:func:`judge_cells`)."""

    noise: PatchNoise | None = None
    motion: np.ndarray | None = None
    detail: np.ndarray | None = None
    tissue: np.ndarray | None = None
    jpeg: np.ndarray | None = None
    #: Whether each tile is large enough to read its JPEG step (an edge tile's own part may not be).
    jpeg_readable: np.ndarray | None = None
    exposure: ExposureEvidence | None = None


def measure_tiles(tiles: np.ndarray, families: list[str], mpp: float | None = None) -> TileMeasurements:
    """The measurements ``families`` need of (N, H, W, 3) uint8 ``tiles``; ``mpp``: the tiles' µm/px
    where not the model's, as for a slide judged at its own slightly coarser pixels."""
    wanted = set(families)
    with one_blas_thread():
        # Edge tiles' own parts, found once for the measurements that read them (edge_tiles.py).
        extent = own_extent(tiles) if {"jpeg", "motion", "defocus"} & wanted else None
        # One spectrum for motion and the defocus evidence.
        energies = sector_energies(tiles, mpp, extent) if {"motion", "defocus"} & wanted else None
        return TileMeasurements(
            noise=patch_noise(tiles) if "noise" in wanted else None,  # once, for tiles and cells
            motion=motion_score(tiles, mpp, extent, energies) if "motion" in wanted else None,
            detail=energies.detail() if energies is not None and "defocus" in wanted else None,
            tissue=tissue_share(tiles) if "defocus" in wanted else None,
            jpeg=jpeg_scale(tiles, extent) if "jpeg" in wanted else None,
            jpeg_readable=readable(extent) if extent is not None and "jpeg" in wanted else None,
            exposure=exposure_evidence(tiles) if "exposure" in wanted else None,
        )


def joined(parts: list[TileMeasurements]) -> TileMeasurements:
    """The measurements of consecutive parts of a batch as one record, tile for tile as
    :func:`measure_tiles` of the whole batch gives them (every measurement is a tile's own)."""

    def join(values: list[Any]) -> Any:
        if values[0] is None:
            return None
        if isinstance(values[0], np.ndarray):
            return np.concatenate(values)
        return type(values[0])(*(join([getattr(v, f.name) for v in values]) for f in fields(values[0])))

    return TileMeasurements(*(join([getattr(part, f.name) for part in parts]) for f in fields(TileMeasurements)))


def judge_tiles(
    probabilities: np.ndarray,
    classes: list[str],
    families: list[str],
    measured: TileMeasurements,
    native: bool = False,
) -> np.ndarray:
    """``probabilities`` (tiles × classes) with each of ``families`` judged from ``measured``;
    ``native``: the tiles are their file's own pixels, not resampled (``jpeg_quantisation.judge_jpeg``)."""
    if "noise" in families and measured.noise is not None:
        probabilities = judge_noise(probabilities, classes, measured.noise.per_tile())
    if "motion" in families and measured.motion is not None:
        probabilities = judge_motion(probabilities, classes, measured.motion)
    if "defocus" in families and measured.detail is not None and measured.tissue is not None:
        # After motion: what the cap takes goes to the families not measured, never into a measured one.
        spectral_kept = tuple(family for family in ("noise", "motion") if family in families)
        probabilities = judge_defocus(probabilities, classes, measured.detail, spectral_kept, measured.tissue)
    if "jpeg" in families and measured.jpeg is not None:
        # A lowered P(jpeg) gives to the families not judged already: a measured class stays as judged.
        judged_before = tuple(family for family in ("noise", "motion", "defocus") if family in families)
        probabilities = judge_jpeg(probabilities, classes, measured.jpeg, _decides(measured, native), judged_before)
    if "exposure" in families and measured.exposure is not None:
        probabilities = judge_exposure(probabilities, classes, measured.exposure)
    return probabilities


def judge_cells(
    cell_probabilities: np.ndarray, classes: list[str], measured: TileMeasurements, cell_px: int, native: bool = False
) -> np.ndarray:
    """(N, rows, cols, classes) cell probabilities judged as tiles are where a cell can be: noise
    measured per cell; compression and light are the tile's, so a cell takes its tile's JPEG step and
    exposure evidence. Motion and defocus are judged per tile only: a 32 px cell is too small a
    window for their spectrum. ``native`` as :func:`judge_tiles`."""
    shape = cell_probabilities.shape
    per_tile = shape[1] * shape[2]
    judged = cell_probabilities.reshape(-1, shape[-1])
    if measured.noise is not None:
        judged = judge_noise(judged, classes, measured.noise.per_cell(cell_px).reshape(-1))
    if measured.jpeg is not None:
        decides = np.repeat(_decides(measured, native), per_tile)
        kept = ("noise",) if measured.noise is not None else ()
        judged = judge_jpeg(judged, classes, np.repeat(measured.jpeg, per_tile), decides, kept)
    if measured.exposure is not None:
        judged = judge_exposure(judged, classes, measured.exposure.per_cell(per_tile))
    return judged.reshape(shape)


def _decides(measured: TileMeasurements, native: bool) -> np.ndarray:
    """(N,) where the JPEG step decides P(jpeg): tiles of the file's own pixels, large enough to read
    (``jpeg_readable`` is measured wherever the step is)."""
    assert measured.jpeg_readable is not None
    return measured.jpeg_readable & native


def judge_measured(
    probabilities: np.ndarray,
    classes: list[str],
    tiles: np.ndarray,
    families: list[str],
    mpp: float | None = None,
    native: bool = False,
) -> np.ndarray:
    """``probabilities`` of (N, H, W, 3) uint8 ``tiles`` with each of ``families`` measured and judged
    (``mpp`` as :func:`measure_tiles`, ``native`` as :func:`judge_tiles`)."""
    return judge_tiles(probabilities, classes, families, measure_tiles(tiles, families, mpp), native)


#: What each measured family's attributes record (its estimator or rule and thresholds).
RULES = {
    "noise": NOISE_RULE,
    "motion": MOTION_RULE,
    "defocus": DEFOCUS_RULE,
    "jpeg": JPEG_RULE,
    "exposure": EXPOSURE_RULE,
}


def judgement_attributes(classes: list[str], mpp: float) -> dict:
    """How a map's measured families' probabilities were made, for its attributes."""
    measured = measured_families(classes, mpp)
    return {family: how_measured(family in measured, **RULES[family]) for family in RULES}
