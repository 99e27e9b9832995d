"""Good looks of a sharp crop: they vary colour and compression but keep every structure."""

import numpy as np
import pytest

from slideiqa.synthetic.distortions import sharpness
from slideiqa_training import appearance

pytestmark = pytest.mark.training


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def test_good_looks_are_deterministic_and_keep_the_image(tissue_crop):
    first = appearance.vary_good(tissue_crop, np.random.default_rng(5))
    assert np.array_equal(first, appearance.vary_good(tissue_crop, np.random.default_rng(5)))
    looks = [appearance.vary_good(tissue_crop, np.random.default_rng(seed)) for seed in range(40)]
    means = np.array([look.mean() for look in looks])
    assert np.all(np.abs(means - tissue_crop.mean()) < 40), means
    assert min(_correlation(tissue_crop.mean(-1), look.mean(-1)) for look in looks) > 0.9
    assert len({look.tobytes() for look in looks}) == 40


def test_stain_variation_keeps_glass_near_white():
    # Stain lives in optical density: glass absorbs almost nothing, so a stronger or paler stain
    # barely moves it (the density shift tints it by a few per cent), unlike a 1 EV exposure error.
    glass = np.full((32, 32, 3), 250, np.uint8)
    rng = np.random.default_rng(0)
    assert min(appearance.vary_stain(glass, rng).mean() for _ in range(20)) > 230


@pytest.mark.parametrize("step", [appearance.sharpen, appearance.scanner_jpeg, appearance.scanner_jpeg2000])
def test_scanner_steps_keep_brightness_and_detail(tissue_crop, step):
    out = step(tissue_crop, np.random.default_rng(2))
    assert out.shape == tissue_crop.shape and out.dtype == np.uint8
    assert abs(out.mean() - tissue_crop.mean()) < 2.0
    assert _correlation(tissue_crop, out) > 0.97


def test_sharpening_adds_edge_energy(tissue_crop):
    assert sharpness(appearance.sharpen(tissue_crop, np.random.default_rng(3))) > sharpness(tissue_crop)


def test_restaining_changes_the_hue_but_keeps_glass_and_structure(tissue_crop):
    # Another lab's stain pair: the tissue's colour moves, its density pattern and white glass do not.
    looks = [appearance.restain(tissue_crop, np.random.default_rng(seed)) for seed in range(12)]
    assert np.array_equal(looks[0], appearance.restain(tissue_crop, np.random.default_rng(0)))
    hues = np.array([look.reshape(-1, 3).mean(0) / look.reshape(-1, 3).mean() for look in looks])
    assert np.ptp(hues, axis=0).max() > 0.1, hues
    density = -np.log((tissue_crop.astype(np.float64) + 1.0) / 256.0).sum(-1)
    assert min(_correlation(density, -np.log((look + 1.0) / 256.0).sum(-1)) for look in looks) > 0.85
    glass = np.full((16, 16, 3), 252, np.uint8)
    assert min(appearance.restain(glass, np.random.default_rng(seed)).min() for seed in range(12)) >= 248
