"""Model cards and checkpoint file names: everything about a model that needs no PyTorch.

A checkpoint is ``<stem>.safetensors`` (tensors), ``<stem>.json`` (the card) and, for the models
slideiqa ships, ``<stem>.onnx`` (the inference graph, its SHA-256 in the card). Mapping on a CPU
reads only the card and the graph, so it never imports torch: that costs seconds and half a
gigabyte per process, in the CLI and in every batch worker alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SlideIQAError

CARD_SUFFIX = ".json"
TENSORS_SUFFIX = ".safetensors"
GRAPH_SUFFIX = ".onnx"


class ModelError(SlideIQAError):
    """A model cannot be built or loaded; the message names what and why."""


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
    #: SHA-256 of ``<stem>.onnx``, the inference graph exported from these weights (empty: none).
    graph_sha256: str = ""
    #: Hidden channels of the dense cell head (0: the model judges whole tiles only).
    cell_hidden: int = 0
    #: Side of a cell of the cell head, in input pixels (the backbone's stride).
    cell_px: int = 0

    @property
    def has_cells(self) -> bool:
        return self.cell_hidden > 0

    @property
    def cells_per_side(self) -> int:
        """Cells of the cell head along a tile's side (7 for iqanet's 224 px and 32 px cells); 0 without one."""
        return self.input_size // self.cell_px if self.has_cells else 0

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
        for name in ("input_size", "tile_size", "mpp"):
            value = getattr(card, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ModelError(f"{source}: {name} must be a positive number, got {value!r}")
        if card.good_class not in card.classes:
            raise ModelError(f"{source}: good_class {card.good_class!r} is not one of the classes {card.classes}")
        return card


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(tensors, card) for a checkpoint given by either file or by their common stem."""
    path = Path(path)
    if path.suffix in (CARD_SUFFIX, TENSORS_SUFFIX):
        path = path.with_suffix("")
    return path.with_name(path.name + TENSORS_SUFFIX), path.with_name(path.name + CARD_SUFFIX)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def graph_path(path: str | Path) -> Path:
    """``<stem>.onnx`` of a checkpoint given by any of its files or by their stem."""
    tensors, _ = checkpoint_paths(path)
    return tensors.with_suffix(GRAPH_SUFFIX)


def write_card(card: ModelCard, path: str | Path) -> None:
    checkpoint_paths(path)[1].write_text(json.dumps(card.to_dict(), indent=2) + "\n")


def load_card(path: str | Path) -> ModelCard:
    _, card_path = checkpoint_paths(path)
    if not card_path.exists():
        raise ModelError(f"{card_path}: model card not found")
    try:
        data = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"{card_path}: not a JSON model card ({error})") from None
    return ModelCard.from_dict(data, str(card_path))
