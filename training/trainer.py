"""Fitting a quality model: initialisation (ImageNet, random, or transfer), training, prediction."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from slideiqa.errors import SlideIQAError
from slideiqa.models.checkpoint import load_card, load_state, transfer_state
from slideiqa.models.predictor import choose_device
from slideiqa.models.registry import LAST_LAYER_PREFIX, ModelError, QualityNet, build_model, load_imagenet_backbone

SCHEDULES = ("constant", "cosine")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def auto_device(device: str = "auto") -> torch.device:
    """The torch device for ``device``, chosen as inference chooses it (``auto``: CUDA when there is a
    GPU; a missing GPU asked for by name is a one-line error)."""
    return torch.device(choose_device(device))


def initialise_model(architecture: str, num_classes: int, dropout: float, init: str) -> QualityNet:
    """A model initialised from ``imagenet``, ``random``, or a slideiqa checkpoint path (transfer).

    Transfer follows the seed's model 2: every tensor of the checkpoint is loaded except the last
    layer's, which is replaced by a freshly initialised layer for the new classes.
    """
    model = build_model(architecture, num_classes, dropout)
    if init == "random":
        return model
    if init == "imagenet":
        load_imagenet_backbone(model, architecture)
        return model
    card = load_card(init)
    if card.architecture != architecture:
        raise ModelError(f"{init}: checkpoint is a {card.architecture}, cannot initialise a {architecture}")
    missing, unexpected = model.load_state_dict(transfer_state(load_state(init, card), LAST_LAYER_PREFIX), strict=False)
    if unexpected or any(not key.startswith(LAST_LAYER_PREFIX) for key in missing):
        raise ModelError(
            f"{init}: checkpoint tensors do not fit {architecture} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    class_weights: list[float] | None = None
    #: Share ε of each training target replaced by the uniform distribution over all classes (the true
    #: class keeps 1 − ε + ε/C): softer targets keep the net from becoming certain on cues particular
    #: to its few training sources. Validation, which picks the epoch, stays unsmoothed.
    label_smoothing: float = 0.0
    schedule: str = "constant"  # the paper's; "cosine" anneals the learning rate to zero
    progress: bool = True


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0


def _loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=generator)


def _to_device(target, device):
    if isinstance(target, (tuple, list)):
        return tuple(_to_device(part, device) for part in target)
    return target.to(device)


def _run_epoch(model, loader, criterion, device, optimizer=None, desc: str = "", progress: bool = True):
    """One pass over ``loader``; a target may be a label or a tuple whose first item is the label
    (the rest is for the criterion, e.g. a teacher's logits)."""
    training = optimizer is not None
    model.train(training)
    total_loss, correct, count = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for images, target in tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch"):
            images, target = images.to(device), _to_device(target, device)
            labels = target[0] if isinstance(target, tuple) else target
            logits = model(images)
            loss = criterion(logits, target)
            if training:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += float(loss.detach()) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            count += len(labels)
    return total_loss / count, correct / count


def train(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    config: TrainConfig,
    criterion: nn.Module | None = None,
) -> TrainResult:
    """Adam on cross-entropy (or ``criterion``, e.g. a distillation loss); keeps the weights of the
    epoch with the lowest validation cross-entropy."""
    if config.schedule not in SCHEDULES:
        raise SlideIQAError(f"unknown learning-rate schedule {config.schedule!r}; use {' or '.join(SCHEDULES)}")
    seed_everything(config.seed)
    device = auto_device(config.device)
    model.to(device)
    weights = torch.tensor(config.class_weights, dtype=torch.float32, device=device) if config.class_weights else None
    val_criterion = nn.CrossEntropyLoss(weight=weights)
    if criterion is None:
        criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    criterion = criterion.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs) if config.schedule == "cosine" else None
    )
    train_loader = _loader(train_set, config.batch_size, True, config.num_workers, config.seed)
    val_loader = _loader(val_set, config.batch_size, False, config.num_workers, config.seed) if val_set else None
    result, best_loss, best_state = TrainResult(), float("inf"), None
    for epoch in range(1, config.epochs + 1):
        loss, accuracy = _run_epoch(
            model, train_loader, criterion, device, optimizer, f"epoch {epoch}", config.progress
        )
        if scheduler is not None:
            scheduler.step()
        record = {"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy}
        if val_loader is not None:
            val_loss, val_accuracy = _run_epoch(
                model, val_loader, val_criterion, device, None, "validate", config.progress
            )
            record |= {"val_loss": val_loss, "val_accuracy": val_accuracy}
            if val_loss < best_loss:
                best_loss, best_state, result.best_epoch = val_loss, copy.deepcopy(model.state_dict()), epoch
        result.history.append(record)
        if config.progress:
            tqdm.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = config.epochs
    return result


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, batch_size: int = 64, device: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, C), labels (N,)) of ``model`` on ``dataset``."""
    torch_device = auto_device(device)
    model.to(torch_device).eval()
    probabilities, labels = [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size):
        probabilities.append(torch.softmax(model(images.to(torch_device)), dim=1).cpu().numpy())
        labels.append(targets.numpy())
    return np.concatenate(probabilities), np.concatenate(labels)


class TransformedSubset(Dataset):
    """Some images of an ImageFolder seen through their own transform (train and test differ)."""

    def __init__(self, dataset, indices, transform) -> None:
        self.dataset, self.indices, self.transform = dataset, list(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        real = self.indices[index]
        return self.transform(self.dataset.load(real)), self.dataset.samples[real].label
