"""Exposure judged by evidence a stain cannot imitate, never by how dark or pale a tile looks.

Why. By Beer–Lambert a stain twice as dense darkens every pixel exactly as a tone curve of γ = 2
does, and good tissue varies that much: dense tumour with strong haematoxylin, DAB-dense IHC and
pale eosin are legitimate looks. A network trained on a few labs calls them under- or over-exposed
(P(exposure) 0.4–0.9 on clean dense MoNuSeg fields). So the network's P(exposure) of a tile is
capped by the physical evidence of an exposure error in that tile, and only sharpens it:

* **too little light** (``dark``): the white point — the 99.5th percentile of each pixel's brightest
  channel — below :data:`DARK_WHITE_POINT`. Every 112 µm of tissue holds something that lets light
  through in at least one channel (eosin red, DAB red, haematoxylin blue; glass in all): the sharp
  test tiles of the seven tissue groups reach no lower than 224, and in every group a tile given
  half the light is certainly dark (a camera's dim smear fields reach 145, where the network decides);
* **too much light** (``bright``): stain clipped to white in one channel — among a tile's coloured
  pixels, the share whose brightest channel is saturated, beyond :data:`CLIPPED_STAIN` (sharp tissue
  tiles: at most 0.14) — or most of the tile saturated in some channel (:data:`CLIPPED_TILE`; dense
  IHC whose pale background turns white);
* **a crushed black level** (``black``): a share of pixels black in every channel beyond
  :data:`BLACK_SHARE` (sharp tiles: at most 0.0003).

P(exposure) becomes min(P_network, E) with E the largest of the three, and where an error is
certain it is at least that: too little light (``dark`` above :data:`CERTAIN`) — without it, 0.74–0.81
of held-out fields' tiles given half the light were flagged (``benchmarks/README.md``), and no stain
explains it — and too much light clipping most of the stain *and* most of the tile (beyond
:data:`CERTAIN_CLIPPED_STAIN` and :data:`CERTAIN_CLIPPED_TILE`): no clean tile of any field comes
near (at most 0.11 and 0.18), one good look in 3312 does (a camera's gain set high), and 62 % of
tiles given twice the light do — among them those the network still called good
(``training/analysis/field_measurements.py``). What a tile alone cannot show — a tone curve
(γ ½ or 2 leaves the glass calibrated and clips nothing: it *is* a stain of another density), a
linear stretch that clips nothing — is left to the tile against its slide (``slide_tone``) and the
slide against its batch (``batch_report``). The figures above: ``training/analysis/exposure_evidence.py``
(every group's sharp test tiles, and the same tiles given every exposure error at ±1 EV); fields of
hospitals no model saw, mapped alone: ``benchmarks/clean_tissue.py`` and ``defects_found.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from slideiqa.measure.families import set_class_probability
from slideiqa.measure.slide_tone import sampled_pixels

#: Pixels sampled: every SUBSAMPLE-th along each axis (the measurements are quantiles and shares).
SUBSAMPLE = 4
#: White point (grey levels) below which a tile had too little light, and the logistic step's width.
DARK_WHITE_POINT, DARK_SOFTNESS = 160.0, 6.0
#: A channel at or above this is saturated; a pixel whose darkest channel is below STAINED is coloured.
SATURATED, STAINED = 254, 240
#: Share of a tile's coloured pixels saturated in some channel beyond which stain was clipped to white
#: (sharp tissue tiles: at most 0.14), and share of all its pixels (at most 0.22; a scanner that
#: writes its glass as white saturates all of it, so the bound is half the tile).
CLIPPED_STAIN, CLIPPED_STAIN_SOFTNESS = 0.20, 0.015
CLIPPED_TILE, CLIPPED_TILE_SOFTNESS = 0.50, 0.02
#: Least share of coloured pixels for the clipped-stain share to mean anything.
MIN_STAINED_SHARE = 0.05
#: A pixel at or below this in every channel is black; beyond BLACK_SHARE of them, the black level
#: was crushed (sharp tiles: at most 0.0003).
BLACK, BLACK_SHARE, BLACK_SOFTNESS = 5, 0.03, 0.004
#: Evidence of too little light this strong raises P(exposure) whatever the network says.
CERTAIN = 0.99
#: Shares of clipped stain and of a saturated tile beyond which too much light is certain too.
CERTAIN_CLIPPED_STAIN, CERTAIN_CLIPPED_TILE = 0.40, 0.80


@dataclass(frozen=True)
class ExposureEvidence:
    """Per tile, the evidence of an exposure error (0–1) that caps P(exposure), and the certain
    evidence of too little or too much light that floors it (0 where not certain)."""

    cap: np.ndarray
    floor: np.ndarray

    def per_cell(self, cells: int) -> ExposureEvidence:
        """The same evidence for each of ``cells`` cells of every tile (exposure is the scan's)."""
        return ExposureEvidence(np.repeat(self.cap, cells), np.repeat(self.floor, cells))


def exposure_measurements(tiles: np.ndarray) -> dict[str, np.ndarray]:
    """White point, clipped-stain share, clipped-tile share and black share of (N, H, W, 3) uint8
    ``tiles``, from every :data:`SUBSAMPLE`-th pixel, in one histogram for all tiles."""
    pixels = sampled_pixels(tiles, SUBSAMPLE)
    brightest, darkest = pixels.brightest, pixels.darkest
    count, per_tile = brightest.shape
    rows = (np.arange(count, dtype=np.int32) * 256)[:, None]
    histogram = np.bincount((brightest.astype(np.int32) + rows).ravel(), minlength=count * 256).reshape(count, 256)
    white_point = (histogram.cumsum(axis=1) >= 0.995 * per_tile).argmax(axis=1).astype(np.float64)
    saturated, stained = brightest >= SATURATED, darkest < STAINED
    stained_count = stained.sum(axis=1)
    clipped_stain = np.where(
        stained_count >= MIN_STAINED_SHARE * per_tile,
        (saturated & stained).sum(axis=1) / np.maximum(stained_count, 1),
        0.0,
    )
    return {
        "white_point": white_point,
        "clipped_stain": clipped_stain,
        "clipped_tile": histogram[:, SATURATED:].sum(axis=1) / per_tile,
        "black": histogram[:, : BLACK + 1].sum(axis=1) / per_tile,
    }


def exposure_evidence(tiles: np.ndarray) -> ExposureEvidence:
    """The exposure evidence of (N, H, W, 3) uint8 ``tiles`` (see the module docstring)."""
    measured = exposure_measurements(tiles)
    dark = expit((DARK_WHITE_POINT - measured["white_point"]) / DARK_SOFTNESS)
    bright = np.maximum(
        expit((measured["clipped_stain"] - CLIPPED_STAIN) / CLIPPED_STAIN_SOFTNESS),
        expit((measured["clipped_tile"] - CLIPPED_TILE) / CLIPPED_TILE_SOFTNESS),
    )
    black = expit((measured["black"] - BLACK_SHARE) / BLACK_SOFTNESS)
    too_bright = np.minimum(
        expit((measured["clipped_stain"] - CERTAIN_CLIPPED_STAIN) / CLIPPED_STAIN_SOFTNESS),
        expit((measured["clipped_tile"] - CERTAIN_CLIPPED_TILE) / CLIPPED_TILE_SOFTNESS),
    )
    certain = np.maximum(dark, too_bright)
    return ExposureEvidence(np.maximum(np.maximum(dark, bright), black), np.where(certain > CERTAIN, certain, 0.0))


def judge_exposure(probabilities: np.ndarray, classes: list[str], evidence: ExposureEvidence) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(exposure) = max(min(P, cap), floor) and the other
    classes rescaled to the rest, keeping their ratios; unchanged for a model without an exposure class."""
    if "exposure" not in classes:
        return probabilities
    index = classes.index("exposure")
    current = np.asarray(probabilities, dtype=np.float64)[:, index]
    judged = np.maximum(np.minimum(current, evidence.cap), evidence.floor)
    return set_class_probability(probabilities, index, judged).astype(np.float32)


def measures_exposure(classes: list[str]) -> bool:
    """Whether a model with these classes has its P(exposure) judged by evidence."""
    return "exposure" in classes and "good" in classes


#: How a map's P(exposure) is made, recorded in its attributes (``judgement.judgement_attributes``).
EXPOSURE_RULE: dict[str, Any] = {
    "rule": "min(P_network, evidence), at least certain evidence of too little or too much light",
    "dark_white_point": DARK_WHITE_POINT,
    "clipped_stain": CLIPPED_STAIN,
    "clipped_tile": CLIPPED_TILE,
    "black_share": BLACK_SHARE,
    "certain_clipped_stain": CERTAIN_CLIPPED_STAIN,
    "certain_clipped_tile": CERTAIN_CLIPPED_TILE,
}
