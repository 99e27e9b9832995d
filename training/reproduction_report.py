"""What a reproduction writes: the tables in the paper's layout with the paper's numbers beside
ours, per-fold CSV files, learning curves, the chosen hyper-parameters and a summary of the command,
the machine and the runtime.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .curves import plot_learning_curves
from .metrics import METRICS
from .profiles import protocol_of, training_of
from .tables import BASE_NAMES, PAPER_TABLE1, PAPER_TABLE2, markdown_table, metric_cells, side_by_side

if TYPE_CHECKING:
    from .reproduction import Runner, RunSpec


def _fmt(value: float) -> str:
    return f"{value:g}"


def table1_markdown(model1: dict, notes: list[str]) -> str:
    rows = []
    for entry in model1["bases"].values():
        chosen = entry["chosen"]
        # The paper's row is matched by architecture: two of our rows may train the same network.
        rows.append(
            {
                "base": entry["spec"].base,
                "label": "ours",
                "initialisation": entry["init"],
                "epochs": entry["spec"].epochs,
                "LR": _fmt(chosen["lr"]),
                "batch": chosen["batch_size"],
                "dropout": _fmt(chosen["dropout"]),
                "summary": entry["summary"],
                "paper_extra": {"initialisation": "ImageNet", "LR": "0.0001", "batch": "32", "dropout": "0.2"},
            }
        )
    order = {b: i for i, b in enumerate(("mobilenet_v2", "vgg16", "resnet50"))}
    rows.sort(key=lambda r: order.get(r["base"], len(order)))  # stable: a base's rows keep the profile's order
    text = "## Table 1 — model 1, blood-style data, 4 classes (test folds, mean ± std, %)\n\n"
    text += side_by_side(rows, PAPER_TABLE1, ("initialisation", "epochs", "LR", "batch", "dropout"))
    return text + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _percent(value: float) -> str:
    return "undefined" if math.isnan(value) else f"{100 * value:.2f}"


def cross_lab_markdown(cross_lab: dict) -> str:
    """The cross-lab control: single runs, so plain percentages, not mean ± std."""
    text = "## Cross-lab control — model 1 trained on one lab's fields, tested on another's (one run each, %)\n\n"
    if cross_lab["not_run"]:
        return text + f"Not run: {cross_lab['not_run']}.\n"
    header = [
        "base",
        "trained on",
        "tested on",
        "train images",
        "test images",
        "accuracy",
        "precision",
        "recall",
        "AUC",
    ]
    rows = [
        [
            BASE_NAMES.get(row["base"], row["base"]),
            row["train_lab"],
            row["test_lab"],
            row["train_images"],
            row["test_images"],
            *(_percent(row["test"][m]) for m in METRICS),
        ]
        for row in cross_lab["rows"]
    ]
    undefined = any("undefined" in row for row in rows)
    return (
        text
        + markdown_table(header, rows)
        + ("\n- A metric is undefined where the test lab lacks a grade." if undefined else "")
        + (
            "\n- Each run trains on four fifths of one lab's fields (one fifth validates, grouped by field), with "
            "the base's chosen model-1 setting, and tests on every field of the other lab. The 5-fold Table 1 mixes "
            "both labs in every fold; this asks whether grades learnt on one microscope hold on another.\n"
        )
    )


def ablations_markdown(ablations: dict) -> str:
    header = ["variant", "base", "input", "oversampling", *("accuracy", "precision", "recall", "AUC")]
    rows = [
        [
            name,
            BASE_NAMES.get(ablations["base"], ablations["base"]),
            f"{row['spec'].input_size} px",
            "yes" if row["spec"].oversample else "no",
            *metric_cells(row["summary"]),
        ]
        for name, row in ablations["rows"].items()
    ]
    text = "## Ablations on the best model 1 (test folds, mean ± std, %)\n\n" + markdown_table(header, rows)
    return text + (
        "\n- The paper reports that 512 × 512 inputs and oversampling brought no gain; it gives no numbers for them.\n"
    )


def table2_markdown(model2: dict, notes: list[str]) -> str:
    rows = [
        {
            "base": arm["base"],
            "label": "ours",
            "initialisation": arm["label"],
            "LR": _fmt(arm["setting"]["lr"]),
            "batch": arm["setting"]["batch_size"],
            "dropout": _fmt(arm["setting"]["dropout"]),
            "summary": arm["summary"],
            "paper_extra": {"initialisation": "model 1 (ImageNet VGG16 trained on blood)"},
        }
        for arm in model2["arms"]
    ]
    text = "## Table 2 — model 2, cytology-style data, binary good / bad (test folds, mean ± std, %)\n\n"
    text += side_by_side(rows, PAPER_TABLE2, ("initialisation", "LR", "batch", "dropout"))
    notes = notes + [f"{line}." for line in model2["not_run"]]
    return text + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _write_csv(path: Path, records: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "experiment",
                "base",
                "init",
                "lr",
                "batch_size",
                "dropout",
                "input_size",
                "oversample",
                "fold",
                "subset",
                *METRICS,
                "best_epoch",
                "train_images",
                "seconds",
            ]
        )
        seen = set()
        for record in records:
            spec: RunSpec = record["spec"]
            key = (spec, record["fold"])
            if key in seen:
                continue
            seen.add(key)
            for subset in ("val", "test"):
                writer.writerow(
                    [
                        spec.experiment,
                        spec.base,
                        spec.init_label,
                        _fmt(spec.setting.lr),
                        spec.setting.batch_size,
                        _fmt(spec.setting.dropout),
                        spec.input_size,
                        int(spec.oversample),
                        record["fold"],
                        subset,
                        *(f"{record[subset][m]:.4f}" for m in METRICS),
                        record["best_epoch"],
                        record.get("train_images", ""),
                        f"{record['seconds']:.1f}",
                    ]
                )


def _device_text() -> str:
    return (
        f"a GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "the CPU (no GPU on this machine)"
    )


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _data_notes(model1: dict, model1_config: dict, model2: dict, model2_config: dict, profile: str) -> dict:
    training1, training2 = training_of(model1_config), training_of(model2_config)
    protocol = protocol_of(model1_config)
    counts = ", ".join(f"{c} {n}" for c, n in zip(model1["classes"], model1["class_counts"]))
    own = "data" in model1_config and "folder" in model1_config["data"]
    epochs = {e["spec"].epochs for e in model1["bases"].values()}
    epochs_text = (
        f"{training1['epochs']} epoch(s)"
        if epochs == {training1["epochs"]}
        else "epochs per row as in the table (the paper does not give its own)"
    )
    common = [
        f"Profile `{profile}`: {epochs_text}, {training1['input_size']} px inputs, "
        f"{protocol['folds']} folds (60/20/20), epoch with the lowest validation loss kept. "
        f"Trained on {_device_text()}."
    ]
    if own:
        data1 = [f"Data: {model1['images']} images from {model1_config['data']['folder']} ({counts})."]
        data2 = [f"Data: {model2['images']} images from {model2_config['data'].get('folder', '')}."]
    else:
        labs = ", ".join(f"{lab} {n}" for lab, n in model1["labs"].items())
        grouping = {"field": "folds grouped by field", "reference": "folds grouped by crop"}
        if model1["fields"] == model1["images"]:
            what = (
                f"{model1['images']} real blood-smear fields from {len(model1['labs'])} lab(s) ({labs}), one "
                f"copy of each"
            )
        else:
            what = (
                f"{model1['images']} crops of {model1['fields']} public blood-smear field(s) ({labs}); crops of "
                "one field overlap, so folds are less independent than real fields"
            )
        data1 = [
            f"Data: **not the paper's** (its blood dataset is private). {what}, graded bad/fair/good/excellent "
            f"by **synthetic** distortion severity ({counts}); the fields carry no quality grades of their own. "
            f"{grouping[protocol['group_by']].capitalize()}, stratified by grade"
            + (" within each lab, every lab in every fold." if len(model1["labs"]) > 1 else ".")
        ]
        data2 = [
            f"Data: **not the paper's** (its cytology dataset is private). {model2['references']} reference "
            f"crops of {model2.get('fields', 0)} public H&E/IHC fields and slide regions (good) + one copy per "
            f"distortion family (bad): {model2['images']} images, "
            f"{grouping[protocol_of(model2_config)['group_by']]}."
        ]
    majority = max(model1["class_counts"]) / max(1, sum(model1["class_counts"]))
    chance1 = [f"Chance: always predicting the largest class gives accuracy {100 * majority:.2f} % and AUC 50 %."]
    chance2 = (
        ["Chance: always predicting `bad` (4 of every 5 images) gives accuracy 80 % and AUC 50 %."]
        if not own and model2.get("images")
        else []
    )
    grid = [
        f"Grid search on validation fold(s) {protocol['grid_folds']} by validation "
        f"{protocol['selection_metric']}; the chosen setting is then run on every fold and tested."
    ]
    # A profile's own words for its tables, e.g. which runs have not been made on this hardware.
    said = [str(line) for line in model1_config.get("report", {}).get("notes", [])]
    return {
        "table1": common + data1 + chance1 + grid + said,
        "table2": [
            f"Profile `{profile}`: {training2['epochs']} epoch(s), {training2['input_size']} px inputs, "
            "hyper-parameters of the base's chosen model-1 setting; transfer keeps every layer of "
            "model 1 but the last."
        ]
        + data2
        + chance2,
    }


def write_results(
    out: Path,
    profile: str,
    model1: dict,
    ablations: dict | None,
    model2: dict | None,
    configs: dict,
    runner: Runner,
    wall_s: float,
    command: str,
) -> dict[str, Path]:
    notes = _data_notes(model1, configs["model1"], model2 or {"images": 0, "references": 0}, configs["model2"], profile)
    files = {"table1": out / "table1.md"}
    files["table1"].write_text(
        table1_markdown(model1, notes["table1"]) + "\n" + cross_lab_markdown(model1["cross_lab"])
    )
    panels = {
        f"{BASE_NAMES.get(e['spec'].base, b)} {e['init']} {e['chosen']['lr']:g}/{e['chosen']['batch_size']}/"
        f"{e['chosen']['dropout']:g}": e["histories"]
        for b, e in model1["bases"].items()
    }
    plot_learning_curves(panels, out / "curves" / "model1.png", "model 1 (chosen setting per base, mean over folds)")
    _write_csv(out / "model1_folds.csv", runner.records.get("model1", []))
    chosen = {
        "selection_metric": model1["selection_metric"],
        "grid_folds": model1["grid_folds"],
        "best_base": model1["best_base"],
        "bases": {
            b: {
                "architecture": e["spec"].base,
                "epochs": e["spec"].epochs,
                **{k: e[k] for k in ("init", "chosen", "validation_score", "grid", "checkpoint")},
            }
            for b, e in model1["bases"].items()
        },
    }
    if ablations:
        files["ablations"] = out / "ablations.md"
        files["ablations"].write_text(ablations_markdown(ablations))
        plot_learning_curves(
            {n: r["histories"] for n, r in ablations["rows"].items()},
            out / "curves" / "ablations.png",
            f"ablations on {BASE_NAMES.get(ablations['base'], ablations['base'])}",
        )
        _write_csv(out / "ablations_folds.csv", runner.records.get("ablations", []))
    if model2:
        files["table2"] = out / "table2.md"
        files["table2"].write_text(table2_markdown(model2, notes["table2"]))
        plot_learning_curves(
            {f"{BASE_NAMES.get(a['base'], a['base'])} from {a['source']}": a["histories"] for a in model2["arms"]},
            out / "curves" / "model2.png",
            "model 2 (mean over folds)",
        )
        _write_csv(out / "model2_folds.csv", runner.records.get("model2", []))
        chosen["model2"] = [{"base": a["base"], "init": a["label"], **a["setting"]} for a in model2["arms"]]
    (out / "hyperparameters.json").write_text(json.dumps(chosen, indent=2) + "\n")
    # A fold chosen by the grid search is also part of the final evaluation: count it once.
    unique = {(r["spec"], r["fold"]): r["seconds"] for records in runner.records.values() for r in records}
    trained = sum(unique.values())
    # Every invocation is kept: a run resumed after an interruption still shows its whole history.
    previous = (
        json.loads((out / "summary.json").read_text()).get("invocations", []) if (out / "summary.json").exists() else []
    )
    invocation = {
        "command": command,
        "wall_s": round(wall_s, 1),
        "trained_s": round(runner.trained_s, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(),
    }
    summary = {
        "profile": profile,
        "command": command,
        "machine": invocation["machine"],
        "training_s_all_runs": round(trained, 1),
        "invocations": previous + [invocation],
        "cross_lab": model1["cross_lab"],
        "datasets": {"model1": model1["dataset"], "model2": (model2 or {}).get("dataset")},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    files["summary"] = out / "summary.json"
    tables = [files["table1"].read_text()] + [files[k].read_text() for k in ("ablations", "table2") if k in files]
    files["tables"] = out / "tables.md"
    files["tables"].write_text("\n".join(tables))
    return files
