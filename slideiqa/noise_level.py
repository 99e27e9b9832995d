"""Noise judged by measuring it, not by the network's impression of it.

A network that has not seen a lab's stain or scanner often takes its texture for noise (dense DAB
granules, a scanner's sharpening). Sensor noise, though, has a physical signature a texture lacks: it
is everywhere in the tile, at the finest scale. The noise level is estimated as Donoho & Johnstone's
robust median of the finest diagonal wavelet coefficients (``median(|HH|) / 0.6745``, the estimator of
``skimage.restoration.estimate_sigma``), taken per 16 px patch, and the tile's estimate is a low
percentile of its patches: a tile's smoothest parts show its noise, its textured parts add nothing.
It is read from the green channel (averaging the channels would divide channel-independent noise by
√3 and leave texture as it is) of the tile's central half (a quarter of its pixels: 0.1 ms a tile).

Measured on the held-out test tiles of every source group (``training/README.md``), this estimate
separates sharp tiles from tiles with noise at the floor (σ 15 grey levels) or above almost
perfectly (none of 600 sharp tiles above ``NOISE_SIGMA``, 1 of 1200 noisy ones below), for
slideiqa's and other libraries' noise alike; the networks did not. ``judge_noise`` therefore
replaces the network's P(noise) with the measurement's and leaves the network to share the rest of
the probability among good and the other families, in its own proportions.

The estimate is in grey levels at the scale it was measured on, ``NOISE_MPP`` µm/px; a shrunk tile
averages noise away, so models at other scales keep their own P(noise).
"""

from __future__ import annotations

import numpy as np
import pywt
from scipy.special import expit

#: Noise σ (grey levels of the green channel) above which a tile is noisy. Set on the generalisation
#: benchmark's *training* tiles, not its test tiles: halfway between the 99.5th percentile of the good
#: looks (the scanner's sharpening and compression included: 9.2) and the 0.5th percentile of tiles
#: with noise at the floor, σ 15 grey levels, or stronger (10.4).
NOISE_SIGMA = 9.8
#: Width of the logistic step around ``NOISE_SIGMA``, grey levels.
NOISE_SOFTNESS = 0.25
#: µm/px of the tiles the threshold was measured on.
NOISE_MPP = 0.5
#: Patch side in wavelet coefficients (16 px of the tile) and the percentile of patch estimates used.
PATCH, PATCH_PERCENTILE = 8, 10
_GAUSSIAN_MAD = 0.6745


def measures_noise(classes: list[str], mpp: float) -> bool:
    """Whether a model with these classes, seeing tiles at ``mpp`` µm/px, has its noise measured."""
    return "noise" in classes and abs(mpp - NOISE_MPP) <= 0.05 * NOISE_MPP


def noise_judgement(classes: list[str], mpp: float) -> dict:
    """How a map's P(noise) was made, for its attributes."""
    if not measures_noise(classes, mpp):
        return {"measured": False}
    return {"measured": True, "estimator": "wavelet MAD, green channel, 10th percentile of 16 px patches",
            "threshold_sigma": NOISE_SIGMA, "softness": NOISE_SOFTNESS}


def noise_sigma(tiles: np.ndarray) -> np.ndarray:
    """Estimated noise σ (grey levels of the green channel) of each (N, H, W, 3) uint8 tile."""
    tiles = np.asarray(tiles)
    height, width = tiles.shape[1:3]
    green = tiles[:, height // 4: height - height // 4, width // 4: width - width // 4, 1].astype(np.float32)
    diagonal = _diagonal_detail(green)
    rows, cols = (size // PATCH * PATCH for size in diagonal.shape[-2:])
    if rows == 0 or cols == 0:
        raise ValueError(f"tiles of {width}×{height} px are too small to measure noise")
    patches = np.abs(diagonal[:, :rows, :cols]).reshape(len(tiles), rows // PATCH, PATCH, cols // PATCH, PATCH)
    per_patch = _median(patches.transpose(0, 1, 3, 2, 4).reshape(len(tiles), -1, PATCH * PATCH))
    low = int(per_patch.shape[1] * PATCH_PERCENTILE / 100)
    return np.sort(per_patch, axis=1)[:, low] / _GAUSSIAN_MAD


def noise_sigma_patches(tile: np.ndarray) -> np.ndarray:
    """The same estimate per 16 px patch of the whole (H, W, 3) uint8 tile: (H // 16, W // 16) σ, to
    show where in a tile the noise is (``slideiqa.explain``)."""
    return _patch_sigmas(np.asarray(tile)[None])[0]


def _patch_sigmas(tiles: np.ndarray) -> np.ndarray:
    """(N, H // 16, W // 16) σ of every 16 px patch of (N, H, W, 3) uint8 tiles."""
    diagonal = _diagonal_detail(tiles[..., 1].astype(np.float32))
    rows, cols = tiles.shape[1] // (2 * PATCH), tiles.shape[2] // (2 * PATCH)  # a coefficient per 2 px
    patches = np.abs(diagonal[:, : rows * PATCH, : cols * PATCH]).reshape(len(tiles), rows, PATCH, cols, PATCH)
    return _median(patches.transpose(0, 1, 3, 2, 4).reshape(len(tiles), rows, cols, -1)) / _GAUSSIAN_MAD


def _diagonal_detail(images: np.ndarray) -> np.ndarray:
    """The finest diagonal wavelet coefficients (db2) of (N, H, W) float32 images: exactly
    ``pywt.dwt2(images, "db2", axes=(-2, -1))[1][2]``, without the three subbands it is not asked for."""
    _, rows_detail = pywt.dwt(images, "db2", axis=-2)
    return pywt.dwt(rows_detail, "db2", axis=-1)[1]


def _median(values: np.ndarray) -> np.ndarray:
    """``np.median`` over the last axis, exactly, by sorting: numpy's vectorised sort of short rows
    takes a fifteenth of the time of partitioning them here (AVX2)."""
    count = values.shape[-1]
    ordered = np.sort(values, axis=-1)
    return (ordered[..., (count - 1) // 2] + ordered[..., count // 2]) / 2


def noise_sigma_cells(tiles: np.ndarray, cell_px: int) -> np.ndarray:
    """The estimate per ``cell_px`` cell of (N, H, W, 3) uint8 tiles: (N, H // cell_px, W // cell_px) σ,
    the lowest of the cell's 16 px patches — as the tile's estimate is a low percentile of its own:
    a cell's smoothest part shows its noise. Measured on held-out crops, no clean cell of 3920 comes
    near ``NOISE_SIGMA`` (99th percentile 5.1 grey levels)."""
    per_cell = cell_px // (2 * PATCH)
    sigmas = _patch_sigmas(np.asarray(tiles))
    count, rows, cols = len(sigmas), sigmas.shape[1] // per_cell, sigmas.shape[2] // per_cell
    cells = sigmas[:, : rows * per_cell, : cols * per_cell].reshape(count, rows, per_cell, cols, per_cell)
    return cells.min(axis=(2, 4))


def measured_noise_probability(sigma: np.ndarray) -> np.ndarray:
    return expit((np.asarray(sigma, dtype=np.float64) - NOISE_SIGMA) / NOISE_SOFTNESS)


def set_class_probability(probabilities: np.ndarray, index: int, values: np.ndarray) -> np.ndarray:
    """``probabilities`` (tiles × classes) with class ``index`` set to ``values`` and the other
    classes rescaled to the rest, keeping their ratios (shared evenly where they were all zero)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    others = np.delete(probabilities, index, axis=1)
    total = others.sum(axis=1, keepdims=True)
    even = np.full_like(others, 1.0 / others.shape[1])
    others = np.where(total > 1e-12, others / np.maximum(total, 1e-12), even) * (1.0 - values)[:, None]
    return np.insert(others, index, values, axis=1)


def judge_noise(probabilities: np.ndarray, classes: list[str], sigma: np.ndarray) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(noise) from the measured ``sigma`` and the other
    classes rescaled to the rest, keeping their ratios; unchanged for a model without a noise class."""
    if "noise" not in classes:
        return probabilities
    return set_class_probability(probabilities, classes.index("noise"),
                                 measured_noise_probability(sigma)).astype(np.float32)
