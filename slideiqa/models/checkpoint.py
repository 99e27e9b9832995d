"""Checkpoints: a safetensors file of tensors plus a JSON model card that says what they mean.

The card travels with every map the model makes, so it records everything needed to use the model
correctly on a slide: the architecture, the class names in output order, the input size and
normalisation, and the physical pixel size and tile size the model was trained for. Loading never
unpickles: tensors come from safetensors, metadata from JSON, and the card is checked against the
tensors (SHA-256 and strict key/shape match) so a card paired with the wrong file is an error, not a
silently wrong model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from slideiqa.models.card import ModelCard, ModelError, checkpoint_paths, file_sha256, load_card, write_card
from slideiqa.models.registry import CELL_HEAD_PREFIX, QualityNet, build_model

__all__ = [
    "ModelCard",
    "ModelError",
    "checkpoint_paths",
    "load_card",
    "load_checkpoint",
    "load_state",
    "save_checkpoint",
    "transfer_state",
]


def save_checkpoint(model: torch.nn.Module, card: ModelCard, path: str | Path) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns the tensors path."""
    tensors_path, _ = checkpoint_paths(path)
    tensors_path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(tensors_path), metadata={"architecture": card.architecture})
    card.weights_sha256 = file_sha256(tensors_path)
    card.graph_sha256 = ""  # new weights: any graph exported from the old ones no longer belongs to them
    write_card(card, path)
    return tensors_path


def load_state(path: str | Path, card: ModelCard) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, after checking they are the ones the card describes."""
    tensors_path, card_path = checkpoint_paths(path)
    if not tensors_path.exists():
        raise ModelError(f"{tensors_path}: checkpoint tensors not found")
    actual = file_sha256(tensors_path)
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
    model = build_model(card.architecture, len(card.classes), card.dropout, card.cell_hidden)
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
    """Every tensor of a checkpoint except those of the last layer (``prefix``) and of a cell head,
    whose outputs are the old classes too (a new cell head is trained after the new classifier)."""
    return {key: value for key, value in source.items() if not key.startswith((prefix, CELL_HEAD_PREFIX))}
