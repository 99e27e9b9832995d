import numpy as np
import pytest
import torch
from skimage.color import hed_from_rgb
from torch import nn
from torch.utils.data import TensorDataset

from slideiqa_training.trainer import TrainConfig, train
from slideiqa_training.transforms import RandomStainJitter, build_transform

pytestmark = pytest.mark.training


def _as_float(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255.0


def _stain_densities(image: torch.Tensor) -> np.ndarray:
    density = -np.log((image.numpy() * 255.0 + 1.0) / 256.0)
    return np.einsum("chw,cs->shw", density, hed_from_rgb)


def _affine_fits_per_stain(before: torch.Tensor, after: torch.Tensor) -> list[tuple[float, float, float]]:
    """(scale, shift, worst residual) of a straight-line fit of each stain density of ``after`` on
    ``before``, over the pixels that no channel clipped."""
    unclipped = ((after > 0) & (after < 1)).all(dim=0).numpy()
    fits = []
    for x, y in zip(_stain_densities(before), _stain_densities(after)):
        x, y = x[unclipped], y[unclipped]
        scale, shift = np.polyfit(x, y, 1)
        fits.append((scale, shift, float(np.abs(y - (scale * x + shift)).max())))
    return fits


def test_stain_jitter_without_strength_leaves_the_image_unchanged(tissue_crop):
    image = _as_float(tissue_crop)
    assert torch.allclose(RandomStainJitter(0.0)(image), image, atol=1e-4)


def test_stain_jitter_is_an_affine_change_of_each_stain_within_its_bounds(tissue_crop):
    image = _as_float(tissue_crop)
    torch.manual_seed(1)
    jittered = RandomStainJitter(0.05)(image)
    assert (jittered - image).abs().mean() * 255 > 1.0  # it does change the colour
    for scale, shift, residual in _affine_fits_per_stain(image, jittered):
        assert residual < 1e-3
        assert 0.95 <= scale <= 1.05 and -0.05 <= shift <= 0.05


def test_stain_profile_is_the_lossless_geometry_with_only_the_colour_changed(tissue_crop):
    lossless = build_transform(224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "lossless")
    stain = build_transform(224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "stain")
    torch.manual_seed(0)
    turned = lossless(tissue_crop)
    torch.manual_seed(0)  # the same flip and turn: the jitter draws its numbers after them
    jittered = stain(tissue_crop)
    assert jittered.shape == (3, 224, 224) and not torch.allclose(jittered, turned, atol=1 / 255)
    # Pixel for pixel, each stain density is an affine function of the unjittered one: nothing moved
    # or blurred (a flip, a turn or a blur between the two would break the fit).
    assert all(residual < 1e-3 for _, _, residual in _affine_fits_per_stain(turned, jittered))


def test_stain_jitter_draws_its_own_factors_for_each_image_of_a_batch(tissue_crop):
    batch = _as_float(tissue_crop).expand(4, -1, -1, -1)
    torch.manual_seed(2)
    jittered = RandomStainJitter(0.05)(batch)
    means = jittered.mean(dim=(2, 3))
    assert jittered.shape == batch.shape
    assert all(not torch.allclose(means[0], means[i], atol=1e-3) for i in (1, 2, 3))


def test_label_smoothing_keeps_the_model_from_certainty():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(256, 4, generator=generator)
    labels = (features[:, 0] > 0).long()
    features[:, 0] *= 20  # separable: plain cross-entropy drives P(true class) to 1
    data = TensorDataset(features, labels)

    def confidence(smoothing: float) -> float:
        model = nn.Linear(4, 2)
        train(
            model, data, None, TrainConfig(epochs=40, lr=0.1, label_smoothing=smoothing, device="cpu", progress=False)
        )
        with torch.no_grad():
            return float(torch.softmax(model(features), 1).max(1).values.mean())

    assert confidence(0.0) > 0.98
    assert confidence(0.2) < 0.93
