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

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from slideiqa.errors import SlideIQAError
from slideiqa.models.checkpoint import save_checkpoint
from slideiqa.models.registry import architecture, imagenet_weights_file

from .datasets import ImageFolder, model_mpp
from .experiments import ModelSpec, evaluation_set, fit_split, make_card
from .grid_search import Setting, choose_best, settings_from, validation_score
from .metrics import METRICS, classification_metrics, summarize
from .profiles import (
    EXPERIMENTS,
    INITS,
    ReproductionError,
    load_profile,
    prepare_dataset,
    protocol_of,
    short_hash,
    training_of,
)
from .reproduction_report import write_results
from .splits import Split, cross_lab_splits, five_fold_splits, oversample
from .tables import BASE_NAMES, PAPER_BEST_SETTING
from .trainer import TrainConfig, predict

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
            init_path = Path(self.init)
            fields["init"] = str(init_path.relative_to(out)) if init_path.is_relative_to(out) else init_path.name
        init = self.init if self.init in INITS else "transfer"
        tag = "-os" if self.oversample else ""
        return (
            out
            / "runs"
            / self.experiment
            / self.base
            / f"{init}-{self.setting.name}-in{self.input_size}{tag}-{short_hash(fields)}"
        )

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
        path = folder / f"{split.key}.json"
        name = (
            f"[{spec.experiment}] {spec.base} {spec.init_label} {spec.setting.name} in{spec.input_size}"
            + (" oversampled" if spec.oversample else "")
            + f" {split.key}"
        )
        if path.exists():
            record = json.loads(path.read_text())
        else:
            record = self._train(spec, dataset, split, folder)
            self.trained_s += record["seconds"]
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".json.partial")
            temporary.write_text(json.dumps(record, indent=1) + "\n")
            temporary.replace(path)
            self.log(
                f"{name}: val accuracy {record['val']['accuracy']:.3f}, test accuracy "
                f"{record['test']['accuracy']:.3f}, AUC {record['test']['auc']:.3f} ({record['seconds']:.0f} s)"
            )
        self.records.setdefault(spec.experiment, []).append({"spec": spec, **record})
        return record

    def _train(self, spec: RunSpec, dataset: ImageFolder, split: Split, folder: Path) -> dict:
        started = time.perf_counter()
        model_spec = spec.model_spec()
        config = TrainConfig(
            spec.epochs, spec.setting.batch_size, spec.setting.lr, seed=spec.seed, device=self.device, progress=False
        )
        train_idx = oversample(split.train, dataset.targets, spec.seed + split.fold) if spec.oversample else split.train
        model, result, test_probabilities, test_labels = fit_split(
            dataset, model_spec, config, train_idx, split.val, split.test
        )
        val_probabilities, val_labels = predict(
            model, evaluation_set(dataset, model_spec, split.val), device=self.device
        )
        best = result.history[result.best_epoch - 1] if result.history else {}
        record = {
            "fold": split.name or split.fold,
            "best_epoch": result.best_epoch,
            "history": result.history,
            "train_images": int(len(train_idx)),
            "val": {
                **classification_metrics(val_labels, val_probabilities),
                "loss": best.get("val_loss", float("nan")),
            },
            "test": classification_metrics(test_labels, test_probabilities),
        }
        if split.key == f"fold{self.checkpoint_fold}":
            card = make_card(
                model_spec,
                dataset,
                mpp=model_mpp(dataset.root, spec.input_size),
                tile_size=spec.input_size,
                name=f"{spec.experiment}-{spec.base}-{spec.setting.name}-fold{split.fold}",
                description=f"seed-paper reproduction, {spec.experiment}, fold {split.fold}",
                training_data={"dataset": spec.data, "fold": split.fold, "init": spec.init_label},
                metrics={"validation": record["val"], "test": record["test"]},
            )
            stem = folder / f"fold{split.fold}-model"
            save_checkpoint(model.cpu(), card, stem)
            record["checkpoint"] = str(stem.relative_to(self.out))
        record["seconds"] = time.perf_counter() - started
        return record

    def cross_validate(
        self, spec: RunSpec, dataset: ImageFolder, splits: list[Split], folds: list[int] | None = None
    ) -> list[dict]:
        wanted = range(len(splits)) if folds is None else folds
        return [self.fold(spec, dataset, splits[k]) for k in wanted]


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
                raise ReproductionError(
                    f"no ImageNet weights for {base} on this machine and no fallback_init "
                    f"configured (put {imagenet_weights_file(base)} in place)"
                )
            return fallback, f"{fallback} (no ImageNet weights here)"
        return init, "ImageNet"
    return init, init


# ---------------------------------------------------------------------------------------------- stages


def _summary_row(records: list[dict]) -> dict:
    return summarize([r["test"] for r in records], METRICS)


def folds_of(dataset: ImageFolder, protocol: dict) -> list[Split]:
    """The protocol's k folds: grouped by reference crop or by field, each holding every lab if asked."""
    groups = dataset.groups if protocol["group_by"] == "reference" else dataset.sources
    labs = dataset.labs if protocol["every_lab_in_every_fold"] else None
    return five_fold_splits(dataset.targets, groups, protocol["folds"], protocol["seed"], labs=labs)


def run_cross_lab(runner: Runner, config: dict, result: dict, dataset: ImageFolder) -> dict:
    """Train on one lab, test on another, for the bases ``[cross_lab] bases`` names ("best" by default),
    each with its chosen setting. One run per ordered pair of labs; the k-fold table mixes labs."""
    protocol = protocol_of(config)
    labs = sorted(set(dataset.labs.tolist()))
    if len(labs) < 2:
        return {"labs": labs, "rows": [], "not_run": f"the data has one lab ({labs[0]}): no cross-lab control"}
    groups = dataset.groups if protocol["group_by"] == "reference" else dataset.sources
    splits = cross_lab_splits(dataset.targets, groups, dataset.labs, protocol["seed"], val_folds=protocol["folds"])
    wanted = config.get("cross_lab", {}).get("bases", ["best"])
    rows = []
    for base in dict.fromkeys(result["best_base"] if name == "best" else name for name in wanted):
        if base not in result["bases"]:
            raise ReproductionError(f"{config['_file']}: [cross_lab] base {base!r} was not run in model 1")
        spec = result["bases"][base]["spec"]
        for split in splits:
            record = runner.fold(spec, dataset, split)
            train_lab, test_lab = split.name.removeprefix("train-").split("-test-")
            rows.append(
                {
                    "base": spec.base,
                    "train_lab": train_lab,
                    "test_lab": test_lab,
                    "train_images": len(split.train),
                    "test_images": len(split.test),
                    "test": record["test"],
                }
            )
    return {"labs": labs, "rows": rows, "not_run": ""}


def run_model1(runner: Runner, config: dict) -> dict:
    """Grid search per base on the validation folds, then the chosen setting on every test fold."""
    protocol, training = protocol_of(config), training_of(config)
    data = prepare_dataset(config, runner.out, runner.log)
    dataset = ImageFolder(data)
    splits = folds_of(dataset, protocol)
    metric = protocol["selection_metric"]
    result: dict[str, Any] = {
        "dataset": str(data.relative_to(runner.out) if data.is_relative_to(runner.out) else data),
        "images": len(dataset),
        "classes": dataset.classes,
        "class_counts": np.bincount(dataset.targets, minlength=len(dataset.classes)).tolist(),
        "labs": {lab: int(n) for lab, n in zip(*np.unique(dataset.labs, return_counts=True))},
        "fields": len(set(dataset.sources.tolist())),
        "selection_metric": metric,
        "grid_folds": protocol["grid_folds"],
        "bases": {},
    }
    for base, base_config in config.get("bases", {}).items():
        # A table's name is its row; ``architecture`` lets two rows train one network differently
        # (e.g. MobileNetV2 from ImageNet and from random weights).
        architecture = base_config.get("architecture", base)
        init, label = resolve_init(base_config.get("init", training["init"]), architecture, training["fallback_init"])
        # A base may train for more epochs than the profile's default: a small one learns from random
        # weights only with more steps, and costs little.
        epochs = int(base_config.get("epochs", training["epochs"]))
        make = partial(RunSpec, "model1", architecture, init)  # one run of this base, given its setting
        specifics = (
            int(training["input_size"]),
            epochs,
            training["normalisation"],
            training["augment"],
            False,
            protocol["seed"],
            str(data),
            label,
        )
        scores = {}
        for setting in settings_from(base_config):
            folds = runner.cross_validate(make(setting, *specifics), dataset, splits, protocol["grid_folds"])
            scores[setting] = validation_score([f["val"] for f in folds], metric)
        best = choose_best(scores, metric)
        final = runner.cross_validate(make(best, *specifics), dataset, splits)
        result["bases"][base] = {
            "init": label,
            "chosen": best.as_dict(),
            "validation_score": scores[best],
            "grid": [{**s.as_dict(), f"validation_{metric}": v} for s, v in scores.items()],
            "checkpoint": next(f["checkpoint"] for f in final if "checkpoint" in f),
            "summary": _summary_row(final),
            "histories": [f["history"] for f in final],
            "spec": make(best, *specifics),
        }
    if not result["bases"]:
        raise ReproductionError(f"{config['_file']}: no [bases.NAME] tables")
    sign = -1 if metric == "loss" else 1
    result["best_base"] = max(
        result["bases"],
        key=lambda b: (
            sign * result["bases"][b]["validation_score"]
            if not np.isnan(result["bases"][b]["validation_score"])
            else -np.inf
        ),
    )
    result["cross_lab"] = run_cross_lab(runner, config, result, dataset)
    return result


def run_ablations(runner: Runner, config: dict, model1: dict, model1_config: dict) -> dict:
    """The paper's two ablations on the best model 1: larger inputs, and oversampling minority classes."""
    protocol = protocol_of(model1_config)
    base = config.get("ablations", {}).get("base", "best")
    base = model1["best_base"] if base == "best" else base
    if base not in model1["bases"]:
        raise ReproductionError(f"{config['_file']}: base {base!r} was not run in model 1")
    dataset = ImageFolder(Path(model1["bases"][base]["spec"].data))
    splits = folds_of(dataset, protocol)
    reference: RunSpec = model1["bases"][base]["spec"]
    rows = {
        "best model 1": {
            "spec": reference,
            "summary": model1["bases"][base]["summary"],
            "histories": model1["bases"][base]["histories"],
        }
    }
    for name, variant in config.get("variants", {}).items():
        spec = replace(
            reference,
            experiment="ablations",
            input_size=int(variant.get("input_size", reference.input_size)),
            oversample=bool(variant.get("oversample", False)),
        )
        folds = runner.cross_validate(spec, dataset, splits)
        rows[variant.get("label", name)] = {
            "spec": spec,
            "summary": _summary_row(folds),
            "histories": [f["history"] for f in folds],
        }
    return {"base": reference.base, "rows": rows}


def run_model2(runner: Runner, config: dict, model1: dict) -> dict:
    """Binary cytology quality from model 1 minus its last layer, with ImageNet and random controls."""
    protocol, training = protocol_of(config), training_of(config)
    data = prepare_dataset(config, runner.out, runner.log)
    dataset = ImageFolder(data)
    splits = folds_of(dataset, protocol)
    result: dict[str, Any] = {
        "dataset": str(data.relative_to(runner.out) if data.is_relative_to(runner.out) else data),
        "images": len(dataset),
        "classes": dataset.classes,
        "references": len(set(dataset.groups.tolist())),
        "fields": len(set(dataset.sources.tolist())),
        "arms": [],
        "not_run": [],
    }
    for arm in config.get("arms", []):
        base, source = arm["base"], arm["init"]
        if training.get("hyperparameters", "model1") == "model1" and base in model1["bases"]:
            setting = Setting(**model1["bases"][base]["chosen"])
        else:
            asked = training.get("hyperparameters")
            chosen: dict = asked if isinstance(asked, dict) else {}
            setting = Setting(**{**PAPER_BEST_SETTING, **chosen})
        if source == "model1":
            if base not in model1["bases"]:
                raise ReproductionError(f"{config['_file']}: arm {base} from model1, but model 1 has no {base} run")
            init = str(runner.out / model1["bases"][base]["checkpoint"])
            label = f"model 1 (trained on blood from {model1['bases'][base]['spec'].init} init)"
        elif source in INITS:
            init, label = source, {"imagenet": "ImageNet", "random": "random"}[source]
            if source == "imagenet" and not os.path.exists(imagenet_weights_file(base)):
                result["not_run"].append(
                    f"{BASE_NAMES.get(base, base)} from ImageNet: not run — torchvision's "
                    f"ImageNet weights ({Path(imagenet_weights_file(base)).name}) are not on "
                    "this machine"
                )
                continue
        else:
            raise ReproductionError(f"{config['_file']}: arm init must be model1, imagenet or random, not {source!r}")
        spec = RunSpec(
            "model2",
            base,
            init,
            setting,
            int(training["input_size"]),
            int(training["epochs"]),
            training["normalisation"],
            training["augment"],
            False,
            protocol["seed"],
            str(data),
            {"model1": "model1", "imagenet": "imagenet", "random": "random"}[source],
        )
        folds = runner.cross_validate(spec, dataset, splits)
        result["arms"].append(
            {
                "base": base,
                "source": source,
                "label": label,
                "setting": setting.as_dict(),
                "summary": _summary_row(folds),
                "histories": [f["history"] for f in folds],
            }
        )
    return result


# ---------------------------------------------------------------------------------------------- the whole


def reproduce(
    profile: str | Path,
    out: Path,
    device: str = "auto",
    stages: tuple[str, ...] = EXPERIMENTS,
    log: Callable[[str], None] = print,
    command: str = "",
    data_root: Path | None = None,
    bases: tuple[str, ...] = (),
) -> dict[str, Path]:
    """Run the profile's experiments (model 1 always, as the others build on it) and write the results.

    ``data_root`` holds the catalogued sources that ``[data] groups`` name (e.g. the real smear fields).
    ``bases`` keeps only those ``[bases.NAME]`` tables of model 1 (all when empty)."""
    started = time.perf_counter()
    configs = load_profile(profile, data_root)
    if bases:
        known = configs["model1"].get("bases", {})
        unknown = [name for name in bases if name not in known]
        if unknown:
            raise ReproductionError(
                f"{configs['model1']['_file']}: no [bases.{unknown[0]}] table; known: {', '.join(known)}"
            )
        configs["model1"]["bases"] = {name: known[name] for name in bases}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config").mkdir(exist_ok=True)
    for name in EXPERIMENTS:
        shutil.copyfile(configs[name]["_file"], out / "config" / f"{name}.toml")
    runner = Runner(out, device, int(configs["model1"].get("protocol", {}).get("checkpoint_fold", 0)), log)
    model1 = run_model1(runner, configs["model1"])
    ablations = (
        run_ablations(runner, configs["ablations"], model1, configs["model1"]) if "ablations" in stages else None
    )
    model2 = run_model2(runner, configs["model2"], model1) if "model2" in stages else None
    command = command or f"reproduce({str(profile)!r}, {str(out)!r})"
    return write_results(
        out, Path(profile).name, model1, ablations, model2, configs, runner, time.perf_counter() - started, command
    )
