"""The paper-reproduction pipeline end to end on the ``smoke`` profile: real (tiny) training runs.

One command must produce Table 1, the ablations and Table 2 with every cell filled, the per-fold
CSV files, learning curves, the chosen hyper-parameters and checkpoints; the grid choice must agree
with the validation results it was made from; model 2 must start from model 1 minus its last layer;
and a second run must reuse every finished fold instead of training again.
"""

import csv
import json
import subprocess
import sys

import pytest
import torch

from slideiqa.models.checkpoint import load_checkpoint
from slideiqa.models.registry import LAST_LAYER_PREFIX
from slideiqa_training.grid_search import Setting
from slideiqa_training.reproduction import RunSpec, load_profile
from slideiqa_training.tables import empty_cells
from slideiqa_training.trainer import initialise_model

pytestmark = pytest.mark.training


def _reproduce(out):
    return subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "slideiqa_training",
            "reproduce",
            "--profile",
            "smoke",
            "-o",
            str(out),
            "--threads",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    result = _reproduce(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


@pytest.mark.slow
def test_every_table_is_produced_with_every_cell_filled(smoke):
    out, stdout = smoke
    for name in ("table1.md", "ablations.md", "table2.md", "tables.md"):
        text = (out / name).read_text()
        assert text.count("\n|") >= 3, name
        assert empty_cells(text) == [], name
    table1 = (out / "table1.md").read_text()
    for base in ("MobileNet", "VGG16", "ResNet50"):
        assert f"| {base} | paper |" in table1 and f"| {base} | ours |" in table1
    assert "| VGG16 | paper | ImageNet | — | 0.0001 | 32 | 0.2 | 78.91 ± 1.97 |" in table1
    # Two rows of one architecture (`architecture = "mobilenet_v2"`): one paper row, then both of ours,
    # the second from random weights with its own epochs.
    assert table1.count("| MobileNet | paper |") == 1 and table1.count("| MobileNet | ours |") == 2
    assert "| MobileNet | ours | random | 2 | 0.001 | 16 | 0.2 |" in table1
    assert (
        table1.index("| MobileNet | paper |")
        < table1.index("| MobileNet | ours | random |")
        < table1.index("| VGG16 |")
    )
    assert "not the paper's" in table1 and "synthetic** distortion severity" in table1
    # The cross-lab control: both directions between the bundled smear field and the Chula fields.
    cross = table1[table1.index("## Cross-lab control") :]
    assert cross.count("| blood_smear | chula_rbc12 | 4 | 36 |") == 1
    assert cross.count("| chula_rbc12 | blood_smear | 24 | 6 |") == 1
    assert "every lab in every fold" in table1
    assert "- Smoke profile: the pipeline's test, not a result." in table1  # the profile's [report] notes
    table2 = (out / "table2.md").read_text()
    assert "| VGG16 | paper |" in table2 and "99.49 ± 0.72" in table2
    assert "| VGG16 | ours | model 1 (trained on blood" in table2 and "| VGG16 | ours | random |" in table2
    ablations = (out / "ablations.md").read_text()
    assert "| 512 × 512 inputs |" in ablations and "| 96 px | no |" in ablations and "| yes |" in ablations
    assert "## Table 1" in stdout


def test_per_fold_csv_curves_and_summary(smoke):
    out, _ = smoke
    with open(out / "model1_folds.csv") as handle:
        rows = list(csv.DictReader(handle))
    # vgg16: 2 settings on grid fold 0, the chosen one on folds 1-2 too; 1 setting × 3 folds for the
    # three others; and the best base trained on each lab and tested on the other
    assert len(rows) == 2 * (4 + 3 + 3 + 3 + 2)
    assert sum(r["fold"].startswith("train-") for r in rows) == 2 * 2
    for name in ("ablations_folds.csv", "model2_folds.csv"):
        with open(out / name) as handle:
            assert len(list(csv.DictReader(handle))) >= 2 * 3
    for name in ("model1", "ablations", "model2"):
        png = out / "curves" / f"{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"].startswith("slideiqa-train reproduce --profile smoke")
    assert summary["machine"]["cpu_cores"] >= 1 and summary["training_s_all_runs"] > 0
    assert len(summary["invocations"]) >= 1


def test_grid_choice_is_the_best_validation_result(smoke):
    out, _ = smoke
    chosen = json.loads((out / "hyperparameters.json").read_text())
    vgg = chosen["bases"]["vgg16"]
    with open(out / "model1_folds.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["base"] == "vgg16" and r["subset"] == "val" and r["fold"] == "0"]
    by_setting = {(float(r["lr"]), int(r["batch_size"]), float(r["dropout"])): float(r["accuracy"]) for r in rows}
    assert len(by_setting) == 2
    best = max(by_setting.values())
    winners = [s for s, v in by_setting.items() if v == best]
    order = [(0.0001, 16, 0.2), (0.001, 16, 0.5)]  # the config's order breaks ties
    expected = min(winners, key=order.index)
    assert (vgg["chosen"]["lr"], vgg["chosen"]["batch_size"], vgg["chosen"]["dropout"]) == expected
    assert vgg["validation_score"] == pytest.approx(best, abs=1e-4)
    assert chosen["best_base"] in chosen["bases"]


def test_model2_starts_from_every_layer_of_model1_but_the_last(smoke):
    out, _ = smoke
    chosen = json.loads((out / "hyperparameters.json").read_text())
    source, card = load_checkpoint(out / chosen["bases"]["vgg16"]["checkpoint"])
    assert card.architecture == "vgg16" and len(card.classes) == 4
    # The model-2 run as the runner specifies it: a transfer from that checkpoint.
    config = load_profile("smoke")["model2"]
    spec = RunSpec(
        "model2",
        "vgg16",
        str(out / chosen["bases"]["vgg16"]["checkpoint"]),
        Setting(**chosen["bases"]["vgg16"]["chosen"]),
        config["training"]["input_size"],
        1,
    )
    torch.manual_seed(123)
    model2 = initialise_model("vgg16", 2, spec.setting.dropout, spec.model_spec().init)
    before, after = source.state_dict(), model2.state_dict()
    assert set(before) == set(after)
    for key in before:
        if key.startswith(LAST_LAYER_PREFIX):
            assert after[key].shape[0] == 2 and before[key].shape[0] == 4  # a new 2-class layer
        else:
            assert torch.equal(before[key], after[key]), key
    # and the model-2 runs of the pipeline were made from it
    model2_runs = list((out / "runs" / "model2" / "vgg16").glob("transfer-*"))
    assert len(model2_runs) == 1 and len(list(model2_runs[0].glob("fold?.json"))) == 3


@pytest.mark.slow
def test_a_second_run_reuses_every_finished_fold(smoke):
    out, _ = smoke
    before = {p: p.stat().st_mtime for p in (out / "runs").rglob("fold?.json")}
    tables = (out / "tables.md").read_text()
    result = _reproduce(out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "val accuracy" not in result.stdout  # no fold was trained again
    assert {p: p.stat().st_mtime for p in (out / "runs").rglob("fold?.json")} == before
    assert (out / "tables.md").read_text() == tables
    assert len(json.loads((out / "summary.json").read_text())["invocations"]) == 2
