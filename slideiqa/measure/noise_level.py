"""Noise judged by measuring it, not by the network's impression of it.

A network that has not seen a lab's stain or scanner often takes its texture for noise (dense DAB
granules, a scanner's sharpening). Sensor noise, though, has a physical signature a texture lacks: it
is everywhere in the tile, at the finest scale. The noise level is estimated as Donoho & Johnstone's
robust median of the finest diagonal wavelet coefficients (``median(|HH|) / 0.6745``, the estimator of
``skimage.restoration.estimate_sigma``), taken per 16 px patch, and the tile's estimate is a low
percentile of its patches: a tile's smoothest parts show its noise, its textured parts add nothing.
It is read from the green channel (averaging the channels would divide channel-independent noise by
√3 and leave texture as it is).

A patch whose pixels are clipped to white or black cannot show its noise — the clip flattens it — so
patches with more than ``CLIPPED_SHARE`` of clipped pixels are left out. Without that, a pale IHC
field's bright glass and cream stroma were its "smoothest parts", and noise at the floor measured
9.6 grey levels there (DeepLIIF's Ki67 fields: 3 of 14 noisy tiles passed a map). The patches cover
the whole tile, once: the same patches give the tile's estimate and its cells' (:class:`PatchNoise`).

Measured on every clean field's tiles at 0.5 µm/px (the held-out sources and the catalogued ones:
1101 tiles, ``training/analysis/field_measurements.py``), no sharp tile comes near ``NOISE_SIGMA``
(the highest: 6.5); of 3303 good looks of them (stain, calibration, the scanner's sharpening and
compression: ``appearance.vary_good``) 5 are above it; of the same tiles with noise at the floor,
at most 0.2 % are below it, for slideiqa's noise and other libraries' alike. ``judge_noise`` therefore replaces the
network's P(noise) with the measurement's and leaves the network to share the rest of the probability
among good and the other families, in its own proportions.

The estimate is in grey levels at the scale it was measured on, ``NOISE_MPP`` µm/px; a shrunk tile
averages noise away, so models at other scales keep their own P(noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from slideiqa.measure.families import replace_class

#: Noise σ (grey levels of the green channel) above which a tile is noisy: 5 of 3303 good looks of
#: the clean fields' tiles above it, at most 0.2 % of their copies with noise at the floor (σ 15
#: grey levels, any implementation) below it. (9.8 with the earlier estimate, on the tile's central
#: half with clipped patches kept, whose floor copies measured lower.)
NOISE_SIGMA = 9.0
#: Width of the logistic step around ``NOISE_SIGMA``, grey levels.
NOISE_SOFTNESS = 0.25
#: µm/px of the tiles the threshold was measured on.
NOISE_MPP = 0.5
#: Patch side in wavelet coefficients (16 px of the tile) and the percentile of patch estimates used.
PATCH, PATCH_PERCENTILE = 8, 10
#: A patch with more than this share of its pixels at 0 or 255 is clipped and shows no noise.
CLIPPED_SHARE = 0.02
#: A tile with fewer unclipped patches than this (of 196) is estimated from all of them.
MIN_UNCLIPPED = 8
_GAUSSIAN_MAD = 0.6745


def measures_noise(classes: list[str], mpp: float) -> bool:
    """Whether a model with these classes, seeing tiles at ``mpp`` µm/px, has its noise measured."""
    return "noise" in classes and abs(mpp - NOISE_MPP) <= 0.05 * NOISE_MPP


#: How a map's P(noise) is made, recorded in its attributes (``judgement.judgement_attributes``).
NOISE_RULE: dict[str, Any] = {
    "estimator": "wavelet MAD, green channel, 10th percentile of unclipped 16 px patches",
    "threshold_sigma": NOISE_SIGMA,
    "softness": NOISE_SOFTNESS,
}


@dataclass(frozen=True)
class PatchNoise:
    """The noise σ of every 16 px patch of a batch of tiles, and which patches are clipped: measured
    once, read per tile and per cell."""

    #: (N, H // 16, W // 16) σ, grey levels of the green channel.
    sigma: np.ndarray
    #: (N, H // 16, W // 16) True where the patch is clipped (``CLIPPED_SHARE``).
    clipped: np.ndarray

    def per_tile(self) -> np.ndarray:
        """(N,) the ``PATCH_PERCENTILE``-th percentile of each tile's unclipped patches (of all of
        them where fewer than ``MIN_UNCLIPPED`` are unclipped)."""
        sigma = self.sigma.reshape(len(self.sigma), -1)
        clipped = self.clipped.reshape(len(sigma), -1)
        clipped = clipped & ((~clipped).sum(axis=1) >= MIN_UNCLIPPED)[:, None]
        counts = (~clipped).sum(axis=1)
        ordered = np.sort(np.where(clipped, np.inf, sigma), axis=1)
        return ordered[np.arange(len(sigma)), counts * PATCH_PERCENTILE // 100]

    def per_cell(self, cell_px: int) -> np.ndarray:
        """(N, H // cell_px, W // cell_px) σ of each cell: the lowest of its unclipped patches — as
        the tile's estimate is a low percentile of its own, a cell's smoothest part shows its noise —
        or of all of them where every one is clipped."""
        per_cell = cell_px // (2 * PATCH)
        count, rows, cols = len(self.sigma), self.sigma.shape[1] // per_cell, self.sigma.shape[2] // per_cell

        def cells(values: np.ndarray) -> np.ndarray:
            return values[:, : rows * per_cell, : cols * per_cell].reshape(count, rows, per_cell, cols, per_cell)

        sigma, clipped = cells(self.sigma), cells(self.clipped)
        lowest_unclipped = np.where(clipped, np.inf, sigma).min(axis=(2, 4))
        return np.where(np.isfinite(lowest_unclipped), lowest_unclipped, sigma.min(axis=(2, 4)))


def patch_noise(tiles: np.ndarray) -> PatchNoise:
    """The noise of every 16 px patch of (N, H, W, 3) uint8 tiles."""
    tiles = np.asarray(tiles)
    side = 2 * PATCH  # a diagonal coefficient per 2 px
    rows, cols = tiles.shape[1] // side, tiles.shape[2] // side
    if rows == 0 or cols == 0:
        raise ValueError(f"tiles of {tiles.shape[2]}×{tiles.shape[1]} px are too small to measure noise")
    green = np.ascontiguousarray(tiles[:, : rows * side, : cols * side, 1])
    # uint8 as tiles come; anything else in float32, as PyWavelets computed it.
    diagonal = np.abs(_diagonal_detail(green if green.dtype == np.uint8 else green.astype(np.float32)))
    patches = diagonal.reshape(len(tiles), rows, PATCH, cols, PATCH).transpose(0, 1, 3, 2, 4)
    sigma = _median(patches.reshape(len(tiles), rows, cols, -1)) / _GAUSSIAN_MAD
    # Pixels at 0 or 255 (one comparison: adding 1 wraps 255 to 0), counted per patch a band of rows
    # at a time — a third of the cost of a mean over a 5-d view.
    extreme = ((green + np.uint8(1)) <= 1).view(np.uint8)
    per_band = extreme.reshape(len(tiles), rows, side, cols * side).sum(axis=2, dtype=np.uint16)
    clipped = per_band.reshape(len(tiles), rows, cols, side).sum(axis=3, dtype=np.uint16)
    return PatchNoise(sigma, clipped > CLIPPED_SHARE * side * side)


def noise_sigma(tiles: np.ndarray) -> np.ndarray:
    """Estimated noise σ (grey levels of the green channel) of each (N, H, W, 3) uint8 tile."""
    return patch_noise(tiles).per_tile()


def noise_sigma_patches(tile: np.ndarray) -> np.ndarray:
    """The estimate per 16 px patch of one (H, W, 3) uint8 tile: (H // 16, W // 16) σ, to show where
    in a tile the noise is (``slideiqa.explain.heatmaps``)."""
    return patch_noise(np.asarray(tile)[None]).sigma[0]


#: db2's decomposition high-pass filter (``pywt.Wavelet("db2").dec_hi``), in the precision it is applied in.
_DB2_HIGH = np.array([-0.48296291314469025, 0.836516303737469, -0.22414386804185735, -0.12940952255092145], np.float32)


def _diagonal_detail(green: np.ndarray) -> np.ndarray:
    """The finest diagonal wavelet coefficients (db2) of (N, H, W) uint8 (or float32) images of even
    sides, the first H/2 × W/2 of them: bit for bit ``pywt.dwt2(green.astype(np.float32), "db2")[1][2]`` cropped
    so, in about half its time (PyWavelets filters along rows through strided copies)."""
    return _high_pass_halved(_high_pass_halved(green, axis=1), axis=2)


def _high_pass_halved(values: np.ndarray, axis: int) -> np.ndarray:
    """db2's high-pass filter along ``axis``, every other sample: d[k] = Σ_j h[j]·x[2k + 1 − j], with
    PyWavelets' symmetric extension before the start (x[−1] = x[0], x[−2] = x[1]), summed in its order."""
    samples = np.moveaxis(values, axis, 0)
    even, odd = samples[0::2], samples[1::2]
    detail = odd * _DB2_HIGH[0]
    detail += even * _DB2_HIGH[1]
    detail[1:] += odd[:-1] * _DB2_HIGH[2]
    detail[0] += even[0] * _DB2_HIGH[2]
    detail[1:] += even[:-1] * _DB2_HIGH[3]
    detail[0] += odd[0] * _DB2_HIGH[3]
    return np.moveaxis(detail, 0, axis)


def _median(values: np.ndarray) -> np.ndarray:
    """``np.median`` over the last axis, exactly, by sorting: numpy's vectorised sort of short rows
    takes a fifteenth of the time of partitioning them here (AVX2)."""
    count = values.shape[-1]
    ordered = np.sort(values, axis=-1)
    return (ordered[..., (count - 1) // 2] + ordered[..., count // 2]) / 2


def measured_noise_probability(sigma: np.ndarray) -> np.ndarray:
    return expit((np.asarray(sigma, dtype=np.float64) - NOISE_SIGMA) / NOISE_SOFTNESS)


def judge_noise(probabilities: np.ndarray, classes: list[str], sigma: np.ndarray) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(noise) from the measured ``sigma`` and the other
    classes rescaled to the rest, keeping their ratios; unchanged for a model without a noise class."""
    return replace_class(probabilities, classes, "noise", measured_noise_probability(sigma))
