"""Preparation artefacts that a slide thumbnail shows: pen ink.

Pen marks are millimetres long and a fraction of a millimetre wide, so they are plain on a
low-resolution thumbnail (HistoQC finds them the same way) and cost nothing to find there: the map
already reads a thumbnail for its tissue mask. The mask found here is sampled onto the tile grid;
a tile mostly under ink gets the fixed label ``pen`` instead of a CNN verdict.

Ink is told from stain by colour, in optical density (OD = −log10(I / 255), Beer–Lambert: what
each channel absorbs). Haematoxylin (OD ≈ 0.65, 0.70, 0.29), eosin (0.07, 0.99, 0.11) and DAB
(0.27, 0.57, 0.78) all absorb green at least as much as red; the inks a lab writes with do not:

* **green / teal ink** absorbs red far more than green (OD_R − OD_G > 0.08);
* **red ink** is a saturated red (hue within ±0.04 of pure red, HSV saturation > 0.45, OD_G > 0.35),
  unlike the pink-magenta of eosin (hue ≈ 0.85–0.93);
* **blue ink** is a saturated blue (hue 0.5–0.7) that absorbs little blue light (OD_B < 0.6 OD_R),
  unlike the violet of haematoxylin;
* **black ink** absorbs every channel strongly (OD > 0.7 in all three) over a stroke's width:
  a dark area that survives an opening of :data:`BLACK_STROKE_UM` µm, so dense nuclei and the
  thin dark lines of coverslip edges are left alone.

The thresholds were set on HistoQC's pen images and checked for false alarms on every clean
source of ``training/sources.toml`` (``benchmarks/artefact_masks.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

#: Ink strokes are at least this wide: black areas narrower than this are not ink.
BLACK_STROKE_UM = 120.0
#: Gaps inside a stroke (skipped ink, a dry marker) up to this size are closed.
CLOSE_UM = 20.0
#: Share of a mark's pixels (after closing) that must pass an ink colour rule themselves.
MIN_SOLIDITY = 0.7
#: Ink marks smaller than this area (in µm², about two tiles) are dropped: stained debris, red cells.
MIN_MARK_UM2 = 150.0 * 150.0


#: OD of each uint8 intensity: a look-up is several times faster than a logarithm per pixel.
_OD_OF = (-np.log10(np.clip(np.arange(256, dtype=np.float32), 1.0, 255.0) / 255.0)).astype(np.float32)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per-channel OD of uint8 RGB (0 for white glass; 2.4 for black)."""
    return _OD_OF[rgb]


def saturation_of(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """HSV saturation, as skimage's ``rgb2hsv`` gives it."""
    top = np.maximum(np.maximum(red, green), blue)
    bottom = np.minimum(np.minimum(red, green), blue)
    return (top - bottom) / np.maximum(top, 1.0)


def _hue(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """HSV hue in 0–1 (red at 0), as skimage's ``rgb2hsv`` gives it; 0 for grey."""
    top = np.maximum(np.maximum(red, green), blue)
    spread = top - np.minimum(np.minimum(red, green), blue)
    safe = np.where(spread > 0, spread, 1.0)
    hue = np.where(
        top == red, (green - blue) / safe, np.where(top == green, 2.0 + (blue - red) / safe, 4.0 + (red - green) / safe)
    )
    return np.where(spread > 0, (hue / 6.0) % 1.0, 0.0)


def disk(radius_px: float) -> np.ndarray:
    """A boolean disk footprint of about ``radius_px`` (at least 1) pixels."""
    radius = max(1, int(round(radius_px)))
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def ink_colour(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel masks of each ink colour, before any shape rule."""
    od = optical_density(rgb)
    channels = [rgb[..., i].astype(np.float32) for i in range(3)]
    # Hue only where it can matter (saturated pixels: a small part of a slide), which saves most of the time.
    saturation = saturation_of(*channels)
    saturated = saturation > 0.4
    hue = np.zeros(rgb.shape[:2], np.float32)
    hue[saturated] = _hue(*(channel[saturated] for channel in channels))
    red_hue, blue_hue = (hue > 0.93) | (hue < 0.03), (hue > 0.5) & (hue < 0.7)
    strongly_saturated = saturation > 0.45
    return {
        "green": (od[..., 0] - od[..., 1] > 0.08) & (od[..., 0] > 0.15),
        "red": strongly_saturated & red_hue & (od[..., 1] > 0.35),
        "blue": saturated & blue_hue & (od[..., 0] > 0.25) & (od[..., 2] < 0.6 * od[..., 0]),
        "black": np.minimum(np.minimum(od[..., 0], od[..., 1]), od[..., 2]) > 0.7,
    }


#: Pen marks are hundreds of µm across: a thumbnail finer than this (a small slide's can be at its
#: full 0.5 µm/px) is shrunk to about it first, where the shaping disks would otherwise be hundreds of
#: pixels wide and cost a minute on a 300-pixel image.
WORKING_UM_PER_PX = 4.0


def pen_mask(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    """Where ``rgb`` (a thumbnail of ``um_per_px`` µm per pixel) is covered by pen ink.

    Each ink colour is shaped on its own, so that scattered stained pixels passing one colour rule
    (dense eosin for red) never join a real stroke of another colour into one accepted mark."""
    return at_working_scale(_pen_mask, rgb, um_per_px, WORKING_UM_PER_PX)


def at_working_scale(
    detect: Callable[[np.ndarray, float], np.ndarray], rgb: np.ndarray, um_per_px: float, working_um_per_px: float
) -> np.ndarray:
    """``detect(rgb, um_per_px)`` run on ``rgb`` shrunk to about ``working_um_per_px`` when it is
    finer, its mask brought back to ``rgb``'s size.

    Thumbnail detectors shape their masks with disks and lines of a set size in µm; on a thumbnail
    much finer than they need, those would be hundreds of pixels wide and cost a minute."""
    factor = int(working_um_per_px // um_per_px)
    if factor <= 1:
        return detect(rgb, um_per_px)
    from PIL import Image

    height, width = rgb.shape[:2]
    small = Image.fromarray(np.ascontiguousarray(rgb)).resize(
        (-(-width // factor), -(-height // factor)), Image.Resampling.BOX
    )
    mask = detect(np.asarray(small), um_per_px * width / small.width)
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))


def _pen_mask(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    colours = ink_colour(rgb)
    colours["black"] = ndimage.binary_opening(colours["black"], disk(BLACK_STROKE_UM / 2 / um_per_px))
    return np.logical_or.reduce([_solid_marks(ink, um_per_px) for ink in colours.values()])


def _solid_marks(ink: np.ndarray, um_per_px: float) -> np.ndarray:
    """The marks of one colour: gaps closed, kept when large enough and mostly ink themselves.

    Closing fills a stroke's gaps but also bridges scattered pixels to it; only closed pixels whose
    neighbourhood (the closing's reach) is largely ink stay, so a stroke does not absorb the
    stained tissue beside it."""
    reach = disk(CLOSE_UM / um_per_px)
    density = ndimage.uniform_filter(ink.astype(np.float32), size=reach.shape[0])
    closed = ndimage.binary_closing(ink, reach, border_value=0) & (density >= 0.4)
    labels, count = ndimage.label(closed)
    if not count:
        return closed
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(closed, labels, index=index)
    # A stroke is solid ink: a patch where scattered stained pixels pass a colour rule (dense
    # eosin, red cells) only looks like one after closing, and is mostly not ink.
    solid = ndimage.sum_labels(ink, labels, index=index) / np.maximum(areas, 1)
    keep = np.concatenate([[False], (areas * um_per_px**2 >= MIN_MARK_UM2) & (solid >= MIN_SOLIDITY)])
    return keep[labels]
