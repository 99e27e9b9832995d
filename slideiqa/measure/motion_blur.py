"""Motion blur judged by measuring it, not by the network's impression of it.

A network trained on a few labs takes a scan's own softness, or featureless tissue, for motion (a
held-out model called 58 of 60 sharp BCCD fields motion) and names real streaks defocus half the time.
Motion has a physical signature that neither texture nor defocus has: a streak of length L along an
angle θ removes the fine detail *along θ only* (its transfer function is a sinc with its first zero at
1/L along θ and is 1 across it), while defocus removes it in every direction alike.

The measurement reads the tile's power spectrum (luminance, Hann window) in twelve 15° sectors of two
frequency bands: fine detail (0.13–0.35 cycles/px: periods of 1.4–3.8 µm at 0.5 µm/px, all removed by a
5 µm streak along it) and coarse structure (0.025–0.06 cycles/px: periods of 8–20 µm, mostly kept).
The fine band starts at 0.13 rather than 0.12 because a stage that accelerates leaves a streak whose
transfer function has no zeros (its weight grows along it): it removes least at the band's low end,
where tissue keeps most of its fine energy. With the thresholds unchanged, the accelerating streaks
missed at the floor fell from 9 % to 8 % of tiles on the clean fields of the sources the model trains
on and from 4 % to 3 % on those it never saw (in maps of CPM-15, 14 % → 10 %), with no more clean
tiles or good looks flagged; albumentations' streaks missed rose from 1.7 % to 3.5 % on the first
(on the held-out fields 1.1 % → 0.7 %). Starting at 0.14 helps the accelerating kind more but loses
other libraries' streaks on some tiles (``training/analysis/motion_bands.py``).
Two log-ratios come out of it:

* **fine anisotropy** — the fine band's strongest sector over its weakest: about 1 (e^0–e^1) in sharp
  tissue and in defocus, e^3–e^5 under motion;
* **fine-to-coarse anisotropy** — the same over the sectors' fine / coarse ratio. Tissue with an
  orientation of its own (stroma fibres) or a scanner soft along one axis has little fine detail along
  that axis at *every* scale, so dividing by the coarse band takes its orientation out; motion keeps
  the coarse band and removes the fine one.

A tile is motion-blurred when both exceed their thresholds (``MOTION_FINE``, ``MOTION_RATIO``): each
alone fails on one kind of sharp tissue (the first on skin scanned soft along one axis, the second on
some IHC fields), together they fail on neither. The thresholds were set on the generalisation
benchmark's *training* tiles (``docs/model/default-model.md``): the pair that misses the fewest motion copies at
the 5 µm floor or stronger (0.8 %) while flagging at most 0.2 % of the good looks. On the held-out test
tiles of every source group it flags 0–3 % of sharp tiles and 92–100 % of streaks by slideiqa's code
and by other libraries'. ``judge_motion`` therefore replaces the network's P(motion) with the
measurement's, as ``noise_level.judge_noise`` does for noise, and leaves the network to share the rest
among good and the other families in its own proportions.

The thresholds hold at the scale they were measured on, ``MOTION_MPP`` µm/px (a 5 µm streak is 10 px
there); models at other scales keep their own P(motion). A tile judged at its own pixels, up to
``grid.COARSEST_RATIO`` coarser than the model (a 20× scanner's 0.55 µm/px, ``grid.judging_scale``),
has its bands scaled to the same periods in µm, so the measurement reads the same detail of the
glass (a 5 µm streak is 9 px at 0.55). Streaks missed are the same either way on the clean fields
shrunk to 0.55; defocused tiles taken for motion fell from 2.6 % to 0.9 % on the trained-on ones
(``training/analysis/motion_scale.py``).
An edge tile, filled past the slide's border with the image mirrored about it, is read on its own
part (``edge_tiles``): mirrored, a streak at θ adds one at −θ, and measured whole, 20–30 % of the
streaks on edge tiles holding 29–57 % of a tile went unseen. The part is read as the mean spectrum of
square windows of its shorter side laid along it (a window of the part's own shape resolves its long
axis finer than its short one), and the thresholds are raised as its share ``a`` of the tile
shrinks (``EDGE_SPREAD``), since fewer pixels spread the sector energies more: on the fields the
model trains on, clean edge tiles are then flagged no more often than whole ones (1.1 %) but on the
smallest corner measured (96 × 96 px: 1.5 %; 3.8 % through the mirror), and fewer streaks are
missed than through the mirror at every size measured (``training/analysis/motion_edges.py``).
0.3–0.4 ms a tile on one core here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft
from scipy.special import expit

from slideiqa.io.edge_tiles import own_extent
from slideiqa.io.grid import COARSEST_RATIO
from slideiqa.measure.families import replace_class

#: Log-ratio of the strongest to the weakest sector of fine detail above which a tile may be streaked.
MOTION_FINE = 2.6
#: Log-ratio of the highest to the lowest sector's fine / coarse ratio above which it may be streaked.
MOTION_RATIO = 2.45
#: Width of the logistic step of the combined score (1 = at both thresholds).
MOTION_SOFTNESS = 0.03
#: µm/px of the tiles the thresholds were measured on.
MOTION_MPP = 0.5
#: A model within this share of ``MOTION_MPP`` has its tiles' motion measured.
MOTION_TOLERANCE = 0.05
SECTORS = 12
FINE_BAND = (0.13, 0.35)
COARSE_BAND = (0.025, 0.06)
#: An edge tile is measured on its own part (``edge_tiles.own_extent``) where that part is at least
#: this many pixels each way; a narrower one is measured whole, its mirror image included.
MIN_OWN = 64
#: The thresholds of an edge tile measured on a share ``a`` of its area are raised by the factor
#: 1 + EDGE_SPREAD × (1/√a − 1): fewer pixels spread the sector energies more, and the 99th
#: percentile of clean tiles' scores grew so on the fields the model trains on (1.01 whole, 1.10
#: on 43 % of a tile, 1.38 on 18 %: ``training/analysis/motion_edges.py``).
EDGE_SPREAD = 0.26
#: A floor under each sector's energy, so that a flat tile (no detail) has no direction either.
_FLAT = 9e-3
#: Spectra are computed this many tiles at a time, in place where numpy allows: ≈ 0.6 MB of
#: temporaries a tile, which a batch worker's heap keeps once touched (``pipeline/block_task.py`` sets glibc's
#: trim threshold), so the chunk stays small.
_CHUNK = 16


def measures_motion(classes: list[str], mpp: float) -> bool:
    """Whether a model with these classes, seeing tiles at ``mpp`` µm/px, has its motion measured."""
    return "motion" in classes and abs(mpp - MOTION_MPP) <= MOTION_TOLERANCE * MOTION_MPP


def band_scale(mpp: float | None) -> float:
    """The factor from the bands at ``MOTION_MPP`` to those of tiles at ``mpp`` µm/px (the same
    periods in µm), rounded so that the few scales a run sees share their cached bins. Tiles are
    those of a model that :func:`measures_motion`, at its scale or a slide's up to
    ``grid.COARSEST_RATIO`` coarser."""
    if mpp is None:
        return 1.0
    ratio = mpp / MOTION_MPP
    if not 1 - MOTION_TOLERANCE <= ratio <= (1 + MOTION_TOLERANCE) * COARSEST_RATIO + 1e-9:
        raise ValueError(
            f"motion is measured on tiles within {MOTION_TOLERANCE:.0%} of {MOTION_MPP} µm/px, or up to "
            f"{COARSEST_RATIO - 1:.0%} coarser than such a model's, not {mpp:g}"
        )
    return round(ratio, 3)


#: How a map's P(motion) is made, recorded in its attributes (``judgement.judgement_attributes``).
MOTION_RULE: dict[str, Any] = {
    "estimator": "directional power spectrum, fine and fine/coarse anisotropy",
    "threshold_fine": MOTION_FINE,
    "threshold_ratio": MOTION_RATIO,
    "softness": MOTION_SOFTNESS,
    "bands_cycles_per_um": {
        "fine": [f / MOTION_MPP for f in FINE_BAND],
        "coarse": [f / MOTION_MPP for f in COARSE_BAND],
    },
}


@dataclass(frozen=True)
class _SectorBins:
    """Where each band's sectors lie in a tile's half-spectrum, for tiles of one size and scale."""

    #: (H, W) Hann window.
    window: np.ndarray
    #: Columns of ``rfft2``'s half-spectrum computed: those up to the fine band's top frequency.
    columns: int
    #: Indices into the flattened (H, ``columns``) spectrum: the fine band's bins grouped by sector,
    #: then the coarse band's.
    indices: np.ndarray
    #: Where each of the 2 × ``SECTORS`` groups of ``indices`` starts.
    starts: np.ndarray


@lru_cache(maxsize=8)
def _sector_bins(height: int, width: int, scale: float = 1.0) -> _SectorBins:
    """The window and the bands' bins for tiles of this size, the bands' cycles/px times ``scale``."""
    window = np.outer(np.hanning(height), np.hanning(width)).astype(np.float32)
    columns = min(width // 2 + 1, int(np.ceil(FINE_BAND[1] * scale * width)) + 1)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :columns]
    radius = np.hypot(fx, fy).ravel()
    sector = (np.degrees(np.arctan2(fy, fx)) % 180 // (180 / SECTORS)).astype(int).ravel()
    indices: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    for low, high in (FINE_BAND, COARSE_BAND):
        inside = np.flatnonzero((radius >= low * scale) & (radius < high * scale))
        by_sector = inside[np.argsort(sector[inside], kind="stable")]
        starts.append(np.searchsorted(sector[by_sector], np.arange(SECTORS)) + sum(len(i) for i in indices))
        indices.append(by_sector)
    return _SectorBins(window, columns, np.concatenate(indices), np.concatenate(starts))


def _band_power(images: np.ndarray, bins: _SectorBins, size: tuple[int, int]) -> np.ndarray:
    """(N, bins) power of the bands' bins (``bins.indices``) of (N, h, w) float32 windowed images
    zero-padded to ``size``. Only the spectrum's columns below the fine band's top are transformed
    along the second axis (the same values as ``rfft2``'s, bit for bit), and only the bands' bins are
    squared."""
    rows = scipy.fft.rfft(images, n=size[1], axis=-1)[:, :, : bins.columns]
    spectrum = scipy.fft.fft(rows, n=size[0], axis=-2, overwrite_x=True).reshape(len(images), -1)
    power = np.abs(spectrum[:, bins.indices])
    power *= power
    return power


def _sector_sums(power: np.ndarray, bins: _SectorBins) -> tuple[np.ndarray, np.ndarray]:
    """(fine, coarse) energy per sector, (N, SECTORS) each, of :func:`_band_power`'s (N, bins). Summed
    with ``np.add.reduceat`` rather than a matrix product: BLAS would start threads of its own inside
    a map's block threads."""
    energy = np.add.reduceat(power, bins.starts, axis=1) + _FLAT
    return energy[:, :SECTORS], energy[:, SECTORS:]


def _own_part_energies(
    summed: np.ndarray, height: int, width: int, full: tuple[int, int], scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """(fine, coarse) sector energies, each (1, SECTORS), of an edge tile's own ``height`` × ``width``
    part of ``summed`` (its channel sum): the mean power spectrum of square windows of the part's
    shorter side laid along its longer one (Welch's method). A square resolves every direction
    alike; a window of the part's own shape resolved its long axis finer than its short one and
    called 2–3 times as many clean edge tiles motion (``training/analysis/motion_edges.py``)."""
    side, longer = min(height, width), max(height, width)
    offsets = np.linspace(0, longer - side, max(1, -(-longer // side))).round().astype(int)
    squares = np.stack(
        [summed[:side, o : o + side] if width > height else summed[o : o + side, :side] for o in offsets]
    ).astype(np.float32)
    squares -= squares.mean(axis=(1, 2), keepdims=True)
    squares *= _sector_bins(side, side).window
    # Zero-padded to the tile's size, so the bands keep every sector's bins at any side. Energy grows
    # with the window's area; scaled to a whole tile's, so that _FLAT means the same.
    bins = _sector_bins(*full, scale)
    power = _band_power(squares, bins, full).mean(axis=0, keepdims=True) * (full[0] * full[1] / side**2)
    return _sector_sums(power, bins)


@dataclass(frozen=True)
class SectorEnergies:
    """Each tile's power spectrum summed over the fine and the coarse band in each of ``SECTORS``
    directions: (N, SECTORS) each. Motion reads how unequal the directions are; the defocus
    evidence (``defocus_evidence``) reads how much fine detail there is beside the coarse structure."""

    fine: np.ndarray
    coarse: np.ndarray

    def anisotropy(self) -> np.ndarray:
        """(N, 2) log-ratios: fine anisotropy, fine-to-coarse anisotropy."""
        ratio = self.fine / self.coarse
        return np.stack(
            [np.log(self.fine.max(axis=1) / self.fine.min(axis=1)), np.log(ratio.max(axis=1) / ratio.min(axis=1))],
            axis=1,
        )

    def detail(self) -> np.ndarray:
        """(N,) log of the fine band's energy over the coarse band's, every direction together."""
        return np.log(self.fine.sum(axis=1) / self.coarse.sum(axis=1))


def sector_energies(tiles: np.ndarray, mpp: float | None = None, extent: np.ndarray | None = None) -> SectorEnergies:
    """The fine and coarse bands' energy per sector of (N, H, W, 3) uint8 tiles at ``mpp`` µm/px
    (default ``MOTION_MPP``); an edge tile's spectrum is read on its own part (``extent``:
    ``edge_tiles.own_extent`` of the tiles, where the caller has it already)."""
    tiles = np.asarray(tiles)
    full, scale = tiles.shape[1:3], band_scale(mpp)
    bins = _sector_bins(*full, scale)
    extent = own_extent(tiles) if extent is None else np.asarray(extent)
    own_part = _measured_on_own_part(extent, full)
    fine_out = np.empty((len(tiles), SECTORS), np.float64)
    coarse_out = np.empty((len(tiles), SECTORS), np.float64)
    for start in range(0, len(tiles), _CHUNK):
        chunk = tiles[start : start + _CHUNK]
        # The sum of the channels (3 × luminance; only ratios are used): numpy's mean over a last
        # axis of 3 costs ten times as much.
        summed = chunk[..., 0].astype(np.uint16)
        summed += chunk[..., 1]
        summed += chunk[..., 2]
        luminance = summed.astype(np.float32)
        luminance -= luminance.mean(axis=(1, 2), keepdims=True)
        luminance *= bins.window
        fine, coarse = _sector_sums(_band_power(luminance, bins, full), bins)
        for index in np.flatnonzero(own_part[start : start + _CHUNK]):
            height, width = extent[start + index]
            fine[index], coarse[index] = _own_part_energies(summed[index], int(height), int(width), full, scale)
        fine_out[start : start + len(chunk)], coarse_out[start : start + len(chunk)] = fine, coarse
    return SectorEnergies(fine_out, coarse_out)


def motion_anisotropy(tiles: np.ndarray, mpp: float | None = None, extent: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) log-ratios (fine anisotropy, fine-to-coarse anisotropy) of (N, H, W, 3) uint8 tiles,
    ``mpp`` and ``extent`` as :func:`sector_energies`."""
    return sector_energies(tiles, mpp, extent).anisotropy()


def _measured_on_own_part(extent: np.ndarray, full: tuple[int, int]) -> np.ndarray:
    """(N,) whether each tile is an edge tile measured on its own part (at least ``MIN_OWN`` each way)."""
    extent = np.asarray(extent)
    return (extent.min(axis=1) >= MIN_OWN) & (extent < full).any(axis=1)


def edge_margin(extent: np.ndarray, full: tuple[int, int]) -> np.ndarray:
    """(N,) the factor each tile's thresholds are raised by: 1 for a tile measured whole, more for an
    edge tile measured on a smaller own part (``EDGE_SPREAD``)."""
    extent = np.asarray(extent)
    share = np.where(_measured_on_own_part(extent, full), extent.prod(axis=1) / (full[0] * full[1]), 1.0)
    return 1.0 + EDGE_SPREAD * (1.0 / np.sqrt(share) - 1.0)


def motion_score(
    tiles: np.ndarray,
    mpp: float | None = None,
    extent: np.ndarray | None = None,
    energies: SectorEnergies | None = None,
) -> np.ndarray:
    """How far each tile is past both thresholds: > 1 streaked, < 1 not (the lower of the two ratios);
    ``mpp`` and ``extent`` as :func:`sector_energies`, ``energies`` where the caller has them already."""
    tiles = np.asarray(tiles)
    extent = own_extent(tiles) if extent is None else np.asarray(extent)
    anisotropy = (sector_energies(tiles, mpp, extent) if energies is None else energies).anisotropy()
    score = np.minimum(anisotropy[:, 0] / MOTION_FINE, anisotropy[:, 1] / MOTION_RATIO)
    return score / edge_margin(extent, tiles.shape[1:3])


def _measured_motion_probability(score: np.ndarray) -> np.ndarray:
    return expit((np.asarray(score, dtype=np.float64) - 1.0) / MOTION_SOFTNESS)


def judge_motion(probabilities: np.ndarray, classes: list[str], score: np.ndarray) -> np.ndarray:
    """``probabilities`` (tiles × classes) with P(motion) from the measured ``score`` and the other
    classes rescaled to the rest, keeping their ratios; unchanged for a model without a motion class."""
    return replace_class(probabilities, classes, "motion", _measured_motion_probability(score))
