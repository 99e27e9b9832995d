"""The paper's preprocessing and augmentation, as torchvision transforms on uint8 HWC arrays.

Preprocessing: resize to the input size, scale 0–255 to 0–1, then the model card's normalisation
(identity for the paper, ImageNet statistics for ImageNet-initialised bases if asked).

Augmentation profiles:
* ``paper``    – rotation within 90°, 10 % width/height shift, horizontal flip, 10 % zoom (the seed's).
* ``lossless`` – flips and quarter turns only. Rotation and zoom resample the image, and resampling
  blurs; for a model whose job is to detect blur that augmentation mislabels sharp images, so the
  shipped quality models use this profile.
* ``stain``    – ``lossless`` plus stain jitter in optical-density space (``RandomStainJitter``):
  staining varies between labs and batches far more than five training sources show, and a
  quality model must not take an unfamiliar stain for a defect.
* ``none``     – evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from skimage.color import hed_from_rgb, rgb_from_hed
from torchvision.transforms import v2

AUGMENTATIONS = ("paper", "lossless", "stain", "none")


class RandomStainJitter(torch.nn.Module):
    """Scale and shift the haematoxylin, eosin and DAB densities of a 0–1 float image (or a batch,
    each image with its own draw) by random factors in ``1 ± sigma`` and offsets in ``± sigma``
    (the HED augmentation of Tellez et al., 2018, which makes tissue classifiers robust to stain
    differences between centres). Offsets are in natural-log optical density, about 14 times the
    units of ``skimage.color.rgb2hed`` (which divides by −ln 10⁻⁶), so σ = 0.05 here is a mild jitter.

    The image is taken to optical density (OD = −ln I, with I = (255·x + 1) / 256 so that white
    glass stays finite), unmixed with scikit-image's Ruifrok–Johnston HED matrix, perturbed, and
    mixed back. Without the ``max(0, ·)`` clipping of ``skimage.color.rgb2hed`` the round trip is
    exact, so ``sigma = 0`` returns the image unchanged; the jitter maps each pixel's colour alone, so
    it never blurs or resamples.
    """

    def __init__(self, sigma: float = 0.05) -> None:
        super().__init__()
        self.sigma = sigma
        self.register_buffer("to_stains", torch.tensor(hed_from_rgb, dtype=torch.float32))
        self.register_buffer("to_rgb", torch.tensor(rgb_from_hed, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        shape = (*image.shape[:-3], 3, 1, 1)
        scale = 1.0 + (torch.rand(shape, device=image.device, dtype=image.dtype) * 2.0 - 1.0) * self.sigma
        shift = (torch.rand(shape, device=image.device, dtype=image.dtype) * 2.0 - 1.0) * self.sigma
        return self.jitter(image, scale, shift)

    def jitter(self, image: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """The jitter with given per-stain ``scale`` and ``shift`` (shape ``(..., 3, 1, 1)``)."""
        intensity = (image * 255.0 + 1.0) / 256.0
        density = -torch.log(intensity)
        stains = torch.einsum("...chw,cs->...shw", density, self.to_stains.to(image.dtype))
        density = torch.einsum("...shw,sc->...chw", stains * scale + shift, self.to_rgb.to(image.dtype))
        return ((torch.exp(-density) * 256.0 - 1.0) / 255.0).clamp(0.0, 1.0)


class RandomQuarterTurn(torch.nn.Module):
    """Rotate by a random multiple of 90° (exact: no interpolation)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.rot90(image, int(torch.randint(4, ())), dims=(-2, -1))


def build_transform(input_size: int, mean: Sequence[float], std: Sequence[float], augment: str = "none") -> v2.Compose:
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; known: {', '.join(AUGMENTATIONS)}")
    steps: list[torch.nn.Module] = [v2.ToImage(), v2.Resize((input_size, input_size), antialias=True)]
    if augment == "paper":
        steps += [
            v2.RandomAffine(degrees=90, translate=(0.1, 0.1), scale=(0.9, 1.1), fill=255),
            v2.RandomHorizontalFlip(),
        ]
    elif augment in ("lossless", "stain"):
        steps += [v2.RandomHorizontalFlip(), RandomQuarterTurn()]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if augment == "stain":
        steps.append(RandomStainJitter())
    steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)
