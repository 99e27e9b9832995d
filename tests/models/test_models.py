import json
import shutil
from pathlib import Path

import pytest
import torch

from slideiqa.models import ARCHITECTURES, ModelCard, ModelError, build_model, load_checkpoint, save_checkpoint
from slideiqa.models.registry import LAST_LAYER_PREFIX, imagenet_weights_file
from slideiqa_training.trainer import initialise_model

from paths import ROOT

SHARED_WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth"


def _saved(tmp_path, architecture="iqanet", classes=("good", "defocus", "noise")):
    torch.manual_seed(0)
    model = build_model(architecture, len(classes))
    card = ModelCard(architecture=architecture, classes=list(classes))
    save_checkpoint(model, card, tmp_path / "model")
    return model, tmp_path / "model"


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_architecture_gives_class_logits(architecture):
    model = build_model(architecture, 4, dropout=0.5).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    assert isinstance(model.head[0], torch.nn.Dropout) and model.head[0].p == 0.5


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    model, stem = _saved(tmp_path)
    loaded, card = load_checkpoint(stem)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert card.classes == ["good", "defocus", "noise"] and card.good_index == 0
    # Either file names the checkpoint.
    assert load_checkpoint(str(stem) + ".json")[1].weights_sha256 == card.weights_sha256


def test_card_that_does_not_match_its_tensors_is_an_error(tmp_path):
    _, stem = _saved(tmp_path)
    card = json.loads(Path(f"{stem}.json").read_text())
    card["classes"] = ["good", "bad"]
    card["weights_sha256"] = ""
    Path(f"{stem}.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="does not match the tensors"):
        load_checkpoint(stem)


def test_card_paired_with_other_tensors_is_an_error(tmp_path):
    _, stem = _saved(tmp_path / "a")
    _, other = _saved(tmp_path / "b", classes=("good", "defocus", "motion"))
    torch.manual_seed(1)
    save_checkpoint(build_model("iqanet", 3), ModelCard("iqanet", ["good", "x", "y"]), other)
    shutil.copy(f"{other}.safetensors", f"{stem}.safetensors")
    with pytest.raises(ModelError, match="SHA-256 differs"):
        load_checkpoint(stem)


def test_unknown_architecture_and_not_safetensors_are_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown architecture 'alexnet'"):
        build_model("alexnet", 2)
    _, stem = _saved(tmp_path)
    Path(f"{stem}.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    card = json.loads(Path(f"{stem}.json").read_text())
    card["weights_sha256"] = ""
    Path(f"{stem}.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not a safetensors file"):
        load_checkpoint(stem)


def test_transfer_replaces_only_the_last_layer(tmp_path):
    source, stem = _saved(tmp_path, classes=("bad", "fair", "good", "excellent"))
    torch.manual_seed(123)
    target = initialise_model("iqanet", 2, 0.2, str(stem))
    source_state, target_state = source.state_dict(), target.state_dict()
    replaced = [key for key in source_state if key.startswith(LAST_LAYER_PREFIX)]
    assert replaced == ["head.1.weight", "head.1.bias"]
    assert target_state["head.1.weight"].shape == (2, 2 * 128)
    for key, value in source_state.items():
        if key not in replaced:
            assert torch.equal(value, target_state[key]), key


def test_transfer_from_another_architecture_is_an_error(tmp_path):
    _, stem = _saved(tmp_path)
    with pytest.raises(ModelError, match="is a iqanet, cannot initialise a mobilenet_v2"):
        initialise_model("mobilenet_v2", 2, 0.2, str(stem))


def test_missing_imagenet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelError, match=r"vgg16 not found: copy vgg16-397923af\.pth to .*hub/checkpoints"):
        initialise_model("vgg16", 2, 0.2, "imagenet")
    with pytest.raises(ModelError, match="no ImageNet weights"):
        initialise_model("iqanet", 2, 0.2, "imagenet")


@pytest.mark.skipif(not SHARED_WEIGHTS.exists(), reason="MobileNetV2 ImageNet weights not available offline")
def test_imagenet_weights_load_offline_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    destination = Path(imagenet_weights_file("mobilenet_v2"))
    destination.parent.mkdir(parents=True)
    shutil.copy(SHARED_WEIGHTS, destination)
    model = initialise_model("mobilenet_v2", 3, 0.2, "imagenet")
    reference = torch.load(destination, weights_only=True)
    assert torch.equal(model.backbone.state_dict()["0.0.weight"], reference["features.0.0.weight"])
