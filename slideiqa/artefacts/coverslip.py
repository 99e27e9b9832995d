"""Coverslip and slide edges on a slide thumbnail.

A coverslip's edge, a crack in it or the edge of the slide shows on a scan as a long, straight,
colourless line darker than the glass on both sides: thin and grey where light is only refracted, a
black band up to half a millimetre wide where the bevelled edge sends it away. Tissue under it is
hidden or out of focus. Like pen ink it is millimetres long, so it is found on the thumbnail the map
already reads, and its mask is sampled onto the tile grid.

The detector asks, in this order:

1. **dark and colourless**: a pixel darker by :data:`THIN_CONTRAST` than what a closing of
   :data:`THIN_LINE_UM` fills it with (a black top-hat: it answers only for dark structures narrower
   than that, so tissue and the shading beside a step are left alone), with HSV saturation under
   :data:`THIN_SATURATION` (stain is coloured); or, for the wide black band, darker by
   :data:`WIDE_CONTRAST` than a closing of :data:`WIDE_LINE_UM` and under :data:`WIDE_SATURATION`;
2. **straight**: probabilistic Hough segments at least :data:`SEGMENT_UM` long through those pixels,
   kept when a segment runs on dark pixels for :data:`MIN_FILL` of its length and has mostly clean
   glass or tissue beside it (:data:`MAX_FLANK` within :data:`MAX_WIDTH_UM` on each side): in
   tissue texture any direction has dark pixels along it, and also beside it;
3. **long**: the dark pixels within half :data:`MAX_WIDTH_UM` of a kept segment, in pieces whose
   extent is at least :data:`MIN_LENGTH_UM`.

The thresholds were set on HistoQC's two coverslip-edge images (H&E and IHC, with masks) and
checked for false alarms on the clean low-magnification images of the shared data
(``benchmarks/artefact_masks.py``). They hold at 8–20 µm/px, the scale of the map's thumbnails
(about 14 µm/px); a finer thumbnail is shrunk to :data:`WORKING_UM_PER_PX` first.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.draw import line as draw_line
from skimage.transform import probabilistic_hough_line

from slideiqa.artefacts.pen import at_working_scale, disk, saturation_of

#: Dark lines up to this wide are found at :data:`THIN_CONTRAST` (brightness, 0–1).
THIN_LINE_UM = 150.0
THIN_CONTRAST = 0.12
THIN_SATURATION = 0.15
#: Bands up to this wide are found only when nearly black (the bevelled edge), at :data:`WIDE_CONTRAST`.
WIDE_LINE_UM = 500.0
WIDE_CONTRAST = 0.35
WIDE_SATURATION = 0.35
#: A line is straight over at least this length, with gaps up to :data:`GAP_UM` (tissue crossing it).
SEGMENT_UM = 1000.0
GAP_UM = 100.0
#: Share of a segment's length that must run on dark pixels.
MIN_FILL = 0.6
#: How wide a line may be, and the most of its sides (as wide again, both ways) that may be dark.
MAX_WIDTH_UM = 400.0
MAX_FLANK = 0.3
#: Pieces of line shorter than this are dropped (a hair or a fibre may be straight over a millimetre).
MIN_LENGTH_UM = 2000.0
#: Thumbnails finer than this are shrunk to about it: a 150 µm line is still 15 pixels wide there.
WORKING_UM_PER_PX = 10.0


def edge_mask(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    """Where ``rgb`` (a thumbnail of ``um_per_px`` µm per pixel) shows a coverslip or slide edge."""
    return at_working_scale(_edge_mask, rgb, um_per_px, WORKING_UM_PER_PX)


def _edge_mask(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    brightness = rgb.max(axis=-1).astype(np.float32) / 255.0
    dark = _dark_colourless(rgb, brightness, um_per_px)
    segments = probabilistic_hough_line(
        dark,
        threshold=10,
        line_length=max(5, round(SEGMENT_UM / um_per_px)),
        line_gap=max(1, round(GAP_UM / um_per_px)),
        rng=0,
    )
    half_width = max(1.0, MAX_WIDTH_UM / 2 / um_per_px)
    centres = np.zeros_like(dark)
    near_dark = ndimage.binary_dilation(dark, np.ones((3, 3), bool))
    for start, end in segments:
        if _is_isolated_line(dark, near_dark, start, end, half_width):
            rows, cols = draw_line(start[1], start[0], end[1], end[0])
            centres[rows, cols] = True
    if not centres.any():
        return centres
    on_line = dark & (ndimage.distance_transform_edt(~centres) <= half_width)
    return _long_pieces(on_line, MIN_LENGTH_UM / um_per_px)


def _dark_colourless(rgb: np.ndarray, brightness: np.ndarray, um_per_px: float) -> np.ndarray:
    """Pixels darker than the glass on both sides of them, and without the colour of a stain."""
    smoothed = ndimage.uniform_filter(rgb.astype(np.float32), size=(3, 3, 1))
    saturation = saturation_of(*(smoothed[..., i] for i in range(3)))
    thin = ndimage.grey_closing(brightness, footprint=disk(THIN_LINE_UM / 2 / um_per_px)) - brightness
    # A square closing for the wide band: separable, so fast at its size, and only black passes it.
    side = max(3, round(WIDE_LINE_UM / um_per_px) | 1)
    wide = ndimage.grey_closing(brightness, size=(side, side)) - brightness
    return ((thin > THIN_CONTRAST) & (saturation < THIN_SATURATION)) | (
        (wide > WIDE_CONTRAST) & (saturation < WIDE_SATURATION)
    )


def _sample(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    return mask[np.clip(np.rint(ys).astype(int), 0, height - 1), np.clip(np.rint(xs).astype(int), 0, width - 1)]


def _is_isolated_line(
    dark: np.ndarray, near_dark: np.ndarray, start: tuple[int, int], end: tuple[int, int], half_width: float
) -> bool:
    """Whether the segment ``start``–``end`` (x, y) runs on dark pixels with clear sides."""
    (x0, y0), (x1, y1) = start, end
    length = float(np.hypot(x1 - x0, y1 - y0))
    along = np.linspace(0.0, 1.0, int(length) + 1)
    xs, ys = x0 + along * (x1 - x0), y0 + along * (y1 - y0)
    if _sample(near_dark, xs, ys).mean() < MIN_FILL:
        return False
    normal_x, normal_y = -(y1 - y0) / length, (x1 - x0) / length
    offsets = np.linspace(half_width, 3 * half_width, 5)
    for side in (1, -1):
        beside = [_sample(dark, xs + side * o * normal_x, ys + side * o * normal_y).mean() for o in offsets]
        if np.mean(beside) >= MAX_FLANK:
            return False
    return True


def _long_pieces(mask: np.ndarray, min_length_px: float) -> np.ndarray:
    """The connected pieces of ``mask`` whose bounding box has a diagonal of at least ``min_length_px``:
    the extent of a line, without measuring each of the many small pieces a thumbnail has."""
    labels, count = ndimage.label(mask, np.ones((3, 3), bool))
    keep = np.zeros(count + 1, bool)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            keep[index] = np.hypot(box[0].stop - box[0].start, box[1].stop - box[1].start) >= min_length_px
    return keep[labels]
