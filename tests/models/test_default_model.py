"""The shipped models: they load, both engines agree, and they tell sharp tissue from defocused."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from slideiqa.models.predictor import Predictor
from slideiqa.models.zoo import available_pretrained
from slideiqa.synthetic.distortions import defocus, noise
from slideiqa_training.sources import open_source, tissue_fraction

from paths import CMU_SLIDE


@pytest.fixture(scope="module")
def cmu_tiles() -> np.ndarray:
    """Every 224 px tile of the real CMU slide that is mostly tissue."""
    slide = open_source(CMU_SLIDE)
    tiles = [slide.crop(x, y, 224) for y in range(0, slide.height - 223, 224) for x in range(0, slide.width - 223, 224)]
    tissue = [tile for tile in tiles if tissue_fraction(tile) >= 0.5]
    assert len(tissue) >= 40
    return np.stack(tissue)


SHIPPED = ["default", "accurate"]


def test_default_model_is_shipped_and_describes_itself():
    assert {"default", "fast", "accurate"} <= set(available_pretrained())
    card = Predictor("default").card
    assert card.classes[0] == "good" and {"defocus", "motion", "noise", "jpeg", "exposure"} <= set(card.classes)
    assert card.mpp == 0.5 and card.tile_size == 224
    assert card.metrics["leave_one_source_out"], "the card must carry its generalisation measurements"


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_models_separate_sharp_from_defocused_cmu_tiles(cmu_tiles, model):
    predictor = Predictor(model)
    blurred = np.stack([defocus(tile, 0.5, mpp=0.5) for tile in cmu_tiles])
    scores = predictor.score(predictor.predict(np.concatenate([cmu_tiles, blurred])))
    sharp_scores, blurred_scores = scores[: len(cmu_tiles)], scores[len(cmu_tiles) :]
    is_sharp = np.r_[np.ones(len(cmu_tiles)), np.zeros(len(blurred))]
    assert roc_auc_score(is_sharp, scores) >= 0.95
    assert np.median(sharp_scores) > np.median(blurred_scores) + 0.3
    assert np.median(blurred_scores) < 0.1
    labels = predictor.predict(blurred).argmax(1)
    assert np.mean(np.array(predictor.classes)[labels] == "defocus") > 0.7


@pytest.mark.parametrize("model", SHIPPED)
def test_shipped_models_name_the_defect(cmu_tiles, model):
    predictor = Predictor(model)
    noisy = np.stack([noise(tile, 0.7, seed=i) for i, tile in enumerate(cmu_tiles)])
    labels = np.array(predictor.classes)[predictor.predict(noisy).argmax(1)]
    assert np.mean(labels == "noise") > 0.7


def test_onnx_and_torch_engines_agree(cmu_tiles):
    onnx = Predictor("default", engine="onnx").predict(cmu_tiles[:16])
    eager = Predictor("default", engine="torch", device="cpu").predict(cmu_tiles[:16])
    np.testing.assert_allclose(onnx, eager, atol=1e-4)
    np.testing.assert_allclose(onnx.sum(1), 1.0, atol=1e-5)
