"""Tissue folds on a slide thumbnail.

Where a section folds over itself the light crosses two layers of tissue: their optical densities
add (Beer–Lambert), so a fold is a band of tissue about twice as dark as the tissue around it, a
tenth of a millimetre to a millimetre wide — plain on the thumbnail the map already reads. Darkness
alone means little (stains vary from slide to slide), so a fold is judged against the slide's own
tissue, as HistoQC's dark-tissue rule does:

1. the tissue's OD (summed over R, G, B), averaged over :data:`SMOOTH_UM` within the tissue only,
   so that nuclei and stroma texture average out and glass beside a fold does not dilute it;
2. **darker than the slide**: above :data:`DARKER_THAN_SLIDE` × the median of that average over its
   piece of tissue (a connected part of the tissue mask, at least :data:`MIN_PIECE_UM2`: the cores
   of a tissue micro-array differ in density, and a fold lies within one piece);
3. **a band, not a speck**: what survives an opening of :data:`MIN_WIDTH_UM` (a dense cluster of
   nuclei is narrower), in pieces of at least :data:`MIN_AREA_UM2`;
4. **darker by stain, not by light**: the second layer adds the tissue's own, coloured optical
   density, while too little light (a darker stripe or field) adds the same density to every
   channel. A band whose excess density over its piece is about equally spread over R, G and B
   (:data:`MIN_EXCESS_COLOUR`) is an exposure error, left to the model and the slide's tone.

The thresholds were set on synthetic folds (``slideiqa.synthetic.artefacts.fold``) drawn on the
training sources and checked for false alarms on every clean source of ``training/sources.toml``
(``benchmarks/synthetic_artefacts.py``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from slideiqa.artefacts.pen import at_working_scale, disk, optical_density
from slideiqa.measure.tissue import tissue_mask

SMOOTH_UM = 40.0
DARKER_THAN_SLIDE = 1.6
MIN_WIDTH_UM = 80.0
MIN_AREA_UM2 = 150.0 * 300.0
#: Pieces of tissue smaller than this (a 500 µm square) are not searched: too little unfolded tissue.
MIN_PIECE_UM2 = 500.0 * 500.0
#: A band's excess OD over its piece must differ between channels by at least this share of its mean
#: to be a second layer of stain (H&E and DAB excesses differ by 0.6 or more; a gain adds 0 at all).
MIN_EXCESS_COLOUR = 0.3
#: Thumbnails finer than this are shrunk to about it: an 80 µm opening is still 10 pixels there.
WORKING_UM_PER_PX = 8.0


def fold_mask(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    """Where ``rgb`` (a thumbnail of ``um_per_px`` µm per pixel) shows folded tissue."""
    return at_working_scale(_fold_mask, rgb, um_per_px, WORKING_UM_PER_PX)


def tissue_density(rgb: np.ndarray, tissue: np.ndarray, um_per_px: float) -> np.ndarray:
    """Summed OD averaged over :data:`SMOOTH_UM` within ``tissue`` (normalised convolution)."""
    sigma = SMOOTH_UM / 2 / um_per_px
    od = optical_density(rgb).sum(-1) * tissue
    weight = ndimage.gaussian_filter(tissue.astype(np.float32), sigma)
    return ndimage.gaussian_filter(od, sigma) / np.maximum(weight, 1e-3)


def _fold_mask(rgb: np.ndarray, um_per_px: float) -> np.ndarray:
    tissue = tissue_mask(rgb)
    pieces, count = ndimage.label(tissue)
    if not count:
        return tissue
    index = np.arange(1, count + 1)
    large = ndimage.sum_labels(tissue, pieces, index=index) * um_per_px**2 >= MIN_PIECE_UM2
    if not large.any():
        return np.zeros(rgb.shape[:2], bool)
    density = tissue_density(rgb, tissue, um_per_px)
    # Each piece is judged against itself: the cores of a tissue micro-array differ in density from
    # one another, and a piece too small to hold a fold beside unfolded tissue is not judged.
    reference = np.concatenate([[np.inf], np.where(large, ndimage.median(density, pieces, index=index), np.inf)])
    dark = tissue & (density > DARKER_THAN_SLIDE * reference[pieces])
    dark = ndimage.binary_opening(dark, disk(MIN_WIDTH_UM / 2 / um_per_px))
    labels, count = ndimage.label(dark)
    if not count:
        return dark
    index = np.arange(1, count + 1)
    large_enough = index[ndimage.sum_labels(dark, labels, index=index) * um_per_px**2 >= MIN_AREA_UM2]
    keep = np.zeros(count + 1, bool)
    # Colour is judged only for bands large enough to be folds: a slide has many small dark specks.
    keep[large_enough] = _darker_by_stain(optical_density(rgb), labels, large_enough, pieces, tissue & ~dark)
    return keep[labels]


def _darker_by_stain(
    od: np.ndarray, bands: np.ndarray, index: np.ndarray, pieces: np.ndarray, unfolded: np.ndarray
) -> np.ndarray:
    """Per band: whether its mean OD exceeds its piece's unfolded tissue's unequally across R, G, B."""
    coloured = np.zeros(len(index), bool)
    piece_medians: dict[int, np.ndarray | None] = {}
    for position, band in enumerate(index):
        inside = bands == band
        piece = int(np.bincount(pieces[inside]).argmax())
        if piece not in piece_medians:
            around = unfolded & (pieces == piece)
            piece_medians[piece] = np.median(od[around], axis=0) if around.any() else None
        if piece_medians[piece] is None:
            coloured[position] = True
            continue
        excess = od[inside].mean(axis=0) - piece_medians[piece]
        coloured[position] = excess.mean() <= 0 or np.ptp(excess) >= MIN_EXCESS_COLOUR * excess.mean()
    return coloured
