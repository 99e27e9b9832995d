"""What several test modules share beyond paths: skipping for want of a capability (or failing where
it was required), and how far a degradation moved an image."""

from __future__ import annotations

import os

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from slideiqa.synthetic.distortions import sharpness

#: Capabilities whose tests must run, not skip: comma-separated in this variable (``.ci/run`` names
#: the ones it installed or started, so that a test skipped there for want of one fails instead).
REQUIRED = {name.strip() for name in os.environ.get("SLIDEIQA_REQUIRE", "").split(",") if name.strip()}


def skip_unless_available(capability: str, reason: str, module: bool = False) -> None:
    """Skip the test (``module``: the whole module) for want of ``capability`` (slurm, tmpfs, chromium,
    napari) — or fail it, where the environment says that capability was provided (``SLIDEIQA_REQUIRE``)."""
    if capability in REQUIRED:
        pytest.fail(f"{capability} was required (SLIDEIQA_REQUIRE) but is not available: {reason}")
    pytest.skip(reason, allow_module_level=module)


def degradation_strength(family: str, original: np.ndarray, degraded: np.ndarray) -> float:
    """How far a degraded image is from the original, by the measure that suits the family:
    lost Laplacian energy for blur, lost PSNR for noise and compression, moved grey levels for exposure."""
    if family in ("defocus", "motion"):
        return sharpness(original) - sharpness(degraded)
    if family in ("noise", "jpeg"):
        return -peak_signal_noise_ratio(original, degraded)
    return float(np.abs(degraded.astype(np.float64) - original).mean())
