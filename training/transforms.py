"""The paper's preprocessing and augmentation, as torchvision transforms on uint8 HWC arrays.

Preprocessing: resize to the input size, scale 0–255 to 0–1, then the model card's normalisation
(identity for the paper, ImageNet statistics for ImageNet-initialised bases if asked).

Augmentation, three profiles:
* ``paper``    – rotation within 90°, 10 % width/height shift, horizontal flip, 10 % zoom (the seed's).
* ``lossless`` – flips and quarter turns only. Rotation and zoom resample the image, and resampling
  blurs; for a model whose job is to detect blur that augmentation mislabels sharp images, so the
  shipped quality models use this profile.
* ``none``     – evaluation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2

AUGMENTATIONS = ("paper", "lossless", "none")


class RandomQuarterTurn(torch.nn.Module):
    """Rotate by a random multiple of 90° (exact: no interpolation)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.rot90(image, int(torch.randint(4, ())), dims=(-2, -1))


def build_transform(
    input_size: int, mean: Sequence[float], std: Sequence[float], augment: str = "none"
) -> v2.Compose:
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; known: {', '.join(AUGMENTATIONS)}")
    steps: list[torch.nn.Module] = [v2.ToImage(), v2.Resize((input_size, input_size), antialias=True)]
    if augment == "paper":
        steps += [
            v2.RandomAffine(degrees=90, translate=(0.1, 0.1), scale=(0.9, 1.1), fill=255),
            v2.RandomHorizontalFlip(),
        ]
    elif augment == "lossless":
        steps += [v2.RandomHorizontalFlip(), RandomQuarterTurn()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)
