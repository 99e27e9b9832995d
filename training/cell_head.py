"""Teaching a quality model *where* in a tile a defect lies: its dense cell head.

The seed's future work: "add noise only in part of the image, and train with these examples. After
that, analyze the activation maps and see if the explanation is consistent with the spatial placement
of the noise." A Grad-CAM heatmap (``slideiqa.explain.heatmaps``) answers that for a model trained on whole
tiles; this module trains the model to answer it itself, cell by cell:

* **examples** — crops of every catalogued group's *training* files (the generalisation plan's: 0.5 µm/px,
  half of them up to 2× coarser; holdout files never), each as a good look (every cell good) and, per
  defect family, a copy with the defect inside a random local mask (a disk, a band or a half-plane over
  10–60 % of the tile, :func:`local_mask`) or, one time in :data:`WHOLE_TILE_SHARE`, over the whole tile,
  at a severity from just below the family's floor to 1 (``generalisation.TRAIN_FLOOR_SHARE``);
* **targets** — a cell (the backbone's stride: 32 px, 16 µm of an iqanet tile) is the family's where at
  least half of it lies under the mask *and* the defect changed it visibly (mean change of
  :data:`VISIBLE_CHANGE` grey levels: a blur over bare glass changes nothing anyone could see), good
  elsewhere;
* **training** — the backbone and the tile classifier are frozen, so every tile verdict and every figure
  of the generalisation benchmark stay exactly as they were; the backbone's features are computed once
  and the small head (:func:`slideiqa.models.registry.cell_head`) is fitted on them with class-balanced
  cross-entropy.

Only slideiqa's own distortion code makes the training examples; ``benchmarks/dense_masks.py`` measures
the head on held-out files with other libraries' defects too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slideiqa.models.checkpoint import ModelError, load_checkpoint, save_checkpoint
from slideiqa.models.export import TileClassifier, write_graph
from slideiqa.models.registry import QualityNet, cell_head
from slideiqa.synthetic.distortions import FAMILIES, distort, random_kind

from .appearance import vary_good
from .catalogue import SourceGroup
from .generalisation import FLOORS, TRAIN_FLOOR_SHARE, CropPlan, cut_references

#: Mean absolute change (grey levels) below which a cell under a defect's mask shows nothing of it.
VISIBLE_CHANGE = 4.0
#: Share of defect copies whose mask is the whole tile: the head must call a wholly defective tile so.
WHOLE_TILE_SHARE = 0.2
#: A cell is the defect's when at least this share of it lies under the mask.
CELL_UNDER = 0.5
HIDDEN = 64
#: Share of the loss's weight on good cells (the rest shared by the defect families): at a half, P(good)
#: = 0.5 is the point of balance, as for tiles. 0.6 and 0.7 were measured too (docs/model/cell-head.md).
GOOD_SHARE = 0.5


def local_mask(rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """A disk, a band or a half-plane covering 10–60 % of a ``size`` px tile, at a random place and angle."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    share = rng.uniform(0.1, 0.6)
    shape = rng.integers(3)
    if shape == 0:
        centre = rng.uniform(0.25 * size, 0.75 * size, 2)
        return np.hypot(y - centre[0], x - centre[1]) < np.sqrt(share * size * size / np.pi)
    angle = rng.uniform(0, np.pi)
    along = np.cos(angle) * (x - size / 2) + np.sin(angle) * (y - size / 2)
    order = np.sort(along.ravel())
    if shape == 1:  # a band through the middle
        start = rng.uniform(0, 1 - share)
        low, high = order[int(start * order.size)], order[min(order.size - 1, int((start + share) * order.size))]
        return (along >= low) & (along < high)
    return along < order[int(share * order.size)]


def per_cell(values: np.ndarray, cell_px: int) -> np.ndarray:
    """The mean of a (H, W) array over each ``cell_px`` square cell: (H // cell_px, W // cell_px)."""
    rows, cols = values.shape[0] // cell_px, values.shape[1] // cell_px
    return values[: rows * cell_px, : cols * cell_px].reshape(rows, cell_px, cols, cell_px).mean(axis=(1, 3))


def cell_targets(
    original: np.ndarray, degraded: np.ndarray, mask: np.ndarray, label: int, cell_px: int, good: int = 0
) -> np.ndarray:
    """Class index of every cell: ``label`` where half the cell is under ``mask`` and visibly changed,
    ``good`` elsewhere."""
    change = np.abs(degraded.astype(np.float32) - original.astype(np.float32)).mean(axis=-1)
    under = (per_cell(mask.astype(np.float32), cell_px) >= CELL_UNDER) & (per_cell(change, cell_px) >= VISIBLE_CHANGE)
    return np.where(under, label, good).astype(np.int64)


@dataclass
class CellExamples:
    tiles: np.ndarray  # (N, H, W, 3) uint8
    targets: np.ndarray  # (N, rows, cols) class index


def family_labels(classes: list[str], good_class: str = "good") -> dict[str, int]:
    """The class index of every defect family in a model's ``classes``: the cell head learns the
    model's own classes, so it needs ``good_class`` and one class per family, in any order."""
    missing = [name for name in (good_class, *FAMILIES) if name not in classes]
    if missing:
        raise ModelError(
            f"a cell head is trained on slideiqa's defect families; this model's classes "
            f"{classes} lack {', '.join(missing)}"
        )
    return {family: classes.index(family) for family in FAMILIES}


def local_examples(
    crops: list[np.ndarray], mpp: float, cell_px: int, rng: np.random.Generator, labels: dict[str, int], good: int = 0
) -> CellExamples:
    """A good look and one locally (or wholly) defective copy per family of every crop; targets are
    class indices (``labels`` per family, ``good`` elsewhere)."""
    tiles, targets = [], []
    for crop in crops:
        look = vary_good(crop, rng)
        tiles.append(look)
        targets.append(np.full((crop.shape[0] // cell_px, crop.shape[1] // cell_px), good, np.int64))
        for family in FAMILIES:
            look = vary_good(crop, rng)
            mask = np.ones(crop.shape[:2], bool) if rng.random() < WHOLE_TILE_SHARE else local_mask(rng, crop.shape[0])
            severity = float(rng.uniform(TRAIN_FLOOR_SHARE[family] * FLOORS[family], 1.0))
            whole = distort(look, family, severity, mpp=mpp, seed=rng, kind=random_kind(family, rng))
            degraded = np.where(mask[..., None], whole, look)
            tiles.append(degraded)
            targets.append(cell_targets(look, degraded, mask, labels[family], cell_px, good))
    return CellExamples(np.stack(tiles), np.stack(targets))


def backbone_features(classifier: TileClassifier, tiles: np.ndarray, batch: int = 64) -> torch.Tensor:
    """The frozen backbone's feature maps (N, C, rows, cols) of uint8 tiles, normalised as the graph does."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(tiles), batch):
            x = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch])).permute(0, 3, 1, 2).float()
            out.append(classifier.model.backbone(x * classifier.scale - classifier.offset))  # type: ignore[operator]  # the network is typed as nn.Module
    return torch.cat(out)


def cell_stride(network: QualityNet, input_size: int) -> int:
    """Input pixels per cell of the backbone's feature map."""
    with torch.inference_mode():
        side = network.backbone(torch.zeros(1, 3, input_size, input_size)).shape[-1]
    return input_size // side


def fit_cell_head(
    features: torch.Tensor,
    targets: np.ndarray,
    num_classes: int,
    epochs: int = 40,
    lr: float = 3e-3,
    seed: int = 0,
    hidden: int = HIDDEN,
    good: int = 0,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """The head fitted on fixed features (maps of cells, so the 3×3 convolution sees its neighbours);
    classes weighted so that good cells weigh :data:`GOOD_SHARE` of the loss and each family an equal
    part of the rest."""
    torch.manual_seed(seed)
    head = cell_head(features.shape[1], num_classes, hidden)
    labels = torch.from_numpy(targets)
    counts = torch.bincount(labels.reshape(-1), minlength=num_classes).float().clamp(min=1)
    weights = (
        torch.where(
            torch.arange(num_classes) == good, GOOD_SHARE / counts[good], (1 - GOOD_SHARE) / (num_classes - 1) / counts
        )
        * labels.numel()
    )
    loss_of = nn.CrossEntropyLoss(weight=weights)
    optimiser = torch.optim.Adam(head.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        total = 0.0
        for batch in torch.randperm(len(labels), generator=generator).split(64):
            loss = loss_of(head(features[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
        schedule.step()
        if log and (epoch + 1) % 10 == 0:
            log(f"cell head epoch {epoch + 1}/{epochs}: loss {total / len(labels):.4f}")
    return head.eval()


def holdout_crops(
    groups: list[SourceGroup], data: Path, per_group: int, plan: CropPlan, rng: np.random.Generator
) -> list[np.ndarray]:
    """``per_group`` crops of each group's *holdout* files (those no shipped model was trained on):
    where the benchmarks measure local defects."""
    crops = []
    for group in groups:
        if group.holdout:
            crops += cut_references(group, group.holdout_paths(data), per_group, plan, rng)
    return crops


def training_crops(
    groups: list[SourceGroup], data: Path, plan: CropPlan, per_group: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``per_group`` crops of each group's training files (holdout files are never read)."""
    crops = []
    for group in groups:
        crops += cut_references(group, group.paths(data, plan.cache), per_group, plan, rng)
    return crops


def add_cell_head(
    checkpoint: str | Path,
    groups: list[SourceGroup],
    data: Path,
    out: str | Path,
    per_group: int = 80,
    epochs: int = 40,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """``checkpoint`` with a cell head trained as the module docstring says, saved as ``out`` with its
    ONNX graph; the tile classifier's tensors are copied unchanged."""
    network, card = load_checkpoint(checkpoint)
    labels = family_labels(card.classes, card.good_class)
    # BCCD's fields magnified as far as a tile needs, as the shipped network was trained (docs/model/default-model.md).
    plan = CropPlan(seed=seed, max_magnification=None)
    rng = np.random.default_rng(seed)
    cell_px = cell_stride(network, card.input_size)
    crops = training_crops(groups, data, plan, per_group, rng)
    examples = local_examples(crops, plan.mpp, cell_px, rng, labels, card.good_index)
    if log:
        share = (examples.targets != card.good_index).mean()
        log(f"{len(crops)} crops, {len(examples.tiles)} tiles, {examples.targets.size} cells ({share:.0%} defective)")
    features = backbone_features(TileClassifier(network, card).eval(), examples.tiles)
    head = fit_cell_head(
        features, examples.targets, len(card.classes), epochs, seed=seed, good=card.good_index, log=log
    )
    with_cells = copy.deepcopy(network)
    with_cells.cell_head = head  # type: ignore[assignment]  # the fitted head is the Sequential cell_head() builds
    card.cell_hidden, card.cell_px = HIDDEN, cell_px
    card.training_data = card.training_data | {
        "cell_head": {
            "groups": [group.name for group in groups],
            "crops_per_group": per_group,
            "tiles": len(examples.tiles),
            "masks": "disk, band or half-plane over 10-60 % of the tile, or the whole tile",
            "recipe": "training/cell_head.py",
            "epochs": epochs,
            "seed": seed,
        }
    }
    save_checkpoint(with_cells, card, out)
    write_graph(out)
    return Path(out)
