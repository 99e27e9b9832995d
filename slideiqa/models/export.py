"""The inference graph of a checkpoint: uint8 tiles in, class probabilities out, as ONNX.

Preprocessing (uint8 NHWC → normalised float NCHW) and the softmax are part of the graph, so callers
hand over tiles exactly as a slide reader returns them. The shipped models carry their graph beside
the checkpoint (``write_graph``, run by the training code when it saves a model), so that a CPU never
needs PyTorch to map; a user's checkpoint without one is exported once into a cache.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

import torch
from torch import nn

from slideiqa.io.files import write_atomically
from slideiqa.models.card import ModelCard, file_sha256, graph_path, load_card, write_card
from slideiqa.models.checkpoint import load_checkpoint

#: torch.onnx.export keeps global state and fails when two threads export at once (a batch prepares
#: several slides in threads): exports in one process take turns; processes are kept apart by the
#: write-then-rename in export_onnx.
_export_lock = threading.Lock()


class TileClassifier(nn.Module):
    """uint8 NHWC tiles → class probabilities, with the card's normalisation built in; for a model
    with a cell head, also the probabilities of every cell, (N, rows, cols, classes)."""

    scale: torch.Tensor  # buffers, registered below
    offset: torch.Tensor

    def __init__(self, model: nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.model = model
        mean = torch.tensor(card.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(card.std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std, folded into one multiply and one subtract.
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("offset", mean / std)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = tiles.permute(0, 3, 1, 2).float() * self.scale - self.offset
        if getattr(self.model, "cell_head", None) is None:
            return torch.softmax(self.model(x), dim=1)
        logits, cells = self.model.forward_with_cells(x)  # type: ignore[operator]  # QualityNet's, not nn.Module's
        return torch.softmax(logits, dim=1), torch.softmax(cells, dim=1).permute(0, 2, 3, 1)


def export_onnx(classifier: TileClassifier, card: ModelCard, path: Path) -> None:
    """Export with a dynamic batch axis; written to a temporary name then renamed, so that worker
    processes exporting at the same time never read a half-written file."""
    example = torch.zeros(2, card.input_size, card.input_size, 3, dtype=torch.uint8)
    outputs = ["probabilities", "cell_probabilities"] if card.has_cells else ["probabilities"]
    buffer = io.BytesIO()
    with _export_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            classifier,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works; the stub names paths only
            input_names=["tiles"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["tiles", *outputs]},
            dynamo=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, buffer.getvalue())


def write_graph(stem: str | Path) -> Path:
    """Export ``<stem>.onnx`` from the checkpoint and record its SHA-256 in the card."""
    network, card = load_checkpoint(stem)
    path = graph_path(stem)
    export_onnx(TileClassifier(network, card).eval(), card, path)
    card = load_card(stem)
    card.graph_sha256 = file_sha256(path)
    write_card(card, stem)
    return path
