"""The same defects written by code slideiqa did not write: albumentations, OpenCV and scikit-image.

A model trained on ``slideiqa.synthetic.distortions`` could learn the fingerprint of that code (its PSF
rasterisation, its noise generator, Pillow's JPEG encoder) instead of blur, noise or compression.
Degrading held-out tiles with other libraries at the same physical strength tells the two apart:
a model that has learnt quality flags them as often as its own.

Each family has two implementations; ``severity`` maps to the physical parameters exactly as in
``slideiqa.synthetic.distortions`` (defocus RMS radius ``4 µm × s / √2``, motion streak ``12 µm × s``, noise
σ ``30 × s`` grey levels, JPEG quality ``5 + 90 (1 − s)²``, exposure ``±2 EV × s``), rounded where a
library takes integers (kernel sizes, disk radii).
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np
from skimage import exposure as sk_exposure
from skimage import util as sk_util

from slideiqa.synthetic.distortions import (
    DEFOCUS_MAX_RADIUS_UM,
    EXPOSURE_MAX_STOPS,
    MOTION_MAX_LENGTH_UM,
    jpeg_quality_for,
)

Degrade = Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray]


def _albumentations(transform: A.BasicTransform, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    transform.set_random_seed(int(rng.integers(2**31)))
    return transform(image=image)["image"]


def _gaussian_blur_cv2(image, severity, mpp, rng):
    sigma = DEFOCUS_MAX_RADIUS_UM * severity / 2 / mpp
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def _defocus_albumentations(image, severity, mpp, rng):
    radius = max(1, int(round(DEFOCUS_MAX_RADIUS_UM * severity / mpp)))
    return _albumentations(A.Defocus(radius=(radius, radius), alias_blur=(0.1, 0.1), p=1.0), image, rng)


def _motion_albumentations(image, severity, mpp, rng):
    length = MOTION_MAX_LENGTH_UM * severity / mpp
    kernel = max(3, int(np.ceil(length)) | 1)  # odd kernel at least as long as the streak
    blur = A.MotionBlur(
        blur_limit=(kernel, kernel), allow_shifted=False, angle_range=(0, 360), direction_range=(0.0, 0.0), p=1.0
    )
    return _albumentations(blur, image, rng)


def _motion_cv2(image, severity, mpp, rng):
    """A streak drawn with OpenCV's anti-aliased line into a kernel, rotated to a random angle."""
    length = MOTION_MAX_LENGTH_UM * severity / mpp
    size = int(np.ceil(length)) | 1
    line = np.zeros((size, size), np.float32)
    cv2.line(line, (0, size // 2), (size - 1, size // 2), 1.0, thickness=1, lineType=cv2.LINE_AA)
    rotation = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = np.asarray(cv2.warpAffine(line, rotation, (size, size)), np.float32)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def _gaussian_noise_skimage(image, severity, mpp, rng):
    sigma = 30.0 * severity / 255.0
    noisy = sk_util.random_noise(image, mode="gaussian", var=sigma**2, rng=int(rng.integers(2**31)))
    return np.clip(np.rint(noisy * 255.0), 0, 255).astype(np.uint8)


def _gaussian_noise_albumentations(image, severity, mpp, rng):
    sigma = 30.0 * severity / 255.0
    return _albumentations(A.GaussNoise(std_range=(sigma, sigma), per_channel=True, p=1.0), image, rng)


def _jpeg_cv2(image, severity, mpp, rng):
    ok, encoded = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality_for(severity)])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    assert ok and decoded is not None  # OpenCV encodes and decodes its own JPEG
    return decoded[..., ::-1].copy()


def _jpeg_albumentations(image, severity, mpp, rng):
    quality = jpeg_quality_for(severity)
    return _albumentations(
        A.ImageCompression(compression_type="jpeg", quality_range=(quality, quality), p=1.0), image, rng
    )


def _sign(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def _exposure_cv2(image, severity, mpp, rng):
    return cv2.convertScaleAbs(image, alpha=2.0 ** (_sign(rng) * EXPOSURE_MAX_STOPS * severity))


def _exposure_skimage(image, severity, mpp, rng):
    """A tone-curve error of the same strength: gamma ``2 ** (∓2 × s)``."""
    return sk_exposure.adjust_gamma(image, gamma=2.0 ** (-_sign(rng) * EXPOSURE_MAX_STOPS * severity))


IMPLEMENTATIONS: dict[str, dict[str, Degrade]] = {
    "defocus": {"opencv.GaussianBlur": _gaussian_blur_cv2, "albumentations.Defocus": _defocus_albumentations},
    "motion": {"albumentations.MotionBlur": _motion_albumentations, "opencv.filter2D-line": _motion_cv2},
    "noise": {
        "skimage.random_noise": _gaussian_noise_skimage,
        "albumentations.GaussNoise": _gaussian_noise_albumentations,
    },
    "jpeg": {"opencv.imencode": _jpeg_cv2, "albumentations.ImageCompression": _jpeg_albumentations},
    "exposure": {"opencv.convertScaleAbs": _exposure_cv2, "skimage.adjust_gamma": _exposure_skimage},
}


def degrade(
    image: np.ndarray,
    family: str,
    severity: float,
    mpp: float,
    rng: np.random.Generator,
    implementation: str | None = None,
) -> tuple[np.ndarray, str]:
    """``image`` degraded by another library (drawn from ``rng`` unless named); returns (image, name)."""
    choices = IMPLEMENTATIONS[family]
    name = implementation or list(choices)[int(rng.integers(len(choices)))]
    return np.ascontiguousarray(choices[name](np.ascontiguousarray(image), severity, mpp, rng)), name
