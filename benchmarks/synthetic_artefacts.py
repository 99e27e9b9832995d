"""Fold, bubble and debris detection on synthetic artefacts drawn on every clean source.

    python benchmarks/synthetic_artefacts.py [--data ../shared/data] [--seeds 3]     # ~10 min here

The shared data holds no real folds, bubbles or debris with masks, so the detectors are measured on
``slideiqa.synthetic.artefacts`` drawn on the clean sources of ``training/sources.toml`` (every one
of them held out: the detectors learn nothing, their thresholds were set by hand):

1. **Folds and bubbles** (found on the thumbnail): each tissue source's fields are laid side by
   side, at 2 µm/px, into a 2 × 2 mm "slide" of that source alone; an artefact is drawn on it at
   each severity and several seeds, the result shrunk to the map's two thumbnail scales (5 µm/px,
   a small slide's; 14 µm/px, a large one's) and labelled exactly as ``slideiqa map`` labels a
   thumbnail (``thumbnail_artefacts.artefact_labels``, every detector at once). Per cell: the share
   of tissue tiles at least a quarter under the visible artefact labelled with the right class;
   how many of them another artefact claimed; tissue tiles without it labelled with its class.
2. **Debris** (found in each 224 px tile at the model's 0.5 µm/px): particles drawn on every tissue
   tile of every source; a tile has debris when a particle of at least ``MIN_PARTICLE_UM2`` darkens
   every channel by OD ≥ 0.2. Clean tiles and smear fields labelled debris, and tiles with only an
   acquisition defect at the generalisation floors, are counted too. Debris is found as the map
   finds it, with the default model's verdicts beside it (a tile it finds compressed is not debris).
3. **Clean sources**: tissue tiles of the clean "slides" labelled any artefact, and the time the
   thumbnail detectors take.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scipy import ndimage  # noqa: E402

from slideiqa.artefacts.debris import MIN_PARTICLE_UM2, debris_tiles  # noqa: E402
from slideiqa.artefacts.pen import optical_density  # noqa: E402
from slideiqa.artefacts.registry import ARTEFACT_TILE_SHARE  # noqa: E402
from slideiqa.artefacts.thumbnail import artefact_labels  # noqa: E402
from slideiqa.io.grid import TileGrid, tile_fractions  # noqa: E402
from slideiqa.io.slide import open_slide  # noqa: E402
from slideiqa.measure.tissue import tissue_mask, tissue_pixels  # noqa: E402
from slideiqa.models.predictor import Predictor  # noqa: E402
from slideiqa.outputs.store import FIXED_LABELS  # noqa: E402
from slideiqa.settings.options import DEFAULT_MIN_TISSUE  # noqa: E402
from slideiqa.synthetic.artefacts import add_artefact  # noqa: E402
from slideiqa.synthetic.distortions import distort  # noqa: E402
from training.catalogue import load_catalogue  # noqa: E402

CANVAS_UM_PER_PX = 2.0
CANVAS_UM = 2000.0
THUMBNAIL_UM = (5.0, 14.0)
SEVERITIES = (0.15, 0.25, 0.5, 1.0)


def resize(image: np.ndarray, factor: float, resample=Image.Resampling.BOX) -> np.ndarray:
    """``image`` shrunk (factor > 1) or enlarged by ``factor``."""
    size = (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor)))
    return np.asarray(Image.fromarray(image).resize(size, resample))


def source_fields(data: Path, group) -> list[np.ndarray]:
    fields = []
    for path in group.paths(data, include_holdout=True):
        with open_slide(path) as slide:
            fields.append(slide.read_region((0, 0), 0, slide.dimensions))
    return fields


def canvas(fields: list[np.ndarray], mpp: float, rng: np.random.Generator) -> np.ndarray:
    """A CANVAS_UM square of one source's fields at CANVAS_UM_PER_PX, laid in rows, each flipped at random."""
    side = int(CANVAS_UM / CANVAS_UM_PER_PX)
    out = np.full((side, side, 3), 255, np.uint8)
    pieces = [resize(f, CANVAS_UM_PER_PX / mpp) for f in fields]
    y = 0
    while y < side:
        x, row_height = 0, 0
        while x < side:
            piece = pieces[rng.integers(len(pieces))]
            if rng.random() < 0.5:
                piece = piece[::-1]
            if rng.random() < 0.5:
                piece = piece[:, ::-1]
            h, w = min(piece.shape[0], side - y), min(piece.shape[1], side - x)
            out[y : y + h, x : x + w] = piece[:h, :w]
            x, row_height = x + w, max(row_height, h)
        y += row_height
    return out


#: A pixel the artefact changed by less than this (summed over R, G, B) shows nothing of it: a
#: fold over glass, a bubble's rim on glass.
VISIBLE_CHANGE = 24


def table_header(columns: list[str]) -> None:
    """Print the head of a Markdown table, so the output pastes into benchmarks/README.md."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def visibly_changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.abs(after.astype(np.int16) - before).sum(-1) > VISIBLE_CHANGE


def tiles_of(mask: np.ndarray, um_per_px: float) -> np.ndarray:
    grid = TileGrid(mask.shape[1], mask.shape[0], um_per_px, 0.5, 224)
    return tile_fractions(mask, grid)


def map_labels(thumbnail: np.ndarray, um_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(tissue tiles, fixed labels) as ``slideiqa map`` gives them for a slide of this thumbnail."""
    grid = TileGrid(thumbnail.shape[1], thumbnail.shape[0], um_per_px, MODEL_MPP, TILE)
    fractions, fixed = artefact_labels(thumbnail, tissue_mask(thumbnail), grid, um_per_px, DEFAULT_MIN_TISSUE)
    return fractions >= DEFAULT_MIN_TISSUE, fixed


def thumbnail_artefacts(data: Path, seeds: int) -> None:
    groups = [g for g in load_catalogue() if g.modality == "tissue"]
    canvases = {g.name: canvas(source_fields(data, g), g.mpp, np.random.default_rng(0)) for g in groups}
    for kind in ("fold", "bubble"):
        label = FIXED_LABELS[kind]
        for scale in THUMBNAIL_UM:
            factor = scale / CANVAS_UM_PER_PX
            print(
                f"\n### {kind} at {scale:g} µm/px: tissue tiles ≥ 25 % under it labelled {kind}; "
                f"labelled another artefact; tissue tiles without it labelled {kind}\n"
            )
            table_header(["source", *(f"severity {s:g}" for s in SEVERITIES)])
            for name, image in canvases.items():
                cells = []
                for severity in SEVERITIES:
                    hit = other = total = false = 0
                    for seed in range(seeds):
                        drawn, truth = add_artefact(kind, image, severity, CANVAS_UM_PER_PX, seed=seed)
                        truth &= visibly_changed(image, drawn)
                        under = tiles_of(resize(truth.astype(np.uint8) * 255, factor) > 127, scale)
                        tissue, fixed = map_labels(resize(drawn, factor), scale)
                        hit += int(((under >= ARTEFACT_TILE_SHARE) & tissue & (fixed == label)).sum())
                        other += int(((under >= ARTEFACT_TILE_SHARE) & tissue & (fixed > 0) & (fixed != label)).sum())
                        total += int(((under >= ARTEFACT_TILE_SHARE) & tissue).sum())
                        false += int(((under == 0) & tissue & (fixed == label)).sum())
                    cells.append(f"{hit / max(total, 1):.2f}; {other}; {false}")
                print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        f"\n### Clean sources: tissue tiles labelled an artefact on the thumbnail "
        f"(at {' and '.join(f'{s:g}' for s in THUMBNAIL_UM)} µm/px)\n"
    )
    table_header(["source", *(f"{s:g} µm/px" for s in THUMBNAIL_UM)])
    for name, image in canvases.items():
        cells = []
        for scale in THUMBNAIL_UM:
            start = time.perf_counter()
            tissue, fixed = map_labels(resize(image, scale / CANVAS_UM_PER_PX), scale)
            seconds = time.perf_counter() - start
            names = ", ".join(
                f"{n} {int((tissue & (fixed == v)).sum())}"
                for n, v in FIXED_LABELS.items()
                if (tissue & (fixed == v)).any()
            )
            cells.append(
                f"{int((tissue & (fixed > 0)).sum())} of {int(tissue.sum())} ({names or 'none'}; {seconds:.1f} s)"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


MODEL_MPP, TILE = 0.5, 224
#: A particle is visible where it darkens every channel by at least this OD.
VISIBLE_OD = 0.2


def model_tiles(fields: list[np.ndarray], mpp: float) -> np.ndarray:
    """Every whole 224 px tile, at the model's 0.5 µm/px, of the fields that is a quarter tissue."""
    tiles = []
    for field in fields:
        field = resize(field, MODEL_MPP / mpp, Image.Resampling.LANCZOS)
        for y in range(0, field.shape[0] - TILE + 1, TILE):
            for x in range(0, field.shape[1] - TILE + 1, TILE):
                tile = field[y : y + TILE, x : x + TILE]
                if tissue_pixels(tile).mean() >= 0.25:
                    tiles.append(tile)
    return np.stack(tiles) if tiles else np.zeros((0, TILE, TILE, 3), np.uint8)


#: Acquisition defects at the generalisation floors (training/generalisation.py): a tile that is only
#: noisy, blurred or compressed must not be taken for one with debris.
DEFECTS_AT_FLOOR = {"defocus": 0.5, "noise": 0.5, "jpeg": 0.67, "exposure": 0.5}


def visible_particle(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether ``after`` holds a particle of at least MIN_PARTICLE_UM2 darkened by VISIBLE_OD in every channel."""
    darker = (optical_density(after) - optical_density(before)).min(-1) >= VISIBLE_OD
    labels, count = ndimage.label(darker)
    return bool(count) and np.bincount(labels.ravel())[1:].max() * MODEL_MPP**2 >= MIN_PARTICLE_UM2


def found_debris(tiles: np.ndarray) -> np.ndarray:
    """Debris as the map finds it: with the default model's verdicts beside the particles."""
    predictor = _predictor()
    return debris_tiles(tiles, MODEL_MPP, predictor.predict(tiles), predictor.classes)


@functools.lru_cache(maxsize=1)
def _predictor() -> Predictor:
    return Predictor("default", device="cpu")


def tile_debris(data: Path, seeds: int) -> None:
    print(
        "\n### debris in 224 px tiles at 0.5 µm/px: tiles found / tiles with a visible particle; clean tiles labelled\n"
    )
    table_header(
        ["source", "tiles", *(f"severity {s:g}" for s in SEVERITIES), "clean", "acquisition defects labelled debris"]
    )
    for group in load_catalogue():
        fields = source_fields(data, group)
        if group.modality == "smear":  # fields smaller than a tile: each field whole, as one tile, no model
            clean = [resize(f, MODEL_MPP / group.mpp, Image.Resampling.LANCZOS) for f in fields]
            alarms = sum(int(debris_tiles(tile[None], MODEL_MPP)[0]) for tile in clean)
            print(
                f"| {group.name} | {len(clean)} fields | "
                + " | ".join("–" for _ in SEVERITIES)
                + f" | {alarms} of {len(clean)} | – |"
            )
            continue
        tiles = model_tiles(fields, group.mpp)
        alarms = int(found_debris(tiles).sum())
        cells = []
        for severity in SEVERITIES:
            hit = total = 0
            for seed in range(seeds):
                drawn = np.stack(
                    [
                        add_artefact("debris", tile, severity, MODEL_MPP, seed=seed * 100_000 + i)[0]
                        for i, tile in enumerate(tiles)
                    ]
                )
                truth = np.array([visible_particle(a, b) for a, b in zip(tiles, drawn)])
                found = found_debris(drawn)
                hit, total = hit + int((found & truth).sum()), total + int(truth.sum())
            cells.append(f"{hit / max(total, 1):.2f} of {total}")
        defects = {
            family: int(
                found_debris(
                    np.stack([distort(t, family, severity, mpp=MODEL_MPP, seed=i) for i, t in enumerate(tiles)])
                ).sum()
            )
            for family, severity in DEFECTS_AT_FLOOR.items()
        }
        print(
            f"| {group.name} | {len(tiles)} | "
            + " | ".join(cells)
            + f" | {alarms} of {len(tiles)} | "
            + ", ".join(f"{family} {count}" for family, count in defects.items())
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", type=int, default=3)
    arguments = parser.parse_args()
    tile_debris(arguments.data, arguments.seeds)
    thumbnail_artefacts(arguments.data, arguments.seeds)


if __name__ == "__main__":
    main()
