"""Motion on edge tiles: measured whole, mirror image included (as before), or on the tile's own part
with the thresholds as they are and raised for its size (shipped: ``motion_blur.EDGE_SPREAD``).

    python training/analysis/motion_edges.py [--data ../shared/data]

A map fills a tile that runs past the slide's border with the image mirrored about it
(``grid.mirrored_past_edge``); mirrored, a streak at θ adds one at −θ and the tile looks less
streaked than it is. Every clean tile of ``field_measurements.tile_sets`` and its streaked copies at
the 5 µm floor (slideiqa's two kinds, albumentations', OpenCV's) and defocused ones are cut to each
own part below and mirrored out to a tile, as the map does. Per split (sources the model trains on,
where ``EDGE_SPREAD`` was chosen; held-out sources), own part and reading: the share of clean and of
defocused tiles flagged as motion, and of the streaks missed (mean over the four implementations).
Takes about ten minutes here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from field_measurements import ROOT, tile_sets
from motion_scale import degraded_at

sys.path.insert(0, str(ROOT / "benchmarks"))
from clean_tissue import HELD_OUT

from slideiqa.measure import motion_blur

#: Own parts (rows, columns) of a 224 px tile: right edges, bottom edges, corners.
PARTS = [(224, 64), (224, 96), (224, 160), (64, 224), (128, 224), (96, 96), (100, 120), (150, 180)]


def mirrored(tiles: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """``tiles`` cut to their first ``rows`` × ``columns`` and mirrored out to their size, as a map does."""
    height, width = tiles.shape[1:3]
    return np.pad(
        tiles[:, :rows, :columns], ((0, 0), (0, height - rows), (0, width - columns), (0, 0)), mode="symmetric"
    )


def scores(tiles: np.ndarray, part: tuple[int, int], reading: str) -> np.ndarray:
    """Motion scores of ``tiles`` cut to ``part`` and mirrored, read as ``reading`` says."""
    edge = mirrored(tiles, *part)
    if reading == "whole, mirror included":
        return motion_blur.motion_score(edge, extent=np.tile(edge.shape[1:3], (len(edge), 1)))
    score = motion_blur.motion_score(edge, extent=np.tile(part, (len(edge), 1)))
    if reading == "own part, thresholds as they are":
        score = score * motion_blur.edge_margin(np.array([part]), edge.shape[1:3])[0]
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    readings = (
        "whole, mirror included",
        "own part, thresholds as they are",
        f"own part, thresholds raised (EDGE_SPREAD {motion_blur.EDGE_SPREAD}, shipped)",
    )
    print(
        "| sources | own part | reading | clean flagged | defocus flagged | streaks missed |\n|---|---|---|---|---|---|"
    )
    for split, keep in {
        "trained on": lambda source: source not in HELD_OUT,
        "held out": lambda source: source in HELD_OUT,
    }.items():
        clean, _, copies = tile_sets(args.data, degraded_at(0.5), keep)
        for part in PARTS:
            for reading in readings:
                missed = np.mean(
                    [
                        (scores(tiles, part, reading) <= 1.0).mean()
                        for name, tiles in copies.items()
                        if name.startswith("streak")
                    ]
                )
                print(
                    f"| {split} ({len(clean)} tiles) | {part[0]} × {part[1]} | {reading} "
                    f"| {(scores(clean, part, reading) > 1.0).mean():.3f} "
                    f"| {(scores(copies['defocus 1 µm'], part, reading) > 1.0).mean():.3f} | {missed:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
