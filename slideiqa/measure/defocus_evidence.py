"""Defocus called only where the tile's spectrum allows it, and where it demands it.

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
more fine detail than a defocused tile can; elsewhere the network's call stands. The cap never raises
P(defocus) (the floor below does, on other evidence). What the cap takes goes to the classes not
measured (good, JPEG, exposure) in the network's ratios: a measured P(noise) or P(motion) stays as
measured, so the cap never turns a featureless tile's defocus into motion.

The other way round, a tile full of tissue whose fine detail is all but gone is defocused whatever
the network says: below ``FOCUS_FLOOR`` P(defocus) is raised to at least what the floor's logistic
step gives (taken from the classes not measured, in their ratios). Of the clean tiles at least
``FULL_TISSUE`` tissue, none measures below it (the lowest: −2.70, a histolab field), nor any of the
smear fields' tiles full of tissue as ``predict`` judges them (Chula has 20; BCCD's sparse fields reach
−3.03, but none of their tiles is full of tissue), while 99.3 % of those defocused at the
floor and the real out-of-focus HistoArtifacts tile (−3.20; its sharp sibling −0.71) do. A tile with more
glass is left to the network: a sharp tissue edge against glass is coarse structure with little fine
grain beside it (a clean HistoPrep tile of mostly glass measures −3.33).

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
from slideiqa.measure.tissue import tissue_pixels

#: Fine-to-coarse log-ratio above which no tile defocused at the floor was measured.
FOCUS_DETAIL = -2.0
#: Width of the logistic steps of the cap around ``FOCUS_DETAIL`` and of the floor around ``FOCUS_FLOOR``.
FOCUS_SOFTNESS = 0.05
#: Fine-to-coarse log-ratio below which a tile full of tissue is defocused (no clean one measured below −2.70).
FOCUS_FLOOR = -3.0
#: Least share of a tile's pixels that are tissue (``tissue.tissue_pixels``) for the floor to apply.
FULL_TISSUE = 0.8
#: Tissue is counted on every SAMPLE-th pixel each way (a share, not a mask).
SAMPLE = 8


def measures_defocus(classes: list[str], mpp: float) -> bool:
    """Whether a model with these classes, seeing tiles at ``mpp`` µm/px, has its P(defocus) capped."""
    return "defocus" in classes and abs(mpp - MOTION_MPP) <= MOTION_TOLERANCE * MOTION_MPP


#: How a map's P(defocus) is made, recorded in its attributes (``judgement.judgement_attributes``).
DEFOCUS_RULE: dict[str, Any] = {
    "rule": (
        "max(min(P_network, cap), floor): the cap falls to 0 where the fine-to-coarse spectral ratio shows "
        "detail; the floor rises to 1 where a tile full of tissue has almost none"
    ),
    "focus_detail": FOCUS_DETAIL,
    "focus_floor": FOCUS_FLOOR,
    "full_tissue": FULL_TISSUE,
    "softness": FOCUS_SOFTNESS,
}


def defocus_cap(detail: np.ndarray) -> np.ndarray:
    """(N,) the highest P(defocus) each tile's fine-to-coarse ``detail`` allows: 1 well below
    ``FOCUS_DETAIL``, 0 well above it."""
    return expit((FOCUS_DETAIL - np.asarray(detail, dtype=np.float64)) / FOCUS_SOFTNESS)


def tissue_share(tiles: np.ndarray) -> np.ndarray:
    """(N,) share of each of (N, H, W, 3) uint8 ``tiles``' pixels that are tissue, each tile against
    its own glass (as a field's mask is), on every :data:`SAMPLE`-th pixel."""
    return tissue_pixels(np.asarray(tiles)[:, ::SAMPLE, ::SAMPLE]).mean(axis=(1, 2))


def defocus_floor(detail: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """(N,) the least P(defocus) each tile's fine-to-coarse ``detail`` and ``tissue`` share demand: 1
    well below ``FOCUS_FLOOR`` on a tile at least ``FULL_TISSUE`` tissue, 0 elsewhere."""
    step = expit((FOCUS_FLOOR - np.asarray(detail, dtype=np.float64)) / FOCUS_SOFTNESS)
    return np.where(np.asarray(tissue) >= FULL_TISSUE, step, 0.0)


def judge_defocus(
    probabilities: np.ndarray,
    classes: list[str],
    detail: np.ndarray,
    measured: tuple[str, ...] = (),
    tissue: np.ndarray | None = None,
) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(defocus) = min(P, :func:`defocus_cap`), raised to
    :func:`defocus_floor` where the tiles' ``tissue`` share is given; what it gives up or takes comes
    from the classes not ``measured`` already, in their ratios (a measured P(noise) or P(motion)
    stays as measured); unchanged for a model without a defocus class."""
    if "defocus" not in classes:
        return probabilities
    index = classes.index("defocus")
    current = np.asarray(probabilities, dtype=np.float64)[:, index]
    keep = tuple(classes.index(name) for name in measured if name in classes and name != "defocus")
    judged = np.minimum(current, defocus_cap(detail))
    if tissue is not None:  # raised no further than the measured classes leave room for
        room = 1.0 - np.asarray(probabilities, dtype=np.float64)[:, list(keep)].sum(axis=1)
        judged = np.maximum(judged, np.minimum(defocus_floor(detail, tissue), room))
    return set_class_probability(probabilities, index, judged, keep).astype(np.float32)
