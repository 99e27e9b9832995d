"""The core install has no PyTorch and no bokeh: on a CPU the shipped models run as their ONNX graphs,
checked on load, and what needs the ``torch`` or ``dashboard`` extra says so in one line. The extras'
absence is real to every interpreter a test starts, Dask's worker processes included: a
``sitecustomize`` on their path sets ``sys.modules[name] = None``, so each import fails as if the
module were not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slideiqa.extras import TORCH_MODULES
from slideiqa.models.card import ModelError, graph_path
from slideiqa.models.predictor import Predictor
from slideiqa.models.zoo import resolve_model

from paths import CMU_SLIDE, FIELDS, ROOT
from support import skip_unless_available, slideiqa_process

#: The torch extra (and triton, which torch brings) and the dashboard extra.
HIDDEN = sorted(TORCH_MODULES | {"triton", "bokeh"})
INSTALL_TORCH = "which is not installed here: pip install 'slideiqa[torch]'"


@pytest.fixture
def core_install(tmp_path, monkeypatch) -> Path:
    """The environment of a core install for every Python process started from here on."""
    folder = tmp_path / "core-install"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(f"import sys\nfor name in {HIDDEN!r}:\n    sys.modules[name] = None\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SLIDEIQA_CACHE", str(tmp_path / "cache"))
    return folder


def checkpoint_without_graph(stem: Path) -> None:
    """The shipped default's checkpoint and card at ``stem``, as a user's own model: no ONNX graph."""
    for suffix in (".json", ".safetensors"):
        shutil.copy(resolve_model("default").with_suffix(suffix), stem.with_suffix(suffix))
    card = json.loads(stem.with_suffix(".json").read_text())
    card["graph_sha256"] = ""
    stem.with_suffix(".json").write_text(json.dumps(card))


def python(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


slideiqa = slideiqa_process


# Every CPU path a user meets, in one interpreter: the CLI's map, info, models, predict and explain,
# and the napari reader on the map just made. Afterwards none of the hidden modules was asked for.
SCRIPT = """
import sys
from slideiqa.cli.app import app
for argv in ({map}, ["info", "{slide}"], ["models"], ["predict", "{field}"], ["explain", "{field}", "-o", "{png}"]):
    try:
        app(argv, standalone_mode=False)
    except SystemExit as stop:
        assert not stop.code, (argv, stop.code)
from slideiqa_napari.reader import get_reader
layers = get_reader("{out}")("{out}")
assert layers, "the reader found no layers"
print("done")
"""


@pytest.mark.slow
def test_cpu_paths_run_without_the_extras(core_install, tmp_path):
    out, png = tmp_path / "sample.quality.zarr", tmp_path / "explained.png"
    done = python(
        SCRIPT.format(
            map=["map", str(CMU_SLIDE), "-o", str(out)],
            slide=CMU_SLIDE,
            field=FIELDS / "ihc_colon.png",
            out=out,
            png=png,
        )
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "done", done.stdout[-500:]
    assert json.loads((out / "summary.json").read_text())["verdict"] in ("pass", "fail")
    assert png.stat().st_size > 10_000


def test_a_batch_on_worker_processes_runs_without_the_extras(core_install, tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copy(CMU_SLIDE, cohort / "cmu.svs")
    done = slideiqa("batch", cohort, "-o", tmp_path / "out", "--workers", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no Dask dashboard here: pip install 'slideiqa[dashboard]'" in " ".join(done.stdout.split())
    (row,) = json.loads((tmp_path / "out" / "report.json").read_text())["slides"]
    assert row["status"] == "mapped", row


def test_what_needs_torch_says_so_in_one_line(core_install, tmp_path):
    field = FIELDS / "ihc_colon.png"
    stem = tmp_path / "mine"
    checkpoint_without_graph(stem)
    expected = {
        ("predict", field, "--device", "cuda"): f"error: --device cuda needs PyTorch, {INSTALL_TORCH}",
        (
            "map",
            CMU_SLIDE,
            "-o",
            tmp_path / "cuda.quality.zarr",
            "--device",
            "cuda",
        ): f"error: --device cuda needs PyTorch, {INSTALL_TORCH}",
        (
            "explain",
            field,
            "--method",
            "gradcam",
            "-o",
            tmp_path / "g.png",
        ): f"error: Grad-CAM (explain --method gradcam, or a model without a cell head) needs PyTorch, {INSTALL_TORCH}",
        (
            "predict",
            field,
            "--model",
            stem,
        ): f"error: {stem}: a checkpoint without its ONNX graph (exported on first use) needs PyTorch, {INSTALL_TORCH}",
    }
    for argv, line in expected.items():
        done = slideiqa(*argv)
        assert done.returncode == 1, (argv, done.stdout, done.stderr[-1500:])
        assert done.stderr.strip() == line, (argv, done.stderr[-1500:])
    assert not (tmp_path / "cuda.quality.zarr").exists()  # refused before anything was written
    done = python("import slideiqa.models as m; m.load_checkpoint")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
        f"slideiqa.extras.MissingExtraError: slideiqa.models.load_checkpoint needs PyTorch, {INSTALL_TORCH}"
    )


@pytest.mark.slow
def test_napari_opens_the_plugin_without_the_extras(core_install):
    """napari itself, under Xvfb: the sample slide mapped as *Open Sample* does, both opened, and the
    plugin's widget docked."""
    if not os.environ.get("DISPLAY"):
        skip_unless_available("napari", "no display: install Xvfb (`apt-get install -y xvfb xauth`)")
    pytest.importorskip("napari")
    done = python(f"""
import napari
from slideiqa_napari.sample import sample_map_path
viewer = napari.Viewer(show=True)
viewer.open({str(CMU_SLIDE)!r}, plugin="slideiqa")
viewer.open(str(sample_map_path()), plugin="slideiqa")
viewer.window.add_plugin_dock_widget("slideiqa")
roles = sorted(layer.metadata.get("slideiqa", {{}}).get("role", "") for layer in viewer.layers)
print(len(viewer.layers), roles)
viewer.close()
""")
    assert done.returncode == 0, done.stderr[-2000:]
    count, roles = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) >= 3 and "score" in roles, done.stdout


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
    checkpoint_without_graph(stem)
    tiles = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(Predictor(stem).predict(tiles), Predictor("default").predict(tiles), atol=1e-5)


def test_training_command_without_its_extra_says_what_to_install(core_install):
    done = python("from slideiqa_training.launcher import main; main()")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: slideiqa-train needs the training extra (module 'torch' is missing): pip install 'slideiqa[training]'"
    )
