"""Noise measured, not guessed: the wavelet estimate tells sharp real tiles from noisy ones, rises
with the noise, and the Predictor hands the network's P(noise) over to it."""

import numpy as np
import pytest

from slideiqa.measure.noise_level import (
    NOISE_SIGMA,
    _diagonal_detail,
    judge_noise,
    measures_noise,
    noise_sigma,
    patch_noise,
)
from slideiqa.models.predictor import Predictor
from slideiqa.synthetic.distortions import KINDS, noise
from slideiqa_training.cross_implementation import IMPLEMENTATIONS, degrade
from slideiqa_training.generalisation import FLOORS

from paths import HELDOUT


def test_sharp_unseen_tiles_measure_below_the_threshold(heldout_tiles, tissue_crop):
    sigma = noise_sigma(np.concatenate([heldout_tiles, tissue_crop[None]]))
    assert sigma.max() < NOISE_SIGMA - 1.0, sigma.round(2)


@pytest.mark.parametrize("shape", [(2, 224, 224), (3, 48, 34), (1, 16, 16)])
def test_the_diagonal_detail_is_pywavelets_db2_bit_for_bit(shape):
    """The estimator is Donoho & Johnstone's on PyWavelets' db2 coefficients; slideiqa filters them
    itself (half the time), and must not move the threshold's meaning by a single bit."""
    pywt = pytest.importorskip("pywt")
    green = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    even = green[:, : shape[1] // 2 * 2, : shape[2] // 2 * 2]
    expected = pywt.dwt2(even.astype(np.float32), "db2", axes=(-2, -1))[1][2]
    rows, cols = even.shape[1] // 2, even.shape[2] // 2
    np.testing.assert_array_equal(_diagonal_detail(even), expected[:, :rows, :cols])


@pytest.mark.parametrize("kind", KINDS["noise"])
def test_the_estimate_rises_with_noise_and_crosses_the_threshold_at_the_floor(heldout_tiles, kind):
    def measured(severity: float) -> np.ndarray:
        return noise_sigma(np.stack([noise(tile, severity, seed=i, kind=kind) for i, tile in enumerate(heldout_tiles)]))

    np.testing.assert_array_equal(measured(0.6), measured(0.6))
    levels = [measured(severity) for severity in (0.2, FLOORS["noise"], 0.75, 1.0)]
    assert all(np.all(a < b) for a, b in zip(levels, levels[1:])), [level.round(1) for level in levels]
    assert levels[1].min() > NOISE_SIGMA, levels[1].round(2)


def test_noise_on_a_pale_tile_is_measured_where_the_white_does_not_clip_it(heldout_tiles):
    """Half a stop brighter, the held-out tiles' glass and pale stroma sit at 255 (up to a third of a
    tile): noise at the floor is flattened there, so those patches are left out. Taken as the tile's
    smoothest parts, they measured one tile's floor noise at 8.3 grey levels. Still found on every
    tile, but by a hair on HistoQC's two pale templates (10.0 and 9.03 against 9): what is left of
    their tiles unclipped is the least of any source's. And the fine texture of its two others, about
    1 µm/px shown as 0.5, reads 7.4–7.7 with no noise added, half a stop brighter (below 9 still)."""
    pale = np.clip(heldout_tiles.astype(np.float32) * 2**0.5, 0, 255).astype(np.uint8)
    assert (pale[..., 1] == 255).mean(axis=(1, 2)).max() > 0.3
    noisy = np.stack([noise(tile, FLOORS["noise"], seed=i, kind="gaussian") for i, tile in enumerate(pale)])
    sigma = noise_sigma(noisy)
    templates = np.array([path.name.startswith("histoqc_templates__") for path in HELDOUT])
    assert sigma.min() > NOISE_SIGMA and sigma[~templates].min() > NOISE_SIGMA + 2.0, sigma.round(2)
    clean = noise_sigma(pale)
    assert clean.max() < NOISE_SIGMA and clean[~templates].max() < NOISE_SIGMA - 4.0, clean.round(2)


def test_a_cell_of_clipped_glass_is_not_called_noisy_nor_hides_the_noise_beside_it(heldout_tiles):
    """A cell's σ is its smoothest unclipped patch; a cell with nothing but glass clipped at white
    keeps the lowest of its patches (the noise the clip left: half of it), and is not noisy."""
    tile = heldout_tiles[4].copy()
    tile[:112] = 255
    noisy = noise(tile, FLOORS["noise"], seed=3, kind="gaussian")
    cells = patch_noise(noisy[None]).per_cell(32)[0]
    assert cells.shape == (7, 7)
    assert cells[:3].max() < NOISE_SIGMA, cells[:3].round(1)
    assert (cells[4:] > NOISE_SIGMA).mean() >= 0.9, cells[4:].round(1)  # a cell is 4 patches: noisier


@pytest.mark.parametrize("name", IMPLEMENTATIONS["noise"])
def test_other_libraries_noise_at_the_floor_is_measured_as_noise(heldout_tiles, name):
    noisy = np.stack(
        [
            degrade(tile, "noise", FLOORS["noise"], 0.5, np.random.default_rng(i), name)[0]
            for i, tile in enumerate(heldout_tiles)
        ]
    )
    assert noise_sigma(noisy).min() > NOISE_SIGMA


def test_judging_noise_keeps_the_other_classes_ratios():
    classes = ["good", "defocus", "noise", "exposure"]
    probabilities = np.array([[0.2, 0.1, 0.6, 0.1], [0.5, 0.25, 0.0, 0.25], [0.0, 0.0, 1.0, 0.0]])
    judged = judge_noise(probabilities, classes, np.array([2.0, 30.0, 2.0]))
    np.testing.assert_allclose(judged.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(judged[0], [0.5, 0.25, 0.0, 0.25], atol=1e-4)  # texture taken for noise
    assert judged[1, 2] > 0.999  # noise the network missed
    np.testing.assert_allclose(judged[2], [1 / 3, 1 / 3, 0.0, 1 / 3], atol=1e-4)  # nothing else to go on
    assert judge_noise(probabilities, ["good", "a", "b", "c"], np.zeros(3)) is probabilities
    assert measures_noise(classes, 0.5) and not measures_noise(classes, 1.0) and not measures_noise(["good"], 0.5)


def test_the_predictor_measures_noise_and_can_be_asked_not_to(heldout_tiles):
    measured, network = Predictor("default"), Predictor("default", measure_noise=False)
    assert measured.measure_noise and not network.measure_noise
    noise_index = measured.classes.index("noise")
    noisy = np.stack([noise(tile, FLOORS["noise"], seed=i) for i, tile in enumerate(heldout_tiles)])
    judged, own = measured.predict(np.concatenate([heldout_tiles, noisy])), network.predict(heldout_tiles)
    assert judged[: len(heldout_tiles), noise_index].max() < 0.01
    assert judged[len(heldout_tiles) :, noise_index].min() > 0.9
    others = [i for i in range(len(measured.classes)) if i != noise_index]
    expected = own[:, others] / own[:, others].sum(1, keepdims=True)
    np.testing.assert_allclose(judged[: len(heldout_tiles), others], expected, atol=1e-2)
