"""Experiments built from the pieces: k-fold cross-validation, leave-one-source-out, fit-and-save."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from slideiqa.models.checkpoint import ModelCard, checkpoint_paths, save_checkpoint
from slideiqa.models.export import write_graph
from slideiqa.models.registry import QualityNet

from .datasets import ImageFolder
from .distillation import DistillationLoss, WithTeacher, teacher_logits
from .metrics import classification_metrics, good_vs_bad_auc
from .splits import five_fold_splits
from .trainer import IMAGENET_MEAN, IMAGENET_STD, TrainConfig, TransformedSubset, initialise_model, predict, train
from .transforms import build_transform

UNIT_MEAN, UNIT_STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
NORMALISATIONS = ("unit", "imagenet")


@dataclass
class ModelSpec:
    """What to train: base, initialisation, head dropout, input size, normalisation, augmentation.

    ``normalisation`` is ``unit`` (the paper's plain 0–1 scaling) or ``imagenet`` (the statistics
    ImageNet-pretrained torchvision bases were trained with).
    """

    architecture: str = "iqanet"
    init: str = "random"
    dropout: float = 0.2
    input_size: int = 224
    normalisation: str = "unit"
    augment: str = "paper"

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (IMAGENET_MEAN, IMAGENET_STD) if self.normalisation == "imagenet" else (UNIT_MEAN, UNIT_STD)


@dataclass
class Teaching:
    """Train as a student of ``teacher`` (a checkpoint): see ``distillation.py``."""

    teacher: str | Path
    weight: float = 0.7
    temperature: float = 4.0


def _subsets(dataset: ImageFolder, spec: ModelSpec, train_idx, val_idx, test_idx):
    mean, std = spec.mean_std
    augmented = build_transform(spec.input_size, mean, std, spec.augment)
    plain = build_transform(spec.input_size, mean, std, "none")
    return (
        TransformedSubset(dataset, train_idx, augmented),
        TransformedSubset(dataset, val_idx, plain),
        TransformedSubset(dataset, test_idx, plain),
    )


def evaluation_set(dataset: ImageFolder, spec: ModelSpec, indices) -> TransformedSubset:
    """Images of ``dataset`` as a model of ``spec`` is evaluated on them (no augmentation)."""
    mean, std = spec.mean_std
    return TransformedSubset(dataset, indices, build_transform(spec.input_size, mean, std, "none"))


def fit_split(
    dataset: ImageFolder,
    spec: ModelSpec,
    config: TrainConfig,
    train_idx,
    val_idx,
    test_idx,
    teaching: Teaching | None = None,
):
    """Train on one split; returns (model, history result, test probabilities, test labels)."""
    train_set, val_set, test_set = _subsets(dataset, spec, train_idx, val_idx, test_idx)
    model = initialise_model(spec.architecture, len(dataset.classes), spec.dropout, spec.init)
    criterion = None
    if teaching is not None:
        train_set = WithTeacher(train_set, teacher_logits(teaching.teacher, dataset, train_idx, device=config.device))
        criterion = DistillationLoss(teaching.weight, teaching.temperature, config.label_smoothing)
    result = train(model, train_set, val_set, config, criterion)
    probabilities, labels = predict(model, test_set, device=config.device)
    return model, result, probabilities, labels


def cross_validate(dataset: ImageFolder, spec: ModelSpec, config: TrainConfig, n_folds: int = 5) -> list[dict]:
    """The paper's protocol: one record of test metrics (plus training history) per fold."""
    records = []
    for split in five_fold_splits(dataset.targets, dataset.groups, n_folds, config.seed):
        _, result, probabilities, labels = fit_split(dataset, spec, config, split.train, split.val, split.test)
        records.append(
            {
                "fold": split.fold,
                **classification_metrics(labels, probabilities),
                "best_epoch": result.best_epoch,
                "history": result.history,
            }
        )
    return records


def source_split(dataset: ImageFolder, held_out: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) indices with every image of source ``held_out`` in test.

    Validation (for choosing the epoch) is a grouped fifth of the other sources, never the held-out
    one; a student and its teacher get the same split from the same seed.
    """
    sources = dataset.sources
    test_idx = np.flatnonzero(sources == held_out)
    rest = np.flatnonzero(sources != held_out)
    inner = five_fold_splits(dataset.targets[rest], dataset.groups[rest], 5, seed)[0]
    return rest[np.concatenate([inner.train, inner.test])], rest[inner.val], test_idx


def train_fold_teacher(
    dataset: ImageFolder, held_out: str, spec: ModelSpec, config: TrainConfig, path: str | Path, mpp: float = 0.5
) -> Path:
    """A teacher for the student that is tested on ``held_out``: it must not have seen that source
    either, or the student's held-out score would carry the teacher's view of it. Kept at ``path``
    and reused when it is already there (a teacher takes minutes to train on a CPU)."""
    path = Path(path)
    if checkpoint_paths(path)[0].exists():
        return path
    train_idx, val_idx, _ = source_split(dataset, held_out, config.seed)
    model, result, _, _ = fit_split(dataset, spec, config, train_idx, val_idx, val_idx)
    card = make_card(
        spec,
        dataset,
        mpp=mpp,
        tile_size=spec.input_size,
        name=path.name,
        description=f"distillation teacher trained without {held_out}",
        training_data={"held_out": held_out, "best_epoch": result.best_epoch},
    )
    save_checkpoint(model, card, path)
    return path


def leave_one_source_out(
    dataset: ImageFolder,
    spec: ModelSpec,
    config: TrainConfig,
    good_class: str = "good",
    on_result: Callable[[dict], None] | None = None,
    teaching_for: Callable[[str], Teaching] | None = None,
    predictions_dir: Path | None = None,
) -> list[dict]:
    """Generalisation to an unseen image: train on every other source, test on the held-out one
    (split by ``source_split``). ``teaching_for(held_out)`` gives a student its teacher, which must not have
    seen the held-out source either. ``predictions_dir`` keeps each fold's test probabilities and
    labels (``<held out>.npz``) for analysis beyond the summary metrics.
    """
    good_index = dataset.classes.index(good_class)
    records = []
    for held_out in sorted(set(dataset.sources)):
        train_idx, val_idx, test_idx = source_split(dataset, held_out, config.seed)
        teaching = teaching_for(held_out) if teaching_for is not None else None
        _, result, probabilities, labels = fit_split(dataset, spec, config, train_idx, val_idx, test_idx, teaching)
        metrics = classification_metrics(labels, probabilities)
        if predictions_dir is not None:
            Path(predictions_dir).mkdir(parents=True, exist_ok=True)
            np.savez(
                Path(predictions_dir) / f"{held_out}.npz", probabilities=probabilities, labels=labels, indices=test_idx
            )
        records.append(
            {
                "held_out": held_out,
                "images": int(len(test_idx)),
                "auc_good_vs_bad": good_vs_bad_auc(labels, probabilities, good_index),
                "accuracy_good_vs_bad": float(
                    np.mean((labels == good_index) == (probabilities.argmax(1) == good_index))
                ),
                "accuracy_classes": metrics["accuracy"],
                "best_epoch": result.best_epoch,
                # rows: true class, columns: predicted class, in dataset.classes order
                "confusion": confusion_matrix(
                    labels, probabilities.argmax(1), labels=range(len(dataset.classes))
                ).tolist(),
            }
        )
        if on_result is not None:
            on_result(records[-1])
    return records


def make_card(
    spec: ModelSpec,
    dataset: ImageFolder,
    *,
    mpp: float,
    tile_size: int,
    name: str = "",
    description: str = "",
    training_data: dict | None = None,
    metrics: dict | None = None,
) -> ModelCard:
    mean, std = spec.mean_std
    return ModelCard(
        architecture=spec.architecture,
        classes=list(dataset.classes),
        input_size=spec.input_size,
        mpp=mpp,
        tile_size=tile_size,
        mean=list(mean),
        std=list(std),
        dropout=spec.dropout,
        good_class="good" if "good" in dataset.classes else dataset.classes[-1],
        name=name,
        description=description,
        training_data=training_data or {},
        metrics=metrics or {},
    )


def fit_all_and_save(
    dataset: ImageFolder,
    spec: ModelSpec,
    config: TrainConfig,
    out: str | Path,
    card: ModelCard,
    teaching: Teaching | None = None,
) -> tuple[QualityNet, dict]:
    """Train on 80 % of the data (grouped), choose the epoch on the other 20 %, save with ``card``."""
    split = five_fold_splits(dataset.targets, dataset.groups, 5, config.seed)[0]
    train_idx = np.concatenate([split.train, split.test])
    model, result, probabilities, labels = fit_split(dataset, spec, config, train_idx, split.val, split.val, teaching)
    card.metrics.setdefault("validation", classification_metrics(labels, probabilities))
    card.training_data.setdefault("best_epoch", result.best_epoch)
    save_checkpoint(model, card, out)
    write_graph(out)  # so that mapping with it on a CPU needs no PyTorch
    return model, {"history": result.history, "validation": card.metrics["validation"]}
