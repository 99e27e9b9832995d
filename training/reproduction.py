"""The seed paper's experiments end to end: model 1 grid search, its two ablations, model 2 transfer.

A *profile* is a folder of three TOML files, one per experiment (``model1.toml``, ``ablations.toml``,
``model2.toml``); ``paper`` is the exact protocol (GPU work), ``cpu`` the same steps scaled to finish
on a 2-core CPU in about an hour, ``smoke`` the whole pipeline in a couple of minutes for CI. A lab
copies a profile and points its ``[data]`` at its own labelled image folders.

Every training run is one fold of one setting and is stored as a JSON file the moment it finishes;
a re-run reads finished folds instead of training them again, so an interrupted run resumes where it
stopped. A run's folder name carries a hash of everything that determines it, so changing a config
value trains anew instead of silently reusing a result made with other settings.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import shutil
import time
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from slideiqa.errors import SlideIQAError
from slideiqa.models.checkpoint import save_checkpoint
from slideiqa.models.registry import architecture, imagenet_weights_file

from .curves import plot_learning_curves
from .datasets import BuildConfig, ImageFolder, build_dataset
from .experiments import ModelSpec, evaluation_set, fit_split, make_card
from .grid_search import Setting, choose_best, settings_from, validation_score
from .metrics import METRICS, classification_metrics, summarize
from .sources import find_sources
from .splits import Split, five_fold_splits, oversample
from .tables import (BASE_NAMES, PAPER_BEST_SETTING, PAPER_TABLE1, PAPER_TABLE2, markdown_table, metric_cells,
                     side_by_side)
from .trainer import TrainConfig, predict

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"
PROFILES = ("paper", "cpu", "smoke")
EXPERIMENTS = ("model1", "ablations", "model2")
INITS = ("imagenet", "random")


class ReproductionError(SlideIQAError):
    """A profile cannot be run as configured; the message names the file and the setting."""


# ---------------------------------------------------------------------------------------------- config


def profile_dir(profile: str | Path) -> Path:
    """A profile name (``paper``, ``cpu``, ``smoke``) or a folder holding the three TOML files."""
    path = Path(profile)
    if not path.is_dir():
        path = CONFIG_ROOT / str(profile)
    missing = [f"{name}.toml" for name in EXPERIMENTS if not (path / f"{name}.toml").exists()]
    if missing:
        raise ReproductionError(f"{path}: not a profile folder (missing {', '.join(missing)}); "
                                f"known profiles: {', '.join(PROFILES)}")
    return path


def load_profile(profile: str | Path) -> dict[str, dict]:
    """The three experiment configs; relative paths in them are taken from the file's folder."""
    folder = profile_dir(profile)
    configs = {}
    for name in EXPERIMENTS:
        path = folder / f"{name}.toml"
        try:
            config = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ReproductionError(f"{path}: {error}") from None
        config["_file"] = path
        configs[name] = config
    return configs


def _resolve(path: str, config: dict) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (config["_file"].parent / candidate).resolve()


def _short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def prepare_dataset(config: dict, out: Path, log: Callable[[str], None]) -> Path:
    """The experiment's image folder: a lab's own (``folder``) or one built from sharp sources.

    A built dataset is keyed by its build settings, so experiments that ask for the same data share
    it, and it is built under a temporary name first: an interrupted build is never mistaken for a
    finished one.
    """
    data = config.get("data", {})
    if "folder" in data:
        folder = _resolve(data["folder"], config)
        if not folder.is_dir():
            raise ReproductionError(f"{config['_file']}: data folder {folder} does not exist")
        return folder
    if "kind" not in data or "sources" not in data:
        raise ReproductionError(f"{config['_file']}: [data] needs either folder, or kind and sources")
    sources = [str(_resolve(s, config)) for s in data["sources"]]
    shares = data.get("class_shares")
    build = BuildConfig(crops_per_source=int(data.get("crops_per_source", 100)),
                        crop_size=int(data.get("crop_size", 224)), mpp=float(data.get("mpp", 0.5)),
                        min_tissue=float(data.get("min_tissue", 0.3)), seed=int(data.get("seed", 0)),
                        source_mpp={k: float(v) for k, v in data.get("source_mpp", {}).items()},
                        class_shares=tuple(shares) if shares else None)
    key = _short_hash({"kind": data["kind"], "sources": [Path(s).name for s in sources], "build": asdict(build)})
    folder = out / "data" / f"{data['kind']}-{key}"
    if (folder / "classes.json").exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    log(f"building the {data['kind']} dataset in {folder}")
    build_dataset(data["kind"], find_sources(sources), partial, build)
    partial.rename(folder)
    return folder


# ---------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one cross-validated training run (all its folds)."""

    experiment: str
    base: str
    init: str  # imagenet, random, or a checkpoint path (transfer)
    setting: Setting
    input_size: int
    epochs: int
    normalisation: str = "unit"
    augment: str = "paper"
    oversample: bool = False
    seed: int = 0
    data: str = ""
    init_label: str = ""

    def folder(self, out: Path) -> Path:
        # Identity, not location: the same run in a moved results folder keeps its name.
        fields = asdict(self)
        del fields["init_label"]  # wording for the tables, not part of what was trained
        fields["data"] = Path(self.data).name
        if self.init not in INITS:
            init = Path(self.init)
            fields["init"] = str(init.relative_to(out)) if init.is_relative_to(out) else init.name
        init = self.init if self.init in INITS else "transfer"
        tag = "-os" if self.oversample else ""
        return (out / "runs" / self.experiment / self.base /
                f"{init}-{self.setting.name}-in{self.input_size}{tag}-{_short_hash(fields)}")

    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.base, self.init, self.setting.dropout, self.input_size, self.normalisation, self.augment)


@dataclass
class Runner:
    """Runs folds, skipping those already on disk, and keeps every record for the CSV files."""

    out: Path
    device: str = "auto"
    checkpoint_fold: int = 0
    log: Callable[[str], None] = print
    records: dict[str, list[dict]] = field(default_factory=dict)
    trained_s: float = 0.0

    def fold(self, spec: RunSpec, dataset: ImageFolder, split: Split) -> dict:
        folder = spec.folder(self.out)
        path = folder / f"fold{split.fold}.json"
        name = f"[{spec.experiment}] {spec.base} {spec.init_label} {spec.setting.name} in{spec.input_size}" + \
               (" oversampled" if spec.oversample else "") + f" fold {split.fold}"
        if path.exists():
            record = json.loads(path.read_text())
        else:
            record = self._train(spec, dataset, split, folder)
            self.trained_s += record["seconds"]
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".json.partial")
            temporary.write_text(json.dumps(record, indent=1) + "\n")
            temporary.replace(path)
            self.log(f"{name}: val accuracy {record['val']['accuracy']:.3f}, test accuracy "
                     f"{record['test']['accuracy']:.3f}, AUC {record['test']['auc']:.3f} ({record['seconds']:.0f} s)")
        self.records.setdefault(spec.experiment, []).append({"spec": spec, **record})
        return record

    def _train(self, spec: RunSpec, dataset: ImageFolder, split: Split, folder: Path) -> dict:
        started = time.perf_counter()
        model_spec = spec.model_spec()
        config = TrainConfig(spec.epochs, spec.setting.batch_size, spec.setting.lr, seed=spec.seed,
                             device=self.device, progress=False)
        train_idx = oversample(split.train, dataset.targets, spec.seed + split.fold) if spec.oversample else split.train
        model, result, test_probabilities, test_labels = fit_split(dataset, model_spec, config, train_idx,
                                                                   split.val, split.test)
        val_probabilities, val_labels = predict(model, evaluation_set(dataset, model_spec, split.val),
                                                device=self.device)
        best = result.history[result.best_epoch - 1] if result.history else {}
        record = {
            "fold": split.fold, "best_epoch": result.best_epoch, "history": result.history,
            "train_images": int(len(train_idx)),
            "val": {**classification_metrics(val_labels, val_probabilities), "loss": best.get("val_loss", float("nan"))},
            "test": classification_metrics(test_labels, test_probabilities),
        }
        if split.fold == self.checkpoint_fold:
            card = make_card(model_spec, dataset, mpp=_model_mpp(dataset, spec.input_size), tile_size=spec.input_size,
                             name=f"{spec.experiment}-{spec.base}-{spec.setting.name}-fold{split.fold}",
                             description=f"seed-paper reproduction, {spec.experiment}, fold {split.fold}",
                             training_data={"dataset": spec.data, "fold": split.fold, "init": spec.init_label},
                             metrics={"validation": record["val"], "test": record["test"]})
            stem = folder / f"fold{split.fold}-model"
            save_checkpoint(model.cpu(), card, stem)
            record["checkpoint"] = str(stem.relative_to(self.out))
        record["seconds"] = time.perf_counter() - started
        return record

    def cross_validate(self, spec: RunSpec, dataset: ImageFolder, splits: list[Split],
                       folds: list[int] | None = None) -> list[dict]:
        wanted = range(len(splits)) if folds is None else folds
        return [self.fold(spec, dataset, splits[k]) for k in wanted]


def _model_mpp(dataset: ImageFolder, input_size: int) -> float:
    """µm/px the model sees: a built dataset's crops (``crop_size`` px at ``mpp``) shrunk to the input.
    A lab's own folder says nothing about pixel size; 0.5 µm/px is then only a placeholder."""
    index = dataset.root / "classes.json"
    built = json.loads(index.read_text()) if index.exists() else {}
    return float(built.get("mpp", 0.5)) * float(built.get("crop_size", input_size)) / input_size


def resolve_init(init: str, base: str, fallback: str | None) -> tuple[str, str]:
    """(initialisation to use, label for the tables). ImageNet weights missing on this machine fall
    back to ``fallback`` when the config allows it, and the label says so."""
    if init == "imagenet":
        architecture(base)
        try:
            present = os.path.exists(imagenet_weights_file(base))
        except SlideIQAError:
            present = False
        if not present:
            if not fallback:
                raise ReproductionError(f"no ImageNet weights for {base} on this machine and no fallback_init "
                                        f"configured (put {imagenet_weights_file(base)} in place)")
            return fallback, f"{fallback} (no ImageNet weights here)"
        return init, "ImageNet"
    return init, init


# ---------------------------------------------------------------------------------------------- stages


def _protocol(config: dict) -> dict:
    protocol = {"folds": 5, "seed": 0, "selection_metric": "accuracy", **config.get("protocol", {})}
    protocol.setdefault("grid_folds", list(range(protocol["folds"])))
    return protocol


def _training(config: dict) -> dict:
    return {"epochs": 30, "input_size": 224, "normalisation": "unit", "augment": "paper", "init": "imagenet",
            "fallback_init": None, **config.get("training", {})}


def _summary_row(records: list[dict]) -> dict:
    return summarize([r["test"] for r in records], METRICS)


def run_model1(runner: Runner, config: dict) -> dict:
    """Grid search per base on the validation folds, then the chosen setting on every test fold."""
    protocol, training = _protocol(config), _training(config)
    data = prepare_dataset(config, runner.out, runner.log)
    dataset = ImageFolder(data)
    splits = five_fold_splits(dataset.targets, dataset.groups, protocol["folds"], protocol["seed"])
    metric = protocol["selection_metric"]
    result: dict[str, Any] = {"dataset": str(data.relative_to(runner.out) if data.is_relative_to(runner.out) else data),
                              "images": len(dataset), "classes": dataset.classes,
                              "class_counts": np.bincount(dataset.targets, minlength=len(dataset.classes)).tolist(),
                              "selection_metric": metric, "grid_folds": protocol["grid_folds"], "bases": {}}
    for base, base_config in config.get("bases", {}).items():
        init, label = resolve_init(base_config.get("init", training["init"]), base, training["fallback_init"])
        make = lambda setting: RunSpec("model1", base, init, setting, int(training["input_size"]),  # noqa: E731
                                       int(training["epochs"]), training["normalisation"], training["augment"],
                                       False, protocol["seed"], str(data), label)
        scores = {}
        for setting in settings_from(base_config):
            folds = runner.cross_validate(make(setting), dataset, splits, protocol["grid_folds"])
            scores[setting] = validation_score([f["val"] for f in folds], metric)
        best = choose_best(scores, metric)
        final = runner.cross_validate(make(best), dataset, splits)
        result["bases"][base] = {
            "init": label, "chosen": best.as_dict(), "validation_score": scores[best],
            "grid": [{**s.as_dict(), f"validation_{metric}": v} for s, v in scores.items()],
            "checkpoint": next(f["checkpoint"] for f in final if "checkpoint" in f),
            "summary": _summary_row(final), "histories": [f["history"] for f in final],
            "spec": make(best),
        }
    if not result["bases"]:
        raise ReproductionError(f"{config['_file']}: no [bases.NAME] tables")
    sign = -1 if metric == "loss" else 1
    result["best_base"] = max(result["bases"], key=lambda b: sign * result["bases"][b]["validation_score"]
                              if not np.isnan(result["bases"][b]["validation_score"]) else -np.inf)
    return result


def run_ablations(runner: Runner, config: dict, model1: dict, model1_config: dict) -> dict:
    """The paper's two ablations on the best model 1: larger inputs, and oversampling minority classes."""
    protocol = _protocol(model1_config)
    base = config.get("ablations", {}).get("base", "best")
    base = model1["best_base"] if base == "best" else base
    if base not in model1["bases"]:
        raise ReproductionError(f"{config['_file']}: base {base!r} was not run in model 1")
    dataset = ImageFolder(Path(model1["bases"][base]["spec"].data))
    splits = five_fold_splits(dataset.targets, dataset.groups, protocol["folds"], protocol["seed"])
    reference: RunSpec = model1["bases"][base]["spec"]
    rows = {"best model 1": {"spec": reference, "summary": model1["bases"][base]["summary"],
                             "histories": model1["bases"][base]["histories"]}}
    for name, variant in config.get("variants", {}).items():
        spec = replace(reference, experiment="ablations", input_size=int(variant.get("input_size", reference.input_size)),
                       oversample=bool(variant.get("oversample", False)))
        folds = runner.cross_validate(spec, dataset, splits)
        rows[variant.get("label", name)] = {"spec": spec, "summary": _summary_row(folds),
                                            "histories": [f["history"] for f in folds]}
    return {"base": base, "rows": rows}


def run_model2(runner: Runner, config: dict, model1: dict) -> dict:
    """Binary cytology quality from model 1 minus its last layer, with ImageNet and random controls."""
    protocol, training = _protocol(config), _training(config)
    data = prepare_dataset(config, runner.out, runner.log)
    dataset = ImageFolder(data)
    splits = five_fold_splits(dataset.targets, dataset.groups, protocol["folds"], protocol["seed"])
    result: dict[str, Any] = {"dataset": str(data.relative_to(runner.out) if data.is_relative_to(runner.out) else data),
                              "images": len(dataset), "classes": dataset.classes,
                              "references": len(set(dataset.groups.tolist())), "arms": [], "not_run": []}
    for arm in config.get("arms", []):
        base, source = arm["base"], arm["init"]
        if training.get("hyperparameters", "model1") == "model1" and base in model1["bases"]:
            setting = Setting(**model1["bases"][base]["chosen"])
        else:
            chosen = training.get("hyperparameters") if isinstance(training.get("hyperparameters"), dict) else {}
            setting = Setting(**{**PAPER_BEST_SETTING, **chosen})
        if source == "model1":
            if base not in model1["bases"]:
                raise ReproductionError(f"{config['_file']}: arm {base} from model1, but model 1 has no {base} run")
            init = str(runner.out / model1["bases"][base]["checkpoint"])
            label = f"model 1 (trained on blood from {model1['bases'][base]['spec'].init} init)"
        elif source in INITS:
            init, label = source, {"imagenet": "ImageNet", "random": "random"}[source]
            if source == "imagenet" and not os.path.exists(imagenet_weights_file(base)):
                result["not_run"].append(f"{BASE_NAMES.get(base, base)} from ImageNet: not run — torchvision's "
                                         f"ImageNet weights ({Path(imagenet_weights_file(base)).name}) are not on "
                                         "this machine")
                continue
        else:
            raise ReproductionError(f"{config['_file']}: arm init must be model1, imagenet or random, not {source!r}")
        spec = RunSpec("model2", base, init, setting, int(training["input_size"]), int(training["epochs"]),
                       training["normalisation"], training["augment"], False, protocol["seed"], str(data),
                       {"model1": "model1", "imagenet": "imagenet", "random": "random"}[source])
        folds = runner.cross_validate(spec, dataset, splits)
        result["arms"].append({"base": base, "source": source, "label": label, "setting": setting.as_dict(),
                               "summary": _summary_row(folds), "histories": [f["history"] for f in folds]})
    return result


# ---------------------------------------------------------------------------------------------- outputs


def _fmt(value: float) -> str:
    return f"{value:g}"


def table1_markdown(model1: dict, notes: list[str]) -> str:
    rows = []
    for base, entry in model1["bases"].items():
        chosen = entry["chosen"]
        rows.append({"base": base, "label": "ours", "initialisation": entry["init"], "LR": _fmt(chosen["lr"]),
                     "batch": chosen["batch_size"], "dropout": _fmt(chosen["dropout"]), "summary": entry["summary"],
                     "paper_extra": {"initialisation": "ImageNet", "LR": "0.0001", "batch": "32", "dropout": "0.2"}})
    order = {b: i for i, b in enumerate(("mobilenet_v2", "vgg16", "resnet50"))}
    rows.sort(key=lambda r: order.get(r["base"], len(order)))
    text = "## Table 1 — model 1, blood-style data, 4 classes (test folds, mean ± std, %)\n\n"
    text += side_by_side(rows, PAPER_TABLE1, ("initialisation", "LR", "batch", "dropout"))
    return text + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def ablations_markdown(ablations: dict) -> str:
    header = ["variant", "base", "input", "oversampling", *("accuracy", "precision", "recall", "AUC")]
    rows = [[name, BASE_NAMES.get(ablations["base"], ablations["base"]), f"{row['spec'].input_size} px",
             "yes" if row["spec"].oversample else "no", *metric_cells(row["summary"])]
            for name, row in ablations["rows"].items()]
    text = "## Ablations on the best model 1 (test folds, mean ± std, %)\n\n" + markdown_table(header, rows)
    return text + ("\n- The paper reports that 512 × 512 inputs and oversampling brought no gain; it gives no "
                   "numbers for them.\n")


def table2_markdown(model2: dict, notes: list[str]) -> str:
    rows = [{"base": arm["base"], "label": "ours", "initialisation": arm["label"], "LR": _fmt(arm["setting"]["lr"]),
             "batch": arm["setting"]["batch_size"], "dropout": _fmt(arm["setting"]["dropout"]),
             "summary": arm["summary"], "paper_extra": {"initialisation": "model 1 (ImageNet VGG16 trained on blood)"}}
            for arm in model2["arms"]]
    text = "## Table 2 — model 2, cytology-style data, binary good / bad (test folds, mean ± std, %)\n\n"
    text += side_by_side(rows, PAPER_TABLE2, ("initialisation", "LR", "batch", "dropout"))
    notes = notes + [f"{line}." for line in model2["not_run"]]
    return text + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _write_csv(path: Path, records: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["experiment", "base", "init", "lr", "batch_size", "dropout", "input_size", "oversample",
                         "fold", "subset", *METRICS, "best_epoch", "train_images", "seconds"])
        seen = set()
        for record in records:
            spec: RunSpec = record["spec"]
            key = (spec, record["fold"])
            if key in seen:
                continue
            seen.add(key)
            for subset in ("val", "test"):
                writer.writerow([spec.experiment, spec.base, spec.init_label, _fmt(spec.setting.lr),
                                 spec.setting.batch_size, _fmt(spec.setting.dropout), spec.input_size,
                                 int(spec.oversample), record["fold"], subset,
                                 *(f"{record[subset][m]:.4f}" for m in METRICS), record["best_epoch"],
                                 record.get("train_images", ""), f"{record['seconds']:.1f}"])


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _data_notes(model1: dict, model1_config: dict, model2: dict, model2_config: dict, profile: str) -> dict:
    training1, training2 = _training(model1_config), _training(model2_config)
    protocol = _protocol(model1_config)
    counts = ", ".join(f"{c} {n}" for c, n in zip(model1["classes"], model1["class_counts"]))
    own = "data" in model1_config and "folder" in model1_config["data"]
    common = [f"Profile `{profile}`: {training1['epochs']} epoch(s), {training1['input_size']} px inputs, "
              f"{protocol['folds']} folds (60/20/20), epoch with the lowest validation loss kept."]
    if own:
        data1 = [f"Data: {model1['images']} images from {model1_config['data']['folder']} ({counts})."]
        data2 = [f"Data: {model2['images']} images from {model2_config['data'].get('folder', '')}."]
    else:
        data1 = [f"Data: **not the paper's** (its blood dataset is private). {model1['images']} crops of the "
                 f"public blood-smear field, graded bad/fair/good/excellent by synthetic distortion severity "
                 f"({counts}); crops of one field overlap, so folds are less independent than real fields."]
        data2 = [f"Data: **not the paper's** (its cytology dataset is private). {model2['references']} reference "
                 f"crops of public H&E/IHC fields and a CMU slide region (good) + one copy per distortion family "
                 f"(bad): {model2['images']} images, folds grouped by reference."]
    majority = max(model1["class_counts"]) / max(1, sum(model1["class_counts"]))
    chance1 = [f"Chance: always predicting the largest class gives accuracy {100 * majority:.2f} % and AUC 50 %."]
    chance2 = ["Chance: always predicting `bad` (4 of every 5 images) gives accuracy 80 % and AUC 50 %."] \
        if not own and model2.get("images") else []
    grid = [f"Grid search on validation fold(s) {protocol['grid_folds']} by validation "
            f"{protocol['selection_metric']}; the chosen setting is then run on every fold and tested."]
    return {"table1": common + data1 + chance1 + grid,
            "table2": [f"Profile `{profile}`: {training2['epochs']} epoch(s), {training2['input_size']} px inputs, "
                       "hyper-parameters of the base's chosen model-1 setting; transfer keeps every layer of "
                       "model 1 but the last."] + data2 + chance2}


def write_results(out: Path, profile: str, model1: dict, ablations: dict | None, model2: dict | None,
                  configs: dict, runner: Runner, wall_s: float, command: str) -> dict[str, Path]:
    notes = _data_notes(model1, configs["model1"], model2 or {"images": 0, "references": 0},
                        configs["model2"], profile)
    files = {"table1": out / "table1.md"}
    files["table1"].write_text(table1_markdown(model1, notes["table1"]))
    panels = {f"{BASE_NAMES.get(b, b)} {e['chosen']['lr']:g}/{e['chosen']['batch_size']}/{e['chosen']['dropout']:g}":
              e["histories"] for b, e in model1["bases"].items()}
    plot_learning_curves(panels, out / "curves" / "model1.png", "model 1 (chosen setting per base, mean over folds)")
    _write_csv(out / "model1_folds.csv", runner.records.get("model1", []))
    chosen = {"selection_metric": model1["selection_metric"], "grid_folds": model1["grid_folds"],
              "best_base": model1["best_base"],
              "bases": {b: {k: e[k] for k in ("init", "chosen", "validation_score", "grid", "checkpoint")}
                        for b, e in model1["bases"].items()}}
    if ablations:
        files["ablations"] = out / "ablations.md"
        files["ablations"].write_text(ablations_markdown(ablations))
        plot_learning_curves({n: r["histories"] for n, r in ablations["rows"].items()}, out / "curves" / "ablations.png",
                             f"ablations on {BASE_NAMES.get(ablations['base'], ablations['base'])}")
        _write_csv(out / "ablations_folds.csv", runner.records.get("ablations", []))
    if model2:
        files["table2"] = out / "table2.md"
        files["table2"].write_text(table2_markdown(model2, notes["table2"]))
        plot_learning_curves({f"{BASE_NAMES.get(a['base'], a['base'])} from {a['source']}": a["histories"]
                              for a in model2["arms"]}, out / "curves" / "model2.png", "model 2 (mean over folds)")
        _write_csv(out / "model2_folds.csv", runner.records.get("model2", []))
        chosen["model2"] = [{"base": a["base"], "init": a["label"], **a["setting"]} for a in model2["arms"]]
    (out / "hyperparameters.json").write_text(json.dumps(chosen, indent=2) + "\n")
    # A fold chosen by the grid search is also part of the final evaluation: count it once.
    unique = {(r["spec"], r["fold"]): r["seconds"] for records in runner.records.values() for r in records}
    trained = sum(unique.values())
    # Every invocation is kept: a run resumed after an interruption still shows its whole history.
    previous = json.loads((out / "summary.json").read_text()).get("invocations", []) if (out / "summary.json").exists() else []
    invocation = {"command": command, "wall_s": round(wall_s, 1), "trained_s": round(runner.trained_s, 1),
                  "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine()}
    summary = {"profile": profile, "command": command, "machine": invocation["machine"],
               "training_s_all_runs": round(trained, 1), "invocations": previous + [invocation],
               "datasets": {"model1": model1["dataset"], "model2": (model2 or {}).get("dataset")}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    files["summary"] = out / "summary.json"
    tables = [files["table1"].read_text()] + [files[k].read_text() for k in ("ablations", "table2") if k in files]
    files["tables"] = out / "tables.md"
    files["tables"].write_text("\n".join(tables))
    return files


def reproduce(profile: str | Path, out: Path, device: str = "auto", stages: tuple[str, ...] = EXPERIMENTS,
              log: Callable[[str], None] = print, command: str = "") -> dict[str, Path]:
    """Run the profile's experiments (model 1 always, as the others build on it) and write the results."""
    started = time.perf_counter()
    configs = load_profile(profile)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config").mkdir(exist_ok=True)
    for name in EXPERIMENTS:
        shutil.copyfile(configs[name]["_file"], out / "config" / f"{name}.toml")
    runner = Runner(out, device, int(configs["model1"].get("protocol", {}).get("checkpoint_fold", 0)), log)
    model1 = run_model1(runner, configs["model1"])
    ablations = run_ablations(runner, configs["ablations"], model1, configs["model1"]) if "ablations" in stages else None
    model2 = run_model2(runner, configs["model2"], model1) if "model2" in stages else None
    command = command or f"reproduce({str(profile)!r}, {str(out)!r})"
    return write_results(out, Path(profile).name, model1, ablations, model2, configs, runner,
                         time.perf_counter() - started, command)
