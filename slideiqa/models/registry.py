"""Architectures a quality model can have, all with the paper's head (dropout + dense).

The seed paper fine-tunes VGG16, MobileNet and ResNet50 bases with a new classification head. Every
architecture here is split the same way — a convolutional ``backbone`` that maps an image batch to
feature maps, global pooling, and ``head = Sequential(Dropout, Linear)`` — so that transfer learning
is one rule for all: keep everything, discard ``head.1`` (the last layer).

``iqanet`` is slideiqa's own fast network for whole-slide CPU inference: five strided 3×3
convolutions. Image quality (blur, noise, compression, exposure) is a low-level property, so a
shallow network that sees full-resolution pixels is enough, and it runs at thousands of tiles per
second on two CPU cores where VGG16 manages three.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from slideiqa.models.card import ModelError

#: Name of the module that transfer learning replaces.
LAST_LAYER_PREFIX = "head.1."
#: The dense cell head's tensors, trained after (and apart from) the rest.
CELL_HEAD_PREFIX = "cell_head."


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _iqanet_backbone(widths: tuple[int, ...]) -> nn.Module:
    layers, channels = [], 3
    for width in widths:
        layers.append(_conv_bn_relu(channels, width))
        channels = width
    return nn.Sequential(*layers)


def cell_head(num_features: int, num_classes: int, hidden: int) -> nn.Sequential:
    """Class logits for every cell of the backbone's feature map (a 32 px cell of a 224 px iqanet
    tile): a 3×3 convolution, so that a cell is judged with its eight neighbours beside it (a cell of
    featureless tissue says little alone), then a 1×1 one; 74 000 multiply-adds per cell, a few per
    cent of the backbone's. Measured on held-out files against two 1×1 convolutions: mean IoU per
    family 0.61–0.86 against 0.56–0.82, clean cells flagged 2.2 % against 6.2 % (docs/history.md)."""
    return nn.Sequential(
        nn.Conv2d(num_features, hidden, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(hidden, num_classes, 1)
    )


class QualityNet(nn.Module):
    """Backbone → global mean and max pooling → dropout → dense; optionally a dense ``cell_head``.

    Max pooling beside the usual mean lets a small defect (a noisy corner, a bubble edge) move the
    prediction; with mean pooling alone it is averaged away over the tile. The cell head reads the
    same feature map before pooling, so the map says *where* in a tile at almost no extra cost; it is
    trained after the rest, which it leaves unchanged (``slideiqa_training.cell_head``).
    """

    def __init__(
        self, backbone: nn.Module, num_features: int, num_classes: int, dropout: float, cell_hidden: int = 0
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * num_features, num_classes))
        self.cell_head = cell_head(num_features, num_classes, cell_hidden) if cell_hidden else None

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.backbone(x))

    def forward_with_cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tile logits (N, classes), cell logits (N, classes, rows, cols)) from one backbone pass."""
        if self.cell_head is None:
            raise ModelError("this model has no cell head")
        features = self.backbone(x)
        return self.pool(features), self.cell_head(features)


@dataclass(frozen=True)
class Architecture:
    """A base network: how to build it and how to cut its convolutional backbone out.

    ``torchvision_name`` is empty for slideiqa's own networks; for torchvision's, the backbone is
    cut from the full torchvision model so that its ImageNet state dict loads with strict key checks.
    torchvision is imported only when such a model is built: its import pulls in ``torch._dynamo``
    and Triton, which iqanet never needs (and which crash next to Mesa's LLVM under napari).
    """

    num_features: int
    backbone_of: Callable[[Any], nn.Module]  # the torchvision model's trunk; None for a network of our own
    torchvision_name: str = ""
    imagenet_weights: str | None = None

    def torchvision_model(self) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, self.torchvision_name)(weights=None)

    def build_backbone(self) -> nn.Module:
        if not self.torchvision_name:
            return self.backbone_of(None)
        return self.backbone_of(self.torchvision_model())


def _features(model: nn.Module) -> nn.Module:
    return cast(nn.Module, model.features)


def _resnet_trunk(model: nn.Module) -> nn.Module:
    # Everything but the global pool and the fully connected layer.
    return nn.Sequential(*list(model.children())[:-2])


ARCHITECTURES: dict[str, Architecture] = {
    "iqanet": Architecture(128, lambda _: _iqanet_backbone((16, 32, 64, 96, 128))),
    "mobilenet_v3_small": Architecture(
        576, _features, "mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    ),
    "mobilenet_v2": Architecture(1280, _features, "mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1"),
    "vgg16": Architecture(512, _features, "vgg16", "VGG16_Weights.IMAGENET1K_V1"),
    "resnet50": Architecture(2048, _resnet_trunk, "resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
}


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def build_model(name: str, num_classes: int, dropout: float = 0.2, cell_hidden: int = 0) -> QualityNet:
    """A randomly initialised quality network of architecture ``name`` (with a cell head of
    ``cell_hidden`` hidden channels, if not 0)."""
    arch = architecture(name)
    return QualityNet(arch.build_backbone(), arch.num_features, num_classes, dropout, cell_hidden)


def imagenet_weights_file(name: str) -> str:
    """Where torchvision looks for ``name``'s ImageNet weights (its hub cache); no download here."""
    weights_name = architecture(name).imagenet_weights
    if weights_name is None:
        raise ModelError(f"architecture {name!r} has no ImageNet weights; use random initialisation")
    import torchvision

    url = torchvision.models.get_weight(weights_name).url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def load_imagenet_backbone(model: QualityNet, name: str) -> None:
    """Initialise ``model.backbone`` from torchvision's ImageNet weights, offline.

    torchvision would download a missing file; slideiqa runs where labs have no internet, so the file
    must already sit in the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and its absence is an
    error that says where to put it. The file is read with ``weights_only=True``: no unpickling of code.
    """
    path = imagenet_weights_file(name)
    if not os.path.exists(path):
        raise ModelError(
            f"ImageNet weights for {name} not found: copy {os.path.basename(path)} to {os.path.dirname(path)} "
            "(set TORCH_HOME to use another cache), or initialise at random"
        )
    import torchvision

    arch = architecture(name)
    state = torchvision.models.get_weight(arch.imagenet_weights).get_state_dict(progress=False, weights_only=True)
    reference = arch.torchvision_model()
    reference.load_state_dict(state)
    model.backbone.load_state_dict(arch.backbone_of(reference).state_dict())
