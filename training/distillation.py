"""Knowledge distillation: a fast student learns from an accurate teacher's predictions.

Why: the ImageNet-initialised MobileNetV2 generalises to sources it never saw better than ``iqanet``
trained from scratch — its features were learnt from a million varied photographs, ours from five
images — but it is seven times slower. A student trained on the teacher's softened class
probabilities, not only on the hard labels, inherits some of how the teacher ranks images: which
defocused crops look nearly sharp, which pale but sharp crops are still good.

The teacher's logits are computed once per training image, on the un-augmented image, and reused for
every epoch: the student's augmentation (flips, quarter turns) does not change a tile's quality, and
running a MobileNetV2 beside every training step would make training several times slower on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from slideiqa.errors import SlideIQAError
from slideiqa.models.checkpoint import load_checkpoint

from .datasets import ImageFolder
from .trainer import TransformedSubset, auto_device
from .transforms import build_transform


class DistillationError(SlideIQAError):
    """A teacher cannot teach this dataset (wrong classes, unreadable checkpoint)."""


@torch.no_grad()
def teacher_logits(
    checkpoint: str | Path, dataset: ImageFolder, indices, batch_size: int = 64, device: str = "auto"
) -> np.ndarray:
    """The teacher's logits (N, C) on images ``indices`` of ``dataset``, preprocessed as its card says."""
    model, card = load_checkpoint(checkpoint)
    if list(card.classes) != list(dataset.classes):
        raise DistillationError(
            f"{checkpoint}: the teacher's classes {card.classes} differ from the dataset's {dataset.classes}"
        )
    torch_device = auto_device(device)
    model = model.to(torch_device).to(memory_format=torch.channels_last).eval()
    images = TransformedSubset(dataset, indices, build_transform(card.input_size, card.mean, card.std, "none"))
    logits = [
        model(batch.to(torch_device, memory_format=torch.channels_last)).cpu()
        for batch, _ in DataLoader(images, batch_size=batch_size)
    ]
    return torch.cat(logits).numpy() if logits else np.zeros((0, len(card.classes)), np.float32)


class WithTeacher(Dataset):
    """Training images whose target is (hard label, teacher logits) instead of the label alone."""

    def __init__(self, images: TransformedSubset, logits: np.ndarray) -> None:
        if len(images) != len(logits):
            raise DistillationError(f"{len(images)} images but {len(logits)} teacher predictions")
        self.images, self.logits = images, torch.as_tensor(logits, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, label = self.images[index]
        return image, (label, self.logits[index])


class DistillationLoss(nn.Module):
    """Hinton et al.'s loss: ``weight`` · T² · KL(teacher_T ‖ student_T) + (1 − weight) · cross-entropy.

    The temperature T softens both distributions so that the teacher's small probabilities (how
    much a motion-blurred crop also looks defocused) carry weight; T² keeps the gradient scale of
    the soft term independent of T. ``label_smoothing`` applies to the cross-entropy term, as it
    would without a teacher.
    """

    def __init__(self, weight: float = 0.7, temperature: float = 4.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0 or temperature <= 0:
            raise DistillationError(
                f"distillation weight must lie in [0, 1] and temperature be > 0, not {weight} and {temperature}"
            )
        self.weight, self.temperature = weight, temperature
        self.cross_entropy = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        labels, teacher = target
        t = self.temperature
        soft = nn.functional.kl_div(
            torch.log_softmax(logits / t, dim=1),
            torch.log_softmax(teacher / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return self.weight * t * t * soft + (1.0 - self.weight) * self.cross_entropy(logits, labels)
