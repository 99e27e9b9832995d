"""Mapping on a CPU needs no PyTorch: the shipped models run as their ONNX graphs, checked on load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from slideiqa.inference import Predictor
from slideiqa.models.card import ModelError, graph_path
from slideiqa.models.zoo import resolve_model

from conftest import CMU_SLIDE, FIELDS

# Every CPU path a user meets, in one fresh interpreter: the CLI's map, info, models and predict,
# and the napari reader on the map just made. Afterwards neither torch nor torchvision is loaded.
SCRIPT = """
import sys
from slideiqa.cli import app
for argv in ({map}, ["info", "{slide}"], ["models"], ["predict", "{field}"]):
    try:
        app(argv, standalone_mode=False)
    except SystemExit as stop:
        assert not stop.code, (argv, stop.code)
from slideiqa_napari.reader import get_reader
layers = get_reader("{out}")("{out}")
assert layers, "the reader found no layers"
print(sorted(name for name in ("torch", "torchvision", "triton") if name in sys.modules))
"""


def test_cpu_paths_never_import_torch(tmp_path):
    out = tmp_path / "sample.quality.zarr"
    script = SCRIPT.format(map=["map", str(CMU_SLIDE), "-o", str(out)], slide=CMU_SLIDE, field=FIELDS / "ihc_colon.png",
                           out=out)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-500:]


def test_shipped_graph_must_match_its_card(tmp_path):
    stem = tmp_path / "model"
    for suffix in (".json", ".safetensors", ".onnx"):
        shutil.copy(resolve_model("default").with_suffix(suffix), stem.with_suffix(suffix))
    tiles = np.zeros((2, 224, 224, 3), np.uint8)
    assert Predictor(stem).predict(tiles).shape == (2, 6)
    graph = graph_path(stem)
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(ModelError, match=r"model\.onnx: does not match its model card"):
        Predictor(stem)


def test_a_checkpoint_without_a_graph_is_exported_and_agrees_with_the_shipped_one(tmp_path):
    stem = tmp_path / "model"
    for suffix in (".json", ".safetensors"):
        shutil.copy(resolve_model("default").with_suffix(suffix), stem.with_suffix(suffix))
    card = json.loads(stem.with_suffix(".json").read_text())
    card["graph_sha256"] = ""
    stem.with_suffix(".json").write_text(json.dumps(card))
    tiles = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(Predictor(stem).predict(tiles), Predictor("default").predict(tiles), atol=1e-5)


def test_training_command_without_its_extra_says_what_to_install():
    script = "import sys; sys.modules['sklearn'] = None; from slideiqa_training.launcher import main; main()"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: slideiqa-train needs the training extra (module 'sklearn' is missing): "
                                   "pip install 'slideiqa[training]'")
