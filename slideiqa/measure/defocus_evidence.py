"""Defocus called only where the tile's spectrum allows it.

A network that has not seen a lab's tissue takes featureless tissue — smooth eosin, mucin, a field
with few nuclei — for defocus: it has no sharp edges to show. Defocus, though, has a physical
signature: it is a low-pass filter, so it removes the fine detail (periods of 1.4–3.8 µm, the motion
measurement's fine band) and keeps the coarse structure (8–20 µm). The log-ratio of the fine band's
energy to the coarse band's (``motion_blur.SectorEnergies.detail``, every direction together, from
the spectrum the motion measurement reads anyway) is therefore low in every defocused tile, whatever
its tissue, and a featureless sharp tile keeps its fine grain beside its little coarse structure.

Measured on every clean field's tiles at 0.5 µm/px and the same fields defocused at the floor (1 µm:
slideiqa's disk, Gaussian and aberrated blur, OpenCV's Gaussian, albumentations' defocus), 5310
defocused tiles of 1062 (``training/analysis/defocus_detail.py``): none measures above
``FOCUS_DETAIL`` (the highest: −2.16, a pale CPM-15 field), nor after a scanner's JPEG at quality 50–90
(−1.92); with sensor noise of σ 2, 4 and 6 grey levels added, 0.2 %, 0.8 % and 2.4 % do, since noise
is fine detail too (σ 9 is flagged as noise). Of the clean tiles, 97 % measure above it, and 93 % of
the featureless-eosin field's (histolab's ``very-low-nuclei-score``), which a model trained without
its lab called defocus. ``judge_defocus`` therefore caps the network's P(defocus) where the tile shows
more fine detail than a defocused tile can; elsewhere the network's call stands. It never raises
P(defocus): defocus is still the network's to find. What the cap takes goes to the classes not
measured (good, JPEG, exposure) in the network's ratios: a measured P(noise) or P(motion) stays as
measured, so the cap never turns a featureless tile's defocus into motion.

The bands hold at the scale the motion measurement was calibrated on (``motion_blur.MOTION_MPP``, or
a 20× scanner's slightly coarser pixels, read at the same periods in µm); elsewhere the network's
P(defocus) stands. A cell keeps its own: a 32 px cell is too small a window for a spectrum.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

from slideiqa.measure.families import set_class_probability
from slideiqa.measure.motion_blur import MOTION_MPP, MOTION_TOLERANCE

#: Fine-to-coarse log-ratio above which no tile defocused at the floor was measured.
FOCUS_DETAIL = -2.0
#: Width of the logistic step of the cap around ``FOCUS_DETAIL``.
FOCUS_SOFTNESS = 0.05


def measures_defocus(classes: list[str], mpp: float) -> bool:
    """Whether a model with these classes, seeing tiles at ``mpp`` µm/px, has its P(defocus) capped."""
    return "defocus" in classes and abs(mpp - MOTION_MPP) <= MOTION_TOLERANCE * MOTION_MPP


#: How a map's P(defocus) is made, recorded in its attributes (``judgement.judgement_attributes``).
DEFOCUS_RULE: dict[str, Any] = {
    "rule": "min(P_network, cap): the cap falls to 0 where the fine-to-coarse spectral ratio shows detail",
    "focus_detail": FOCUS_DETAIL,
    "softness": FOCUS_SOFTNESS,
}


def defocus_cap(detail: np.ndarray) -> np.ndarray:
    """(N,) the highest P(defocus) each tile's fine-to-coarse ``detail`` allows: 1 well below
    ``FOCUS_DETAIL``, 0 well above it."""
    return expit((FOCUS_DETAIL - np.asarray(detail, dtype=np.float64)) / FOCUS_SOFTNESS)


def judge_defocus(
    probabilities: np.ndarray, classes: list[str], detail: np.ndarray, measured: tuple[str, ...] = ()
) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(defocus) = min(P, :func:`defocus_cap`); what it
    gives up goes to the classes not ``measured`` already, in their ratios (a measured P(noise) or
    P(motion) stays as measured); unchanged for a model without a defocus class."""
    if "defocus" not in classes:
        return probabilities
    index = classes.index("defocus")
    current = np.asarray(probabilities, dtype=np.float64)[:, index]
    keep = tuple(classes.index(name) for name in measured if name in classes and name != "defocus")
    capped = np.minimum(current, defocus_cap(detail))
    return set_class_probability(probabilities, index, capped, keep).astype(np.float32)
