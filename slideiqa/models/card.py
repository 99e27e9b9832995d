"""Model cards and checkpoint file names: everything about a model that needs no PyTorch.

A checkpoint is ``<stem>.safetensors`` (tensors), ``<stem>.json`` (the card) and, for the models
slideiqa ships, ``<stem>.onnx`` (the inference graph, its SHA-256 in the card). Mapping on a CPU
reads only the card and the graph, so it never imports torch: that costs seconds and half a
gigabyte per process, in the CLI and in every batch worker alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slideiqa.errors import SlideIQAError
from slideiqa.settings.values import is_number, is_whole

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
    def from_dict(cls, data: Any, source: str = "model card") -> ModelCard:
        """A card from its JSON object, every field's kind and range checked: a card is a file a
        person may have edited or been sent, and a bad value (``input_size`` 1e9, ``cell_px`` 0,
        classes as text) must be one line naming the card, not a crash or a silent misreading."""
        if not isinstance(data, dict):
            raise ModelError(f"{source}: a model card is a JSON object, got {type(data).__name__}")
        missing = {"architecture", "classes"} - set(data)
        if missing:
            raise ModelError(f"{source}: missing field(s) {', '.join(sorted(missing))}")
        known = {key: value for key, value in data.items() if key in cls.__dataclass_fields__}
        for name, value in known.items():
            problem = _field_problem(name, value)
            if problem:
                raise ModelError(f"{source}: {name} {problem}")
        card = cls(**known)
        if card.good_class not in card.classes:
            raise ModelError(f"{source}: good_class {card.good_class!r} is not one of the classes {card.classes}")
        if card.has_cells and not (card.cell_px >= 1 and card.input_size % card.cell_px == 0):
            raise ModelError(
                f"{source}: cell_px must divide input_size ({card.input_size}) into whole cells, got {card.cell_px}"
            )
        return card


#: Largest tile side a card may ask for: 4096² RGB is 50 MB a tile, far beyond any quality model.
MAX_INPUT_SIZE = 4096


def _field_problem(name: str, value: Any) -> str | None:
    """What is wrong with a card's field, or None."""
    if name in ("input_size", "tile_size"):
        if not (is_whole(value) and 1 <= value <= MAX_INPUT_SIZE):
            return f"must be a whole number of pixels from 1 to {MAX_INPUT_SIZE}, got {value!r}"
    elif name in ("cell_hidden", "cell_px"):
        if not (is_whole(value) and 0 <= value <= MAX_INPUT_SIZE):
            return f"must be a whole number from 0 to {MAX_INPUT_SIZE}, got {value!r}"
    elif name == "mpp":
        if not (is_number(value) and value > 0):
            return f"must be a positive number of µm per pixel, got {value!r}"
    elif name == "dropout":
        if not (is_number(value) and 0 <= value < 1):
            return f"must be a number from 0 to below 1, got {value!r}"
    elif name in ("mean", "std"):
        if not (isinstance(value, list) and len(value) == 3 and all(is_number(v) for v in value)):
            return f"must be three numbers (R, G, B), got {value!r}"
        if name == "std" and not all(v > 0 for v in value):
            return f"must be positive, got {value!r}"
    elif name == "classes":
        if not (
            isinstance(value, list)
            and len(value) >= 2
            and all(isinstance(v, str) and v for v in value)
            and len(set(value)) == len(value)
        ):
            return f"must be a list of at least two distinct class names, got {value!r}"
    elif name in ("training_data", "metrics"):
        if not isinstance(value, dict):
            return f"must be a JSON object, got {type(value).__name__}"
    elif not isinstance(value, str):  # architecture, names, descriptions and checksums
        return f"must be text, got {value!r}"
    return None


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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ModelError(f"{card_path}: not a JSON model card ({error})") from None
    except OSError as error:
        raise ModelError(f"{card_path}: cannot read the model card ({error.strerror or error})") from None
    return ModelCard.from_dict(data, str(card_path))
