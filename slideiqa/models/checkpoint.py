"""Checkpoints: a safetensors file of tensors plus a JSON model card that says what they mean.

The card travels with every map the model makes, so it records everything needed to use the model
correctly on a slide: the architecture, the class names in output order, the input size and
normalisation, and the physical pixel size and tile size the model was trained for. Loading never
unpickles: tensors come from safetensors, metadata from JSON, and the card is checked against the
tensors (SHA-256 and strict key/shape match) so a card paired with the wrong file is an error, not a
silently wrong model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .registry import ModelError, QualityNet, build_model

CARD_SUFFIX = ".json"
TENSORS_SUFFIX = ".safetensors"


@dataclass
class ModelCard:
    """What a quality model is and how it must be fed. Scores are P(``good_class``)."""

    architecture: str
    classes: list[str]
    input_size: int = 224
    mpp: float = 0.5
    tile_size: int = 224
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    dropout: float = 0.2
    good_class: str = "good"
    name: str = ""
    description: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""

    @property
    def good_index(self) -> int:
        return self.classes.index(self.good_class)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> "ModelCard":
        known = set(cls.__dataclass_fields__)
        missing = {"architecture", "classes"} - set(data)
        if missing:
            raise ModelError(f"{source}: missing field(s) {', '.join(sorted(missing))}")
        card = cls(**{key: value for key, value in data.items() if key in known})
        if card.good_class not in card.classes:
            raise ModelError(f"{source}: good_class {card.good_class!r} is not one of the classes {card.classes}")
        return card


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensors, card) for a checkpoint given by either file or by their common stem."""
    path = Path(path)
    if path.suffix in (CARD_SUFFIX, TENSORS_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + TENSORS_SUFFIX), path.with_name(path.name + CARD_SUFFIX)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(model: torch.nn.Module, card: ModelCard, path: str | Path) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns the tensors path."""
    tensors_path, card_path = checkpoint_paths(path)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(tensors_path), metadata={"architecture": card.architecture})
    card.weights_sha256 = _sha256(tensors_path)
    card_path.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return tensors_path


def load_card(path: str | Path) -> ModelCard:
    _, card_path = checkpoint_paths(path)
    if not card_path.exists():
        raise ModelError(f"{card_path}: model card not found")
    try:
        data = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{card_path}: not a JSON model card ({error})") from None
    return ModelCard.from_dict(data, str(card_path))


def load_state(path: str | Path, card: ModelCard) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, after checking they are the ones the card describes."""
    tensors_path, card_path = checkpoint_paths(path)
    if not tensors_path.exists():
        raise ModelError(f"{tensors_path}: checkpoint tensors not found")
    actual = _sha256(tensors_path)
    if card.weights_sha256 and card.weights_sha256 != actual:
        raise ModelError(f"{card_path}: card does not match {tensors_path.name} (SHA-256 differs)")
    # A hand-written card without a checksum still identifies its tensors from here on (resume, caches).
    card.weights_sha256 = actual
    try:
        return load_file(str(tensors_path))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{tensors_path}: not a safetensors file ({error})") from None


def load_checkpoint(path: str | Path) -> tuple[QualityNet, ModelCard]:
    """Build the card's architecture and load its tensors strictly; returns (model in eval mode, card)."""
    card = load_card(path)
    state = load_state(path, card)
    model = build_model(card.architecture, len(card.classes), card.dropout)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        reason = first[1].strip() if len(first) > 1 else first[0]
        raise ModelError(
            f"{checkpoint_paths(path)[1]}: card ({card.architecture}, {len(card.classes)} classes) "
            f"does not match the tensors: {reason}"
        ) from None
    return model.eval(), card


def transfer_state(source: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint except those of the last layer (``prefix``)."""
    return {key: value for key, value in source.items() if not key.startswith(prefix)}
