"""Quality models: architectures, checkpoints with model cards, and the shipped pretrained models."""

from .checkpoint import ModelCard, load_checkpoint, save_checkpoint
from .registry import ARCHITECTURES, ModelError, QualityNet, build_model
from .zoo import PRETRAINED, resolve_model

__all__ = [
    "ARCHITECTURES",
    "ModelCard",
    "ModelError",
    "PRETRAINED",
    "QualityNet",
    "build_model",
    "load_checkpoint",
    "resolve_model",
    "save_checkpoint",
]
