"""Air bubbles under the coverslip on a slide thumbnail.

An air bubble trapped in the mounting medium shows as a round or oval patch, a few tens of µm to
millimetres across, bounded by a dark rim where the curved air–medium surface bends light out of
the objective; inside it the tissue looks washed out or out of focus. The rim is what sets a
bubble apart: it is **colourless** (refraction takes all wavelengths alike), where every stain
darkens some channels more than others. The detector, as HistoQC's bubble module, looks for those
rims and fills them:

1. **a colourless dark rim**: pixels whose optical density rises above what an opening of
   :data:`RIM_UM` leaves (an OD top-hat: thin dark structures only) by at least
   :data:`RIM_CONTRAST` in every channel, the rise nearly equal in all three (the smallest at least
   :data:`NEUTRAL_RATIO` of the largest: haematoxylin's rise is blue-weak, eosin's red-weak, DAB's
   red-weak);
2. **closed**: the areas such rims enclose, gaps up to :data:`GAP_UM` bridged;
3. **round and bubble-sized**: enclosed areas of :data:`MIN_RADIUS_UM` to :data:`MAX_RADIUS_UM`
   equivalent radius, at least :data:`MIN_SOLIDITY` solid (a bubble is convex; a mesh of nuclei is not).

The mask is the enclosed area with its rim. The thresholds were set on synthetic bubbles
(``slideiqa.synthetic.artefacts.bubble``) and checked for false alarms on every clean source of
``training/sources.toml`` (``benchmarks/synthetic_artefacts.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.transform import hough_circle, hough_circle_peaks

from slideiqa.artefacts.pen import at_working_scale, disk, optical_density

RIM_UM = 30.0
RIM_CONTRAST = 0.1
NEUTRAL_RATIO = 0.6
MIN_RADIUS_UM = 40.0
MAX_RADIUS_UM = 1500.0
#: Share of a circle's circumference that must run on rim pixels.
MIN_COVER = 0.6
#: At most this many bubbles are looked for on one thumbnail.
MAX_BUBBLES = 50
#: Hough accumulators computed at once (each the thumbnail's size, in float64).
RADII_AT_ONCE = 2
#: Thumbnails finer than this are shrunk to about it: a 10 µm rim is still two pixels there.
WORKING_UM_PER_PX = 4.0


def bubble_mask(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    """Where ``rgb`` (a thumbnail of ``um_per_px`` µm per pixel) lies under an air bubble."""
    return at_working_scale(_bubble_mask, rgb, um_per_px, WORKING_UM_PER_PX)


def _colourless_rise(rgb: np.ndarray, width_px: float) -> np.ndarray:
    """Pixels darker in every channel, and about equally, than an opening of ``width_px`` leaves."""
    od = optical_density(rgb)
    size = max(3, int(round(width_px)) | 1)
    rise = od - ndimage.grey_opening(od, size=(size, size, 1))
    low, high = rise.min(-1), rise.max(-1)
    return (low >= RIM_CONTRAST) & (low >= NEUTRAL_RATIO * high)


def _circle_cover(near_rim: np.ndarray, cy: float, cx: float, radius: float) -> float:
    """Share of the circle's points (inside the image) on ``near_rim``; 0 when most of it lies outside."""
    angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    rows = np.rint(cy + radius * np.sin(angles)).astype(int)
    cols = np.rint(cx + radius * np.cos(angles)).astype(int)
    inside = (rows >= 0) & (rows < near_rim.shape[0]) & (cols >= 0) & (cols < near_rim.shape[1])
    return float(near_rim[rows[inside], cols[inside]].mean()) if inside.mean() >= 0.5 else 0.0


def _bubble_mask(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    rim = _colourless_rise(rgb, RIM_UM / um_per_px)
    mask = np.zeros(rgb.shape[:2], bool)
    low, high = MIN_RADIUS_UM / um_per_px, min(MAX_RADIUS_UM / um_per_px, max(rgb.shape[:2]) / 2)
    if rim.sum() < 2 * np.pi * low * MIN_COVER or high <= low:
        return mask
    radii = np.unique(np.round(np.geomspace(low, high, 40)).astype(int))
    threshold = 0.5 * MIN_COVER
    # A few radii at a time, keeping only those whose votes pass the threshold somewhere: the others
    # give hough_circle_peaks no peak (it keeps values above its threshold only), so the circles
    # found are the same, without holding every radius's accumulator at once (34 radii of a 1.6 Mpx
    # thumbnail: 440 MB) or searching the empty ones for peaks (3 s of a 40 960 px slide's plan).
    kept_radii, kept_votes = [], []
    for chunk in np.array_split(radii, -(-len(radii) // RADII_AT_ONCE)):
        votes = hough_circle(rim, chunk, normalize=True, full_output=False)
        passing = votes.reshape(len(chunk), -1).max(axis=1) > threshold
        kept_radii += list(chunk[passing])
        kept_votes += list(votes[passing])
    if not kept_radii:
        return mask
    # A list, not a stacked copy: hough_circle_peaks only iterates over the accumulators.
    _, xs, ys, found = hough_circle_peaks(
        kept_votes,
        np.array(kept_radii),
        min_xdistance=int(low),
        min_ydistance=int(low),
        threshold=threshold,
        total_num_peaks=MAX_BUBBLES,
    )
    near_rim = ndimage.binary_dilation(rim, disk(1.5))
    y, x = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
    for cx, cy, radius in zip(xs, ys, found):
        on = _circle_cover(near_rim, cy, cx, radius)
        # A rim is a line: beside it (a fifth of the radius in and out) there must be far less of it
        # than on it, unlike a texture dense with dark pixels everywhere.
        beside = max(_circle_cover(near_rim, cy, cx, radius * 0.8), _circle_cover(near_rim, cy, cx, radius * 1.2))
        if on >= MIN_COVER and on - beside >= MIN_COVER / 2:
            mask |= (y - cy) ** 2 + (x - cx) ** 2 <= (radius + 1) ** 2
    return mask
