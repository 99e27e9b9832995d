"""Synthetic microscope degradations with a physically meaningful severity scale.

The seed paper built its "bad quality" cytology images by applying distortions to sharp reference
fields. This module implements the families that occur on real microscopes and scanners, each driven
by one ``severity`` in [0, 1] so that datasets can be graded (the 4-class blood-style set) or binary
(the cytology-style set). Severity 0 always returns the input unchanged; severity 1 is a defect no
reader would accept.

Every function takes and returns ``uint8`` RGB arrays of shape ``(H, W, 3)`` of any size, and is
deterministic for a given ``seed`` (an ``int`` or a :class:`numpy.random.Generator`).

Mappings from severity to physical parameters (``mpp`` is the image's µm per pixel):

* ``defocus``  – geometric-optics defocus: a uniform disk PSF of radius ``4 µm × severity``
  (``radius_px = 4 × severity / mpp``), the blur of a field that is a few µm out of the focal plane.
* ``motion``   – stage or camera motion during exposure: a line PSF of length ``12 µm × severity``
  at a random angle.
* ``noise``    – sensor noise: Poisson shot noise with ``10 ** (4 - 3 × severity)`` photons at full
  white (10 000 photons: negligible; 10 photons: very dim acquisition), plus Gaussian read noise of
  ``σ = 20 × severity`` grey levels.
* ``jpeg``     – lossy compression: JPEG quality ``5 + 90 × (1 - severity)²`` (95 … 5). Quadratic,
  because artefacts only become visible below quality ~40: severity 0.5 is quality 27.
* ``exposure`` – wrong exposure and contrast: an exposure change of ``±2 EV × severity`` (direction
  drawn from the seed unless given) with contrast reduced by ``60 % × severity``.

Real defects vary far more than one formula per family, and a model that knows one PSF shape learns
that shape rather than "blur". Each family therefore has *kinds* (``KINDS``), all on one severity
scale so that a severity floor means the same strength whatever the kind; the first kind of each
family is the formula above (the default, so datasets built before kinds existed are unchanged):

* ``defocus``: ``disk``; ``gaussian`` (σ = ``2 µm × severity``, the Gaussian of the same RMS radius
  as the disk: σ√2 = R/√2); ``aberrated`` (the disk with a bright rim, as spherical aberration gives
  on one side of focus, stretched up to 1.5× along a random axis, as astigmatism does).
* ``motion``: ``linear`` (uniform speed); ``ramp`` (accelerating stage: the PSF's weight grows
  linearly along the streak). Length ``12 µm × severity`` and any angle for both.
* ``noise``: ``poisson_gaussian``; ``gaussian`` (white noise of σ = ``30 × severity`` grey levels,
  σ 15 at severity 0.5); ``sensor`` (a camera's fixed pattern: column and row offsets of
  σ = ``12 × severity`` plus white noise of σ = ``27 × severity`` and hot or dead pixels in
  ``0.4 % × severity`` of the field; about σ 15 in all at severity 0.5).
* ``jpeg``: ``420`` (4:2:0 chroma subsampling) and ``444`` (none), at the same quality.
* ``exposure``: ``flat`` (the formula above); ``gain`` (a pure exposure change of ``±2 EV × severity``,
  clipping at white); ``gamma`` (a wrong tone curve, ``I ** 2 ** (∓2 × severity)``); ``clip`` (black and
  white points moved in by ``25 % × severity`` each, clipping shadows and highlights).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage, signal

Seed = int | np.random.Generator | None

#: The families the default quality model knows, in the order of its class labels.
FAMILIES: tuple[str, ...] = ("defocus", "motion", "noise", "jpeg", "exposure")
#: The four families the seed paper applies to every cytology reference image.
SEED_FAMILIES: tuple[str, ...] = ("defocus", "motion", "noise", "jpeg")

DEFOCUS_MAX_RADIUS_UM = 4.0
MOTION_MAX_LENGTH_UM = 12.0
NOISE_MAX_READ_SIGMA = 20.0
JPEG_BEST_QUALITY = 95
JPEG_WORST_QUALITY = 5
EXPOSURE_MAX_STOPS = 2.0
EXPOSURE_MAX_CONTRAST_LOSS = 0.6
EXPOSURE_CLIP_INSET = 0.25


def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB array (H, W, 3), got {image.dtype} {image.shape}")
    return image


def _check_severity(severity: float) -> float:
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must lie in [0, 1], got {severity}")
    return float(severity)


def _convolve_rgb(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with a normalised PSF; edges are mirrored so borders don't darken."""
    pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(image.astype(np.float32), ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="reflect")
    out = np.stack([signal.fftconvolve(padded[..., c], kernel, mode="valid") for c in range(3)], axis=-1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def disk_psf(radius_px: float) -> np.ndarray:
    """A uniform disk PSF with anti-aliased rim, so sub-pixel radii still grow the blur smoothly."""
    half = int(np.ceil(radius_px)) + 1
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    # Supersample the rim: the fraction of each pixel inside the disk.
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    yy = y[..., None, None] + sub[:, None]
    xx = x[..., None, None] + sub[None, :]
    kernel = ((yy**2 + xx**2) <= radius_px**2).mean(axis=(-1, -2))
    if kernel.sum() == 0:
        kernel[half, half] = 1.0
    return kernel / kernel.sum()


def _line_psf(length_px: float, angle_deg: float, ramp: bool = False) -> np.ndarray:
    """A motion PSF: a line of ``length_px`` at ``angle_deg``, drawn by dense sampling. With ``ramp``
    the weight grows linearly along the line (an accelerating stage spends less time at the start)."""
    half = int(np.ceil(length_px / 2)) + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1), np.float64)
    t = np.linspace(-length_px / 2, length_px / 2, max(int(length_px * 8), 2))
    weight = np.linspace(0.2, 1.8, len(t)) if ramp else np.ones(len(t))
    theta = np.deg2rad(angle_deg)
    ys, xs = half + t * np.sin(theta), half + t * np.cos(theta)
    # Bilinear splat keeps the kernel smooth for fractional lengths.
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (1, 0, fy * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 1, fy * fx)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w * weight)
    return kernel / kernel.sum()


def gaussian_psf(sigma_px: float) -> np.ndarray:
    """A normalised 2-D Gaussian PSF cut at 4 σ."""
    half = max(1, int(np.ceil(4 * sigma_px)))
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    kernel = np.exp(-(x**2 + y**2) / (2 * sigma_px**2))
    return kernel / kernel.sum()


def _aberrated_psf(radius_px: float, stretch: float, angle_deg: float) -> np.ndarray:
    """A defocus disk whose weight grows towards the rim (``0.5 + r²/R²``), as spherical aberration
    gives on one side of focus, stretched by ``stretch`` along ``angle_deg`` (astigmatism)."""
    half = int(np.ceil(radius_px * stretch)) + 1
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    yy, xx = y[..., None, None] + sub[:, None], x[..., None, None] + sub[None, :]
    theta = np.deg2rad(angle_deg)
    along = (xx * np.cos(theta) + yy * np.sin(theta)) / stretch
    across = -xx * np.sin(theta) + yy * np.cos(theta)
    r2 = (along**2 + across**2) / radius_px**2
    kernel = np.where(r2 <= 1.0, 0.5 + r2, 0.0).mean(axis=(-1, -2))
    if kernel.sum() == 0:
        kernel[half, half] = 1.0
    return kernel / kernel.sum()


def defocus(
    image: np.ndarray, severity: float, *, mpp: float = 0.5, seed: Seed = None, kind: str | None = None
) -> np.ndarray:
    """Defocus blur of RMS radius ``DEFOCUS_MAX_RADIUS_UM × severity / √2`` µm, as a ``disk`` (radius
    ``DEFOCUS_MAX_RADIUS_UM × severity``), a ``gaussian`` of the same RMS radius, or ``aberrated``."""
    image, severity, kind = _check_image(image), _check_severity(severity), _check_kind("defocus", kind)
    radius_px = DEFOCUS_MAX_RADIUS_UM * severity / mpp
    if radius_px <= 0:
        return image.copy()
    if kind == "gaussian":
        return _convolve_rgb(image, gaussian_psf(radius_px / 2))
    if kind == "aberrated":
        rng = _rng(seed)
        return _convolve_rgb(image, _aberrated_psf(radius_px, rng.uniform(1.0, 1.5), rng.uniform(0, 180)))
    return _convolve_rgb(image, disk_psf(radius_px))


def motion(
    image: np.ndarray,
    severity: float,
    *,
    mpp: float = 0.5,
    seed: Seed = None,
    angle_deg: float | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """Motion blur: line PSF of ``MOTION_MAX_LENGTH_UM × severity`` µm at a seeded random angle,
    swept at uniform speed (``linear``) or accelerating (``ramp``)."""
    image, severity, kind = _check_image(image), _check_severity(severity), _check_kind("motion", kind)
    length_px = MOTION_MAX_LENGTH_UM * severity / mpp
    if length_px <= 0:
        return image.copy()
    angle = _rng(seed).uniform(0, 180) if angle_deg is None else angle_deg
    return _convolve_rgb(image, _line_psf(length_px, angle, ramp=kind == "ramp"))


NOISE_GAUSSIAN_SIGMA = 30.0
SENSOR_PATTERN_SIGMA, SENSOR_WHITE_SIGMA, SENSOR_BAD_PIXEL_SHARE = 12.0, 27.0, 0.004


def noise(
    image: np.ndarray, severity: float, *, mpp: float = 0.5, seed: Seed = None, kind: str | None = None
) -> np.ndarray:
    """Sensor noise: shot (Poisson) plus read (Gaussian) noise whose photon budget falls log-linearly
    with severity (``poisson_gaussian``), white ``gaussian`` noise, or a ``sensor`` fixed pattern."""
    image, severity, kind = _check_image(image), _check_severity(severity), _check_kind("noise", kind)
    if severity == 0:
        return image.copy()
    rng = _rng(seed)
    values = image.astype(np.float64)
    if kind == "gaussian":
        values = values + rng.normal(0.0, NOISE_GAUSSIAN_SIGMA * severity, image.shape)
    elif kind == "sensor":
        height, width = image.shape[:2]
        pattern = SENSOR_PATTERN_SIGMA * severity / np.sqrt(2)
        values = (
            values
            + rng.normal(0.0, pattern, (1, width, 1))
            + rng.normal(0.0, pattern, (height, 1, 1))
            + rng.normal(0.0, SENSOR_WHITE_SIGMA * severity, image.shape)
        )
        bad = rng.random((height, width)) < SENSOR_BAD_PIXEL_SHARE * severity
        values[bad] = rng.choice([0.0, 255.0], size=(int(bad.sum()), 1))
    else:
        photons_at_white = 10 ** (4 - 3 * severity)
        shot = rng.poisson(values / 255.0 * photons_at_white) / photons_at_white * 255.0
        values = shot + rng.normal(0.0, NOISE_MAX_READ_SIGMA * severity, image.shape)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def jpeg_quality_for(severity: float) -> int:
    """JPEG quality factor for a severity: 95 at 0, 27 at 0.5, 5 at 1."""
    remaining = 1.0 - _check_severity(severity)
    return int(round(JPEG_WORST_QUALITY + (JPEG_BEST_QUALITY - JPEG_WORST_QUALITY) * remaining**2))


def jpeg(
    image: np.ndarray, severity: float, *, mpp: float = 0.5, seed: Seed = None, kind: str | None = None
) -> np.ndarray:
    """JPEG compression round trip, with 4:2:0 chroma subsampling (``420``, as most scanners and
    cameras write) or without (``444``)."""
    image, severity, kind = _check_image(image), _check_severity(severity), _check_kind("jpeg", kind)
    if severity == 0:
        return image.copy()
    return jpeg_round_trip(image, jpeg_quality_for(severity), chroma_subsampled=kind == "420")


def jpeg_round_trip(image: np.ndarray, quality: int, chroma_subsampled: bool = True) -> np.ndarray:
    """``image`` written as a JPEG of ``quality`` by Pillow (4:2:0 chroma, or 4:4:4) and read back."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=2 if chroma_subsampled else 0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def exposure(
    image: np.ndarray,
    severity: float,
    *,
    mpp: float = 0.5,
    seed: Seed = None,
    direction: Literal[-1, 1] | None = None,
    kind: str | None = None,
) -> np.ndarray:
    """Exposure error of ``±EXPOSURE_MAX_STOPS × severity`` EV and a loss of contrast (``flat``), a
    pure exposure change (``gain``), a wrong tone curve (``gamma``), or clipped black and white
    points (``clip``, which has no direction).

    In ``flat``, contrast is squeezed towards mid-grey first, then the exposure gain is applied, so an
    under-exposed field is dark *and* flat, as when the lamp is dimmed or the condenser misaligned.
    """
    image, severity, kind = _check_image(image), _check_severity(severity), _check_kind("exposure", kind)
    if severity == 0:
        return image.copy()
    sign = direction if direction is not None else (1 if _rng(seed).random() < 0.5 else -1)
    stops = sign * EXPOSURE_MAX_STOPS * severity
    values = image.astype(np.float64) / 255.0
    if kind == "flat":
        values = ((values - 0.5) * (1.0 - EXPOSURE_MAX_CONTRAST_LOSS * severity) + 0.5) * 2.0**stops
    elif kind == "gain":
        values = values * 2.0**stops
    elif kind == "gamma":
        values = values ** (2.0**-stops)
    else:
        inset = EXPOSURE_CLIP_INSET * severity
        values = (values - inset) / (1.0 - 2.0 * inset)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


#: The kinds of each family; the first is the default. See the module docstring for their parameters.
KINDS: dict[str, tuple[str, ...]] = {
    "defocus": ("disk", "gaussian", "aberrated"),
    "motion": ("linear", "ramp"),
    "noise": ("poisson_gaussian", "gaussian", "sensor"),
    "jpeg": ("420", "444"),
    "exposure": ("flat", "gain", "gamma", "clip"),
}


def _check_kind(family: str, kind: str | None) -> str:
    if kind is None:
        return KINDS[family][0]
    if kind not in KINDS[family]:
        raise ValueError(f"unknown {family} kind {kind!r}; known: {', '.join(KINDS[family])}")
    return kind


def random_kind(family: str, seed: Seed = None) -> str:
    """A kind of ``family`` drawn uniformly, for datasets that must cover every kind."""
    kinds = KINDS[family]
    return kinds[int(_rng(seed).integers(len(kinds)))]


DISTORTIONS: dict[str, Callable[..., np.ndarray]] = {
    "defocus": defocus,
    "motion": motion,
    "noise": noise,
    "jpeg": jpeg,
    "exposure": exposure,
}


def distort(
    image: np.ndarray, family: str, severity: float, *, mpp: float = 0.5, seed: Seed = None, kind: str | None = None
) -> np.ndarray:
    """Apply one distortion family by name, of ``kind`` (None: the family's default kind)."""
    try:
        function = DISTORTIONS[family]
    except KeyError:
        raise ValueError(f"unknown distortion family {family!r}; known: {', '.join(DISTORTIONS)}") from None
    return function(image, severity, mpp=mpp, seed=seed, kind=kind)


def distort_local(
    image: np.ndarray,
    mask: np.ndarray,
    family: str,
    severity: float,
    *,
    mpp: float = 0.5,
    seed: Seed = None,
    kind: str | None = None,
) -> np.ndarray:
    """Apply a distortion inside ``mask`` only (the seed's "noise in only part of the image").

    The whole image is distorted and then composited, so a blur inside the mask mixes in the
    neighbouring pixels as a real out-of-focus region would, while every pixel outside the mask is
    returned bit for bit.
    """
    image = _check_image(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    distorted = distort(image, family, severity, mpp=mpp, seed=seed, kind=kind)
    return np.where(mask[..., None], distorted, image)


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: the classic focus measure (higher is sharper)."""
    grey = np.asarray(image, np.float64).mean(axis=-1)
    return float(ndimage.laplace(grey).var())
