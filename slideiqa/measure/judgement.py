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
classes keep their ratios. Its P(jpeg) is raised to
the measured step's wherever the lattice shows, and its P(exposure) is capped by the exposure
evidence, at any scale. Elsewhere the network's own probabilities stand.
"""

from __future__ import annotations

import numpy as np

from slideiqa.measure.defocus_evidence import DEFOCUS_RULE, judge_defocus, measures_defocus, tissue_share
from slideiqa.measure.exposure_evidence import (
    EXPOSURE_RULE,
    ExposureEvidence,
    exposure_evidence,
    judge_exposure,
    measures_exposure,
)
from slideiqa.measure.families import how_measured
from slideiqa.measure.jpeg_quantisation import JPEG_RULE, jpeg_scale, judge_jpeg, measures_jpeg
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


def judge_measured(
    probabilities: np.ndarray,
    classes: list[str],
    tiles: np.ndarray,
    families: list[str],
    evidence: ExposureEvidence | None = None,
    noise: PatchNoise | None = None,
    jpeg: np.ndarray | None = None,
    mpp: float | None = None,
    extent: np.ndarray | None = None,
) -> np.ndarray:
    """``probabilities`` of (N, H, W, 3) uint8 ``tiles`` with each of ``families`` measured
    (``evidence``, ``noise``, ``jpeg``, ``extent``: the tiles' exposure evidence, patch noise, JPEG
    scale and own parts, where the caller has them already; ``mpp``: the tiles' µm/px where not the
    model's, as for a slide judged at its own slightly coarser pixels)."""
    if "noise" in families:
        probabilities = judge_noise(probabilities, classes, (patch_noise(tiles) if noise is None else noise).per_tile())
    spectral = {"motion", "defocus"} & set(families)
    energies = sector_energies(tiles, mpp, extent) if spectral else None  # one spectrum for both
    if "motion" in families:
        probabilities = judge_motion(probabilities, classes, motion_score(tiles, mpp, extent, energies))
    if "defocus" in families and energies is not None:
        # After motion: what the cap takes goes to the families not measured, never into a measured one.
        measured = tuple(family for family in ("noise", "motion") if family in families)
        probabilities = judge_defocus(probabilities, classes, energies.detail(), measured, tissue_share(tiles))
    if "jpeg" in families:
        probabilities = judge_jpeg(probabilities, classes, jpeg_scale(tiles, extent) if jpeg is None else jpeg)
    if "exposure" in families:
        probabilities = judge_exposure(probabilities, classes, evidence or exposure_evidence(tiles))
    return probabilities


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
