"""Quality models: architectures, checkpoints with model cards, and the shipped pretrained models.

Names are imported on first use: the card and the shipped models' files need no PyTorch, and
mapping on a CPU must not pay for importing it (nor need it installed: ``extras.py``).
"""

from importlib import import_module

from slideiqa.extras import is_missing_extra, missing_torch

_WHERE = {
    "ModelCard": "card",
    "ModelError": "card",
    "load_card": "card",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ARCHITECTURES": "registry",
    "QualityNet": "registry",
    "build_model": "registry",
    "PRETRAINED": "zoo",
    "resolve_model": "zoo",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'slideiqa.models' has no attribute {name!r}")
    try:
        module = import_module(f".{_WHERE[name]}", __name__)
    except ModuleNotFoundError as error:  # checkpoints and architectures are PyTorch's
        if not is_missing_extra(error):
            raise
        raise missing_torch(f"slideiqa.models.{name}") from None
    return getattr(module, name)
