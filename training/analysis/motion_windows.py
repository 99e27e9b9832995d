"""Does a streak show in every part of a tile? A look at oriented tissue against motion, window by window.

    python training/analysis/motion_windows.py [--data ../shared/data]

A streak is a convolution of the whole tile: it removes the fine detail along its direction in every
part of the tile alike, while tissue oriented one way (collagen bundles, spindle cells) may sit beside
round nuclei that keep fine detail in every direction. So a tile the motion measurement flags could be
checked window by window: split into 2 × 2 (112 px) or 3 × 3 (74 px) windows, each window's fine band
read in the tile's weakest direction against its own strongest (log-ratio, as the tile's fine
anisotropy), windows with under a quarter of the mean fine energy left out (glass), and the tile kept
as motion only where the lowest (or the second-lowest) window's ratio passes a threshold.

On every clean field of the catalogue at 0.5 µm/px (as ``field_measurements.py`` cuts them; sources
the model trains on and held-out sources apart), their good looks, and the fields streaked at the 5 µm
floor by slideiqa's two kinds, albumentations' and OpenCV's: the share of clean tiles and good looks
flagged, and of streaked tiles missed, by the shipped measurement (threshold "—") and with the window
rule added. Last, the windows of the bundled sample's collagen tile that the measurement calls motion.
Takes about five minutes here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from field_measurements import ROOT, tile_sets

sys.path.insert(0, str(ROOT / "benchmarks"))
from clean_tissue import HELD_OUT

from slideiqa.io.slide import open_slide
from slideiqa.measure import motion_blur
from slideiqa.synthetic.distortions import KINDS, distort
from training.cross_implementation import IMPLEMENTATIONS
from training.generalisation import FLOORS

#: The bundled sample's tile (column, row of 224 px tiles) of parallel collagen bundles called motion.
COLLAGEN_TILE = (6, 8)
THRESHOLDS = (1.5, 2.0, 2.5)


def streaked(field: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The field streaked at the 5 µm floor by slideiqa's two kinds and by other libraries."""
    seed = lambda: int(rng.integers(2**31))  # noqa: E731
    out = {
        f"slideiqa {kind}": distort(field, "motion", FLOORS["motion"], seed=seed(), kind=kind)
        for kind in KINDS["motion"]
    }
    for name, implementation in IMPLEMENTATIONS["motion"].items():
        out[name] = implementation(field, FLOORS["motion"], 0.5, np.random.default_rng(seed()))
    return out


def window_ratios(tiles: np.ndarray, per_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the shipped motion score (N,), each window's fine log-ratio along the tile's weakest direction
    (N, windows), each window's fine energy (N, windows))."""
    count, size = len(tiles), tiles.shape[1]
    energies = motion_blur.sector_energies(tiles)
    score = motion_blur.motion_score(tiles, energies=energies)
    weakest = energies.fine.argmin(axis=1)
    side = size // per_side
    summed = tiles[:, : side * per_side, : side * per_side].astype(np.float32).sum(axis=-1)
    windows = summed.reshape(count, per_side, side, per_side, side).transpose(0, 1, 3, 2, 4)
    windows = windows.reshape(-1, side, side).copy()
    windows -= windows.mean(axis=(1, 2), keepdims=True)
    bins = motion_blur._sector_bins(side, side)
    windows *= bins.window
    # Scaled to a whole tile's energy, as an edge tile's own part is, so that the floor means the same.
    power = motion_blur._band_power(windows, bins, (side, side)) * (size * size / side**2)
    fine, _ = motion_blur._sector_sums(power, bins)
    fine = fine.reshape(count, per_side * per_side, -1)
    along = np.take_along_axis(fine, np.broadcast_to(weakest[:, None, None], (*fine.shape[:2], 1)), axis=2)[..., 0]
    return score, np.log(fine.max(axis=-1) / along), fine.sum(axis=-1)


def window_statistic(ratios: np.ndarray, energy: np.ndarray, statistic: str) -> np.ndarray:
    """(N,) the lowest or second-lowest ratio of each tile's textured windows."""
    textured = energy >= 0.25 * energy.mean(axis=1, keepdims=True)
    ordered = np.sort(np.where(textured, ratios, np.inf), axis=1)
    if statistic == "lowest":
        return ordered[:, 0]
    return np.where(np.isfinite(ordered[:, 1]), ordered[:, 1], ordered[:, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    splits = {"trained on": lambda source: source not in HELD_OUT, "held out": lambda source: source in HELD_OUT}
    sets = {}
    for split, keep in splits.items():
        clean, looks, copies = tile_sets(args.data, streaked, keep)
        sets[split] = {"clean": clean, "good looks": looks, **copies}
    names = list(sets["held out"])
    print("| windows | statistic | threshold | sources | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for per_side in (2, 3):
        measured = {
            split: {name: window_ratios(tiles, per_side) for name, tiles in by_name.items()}
            for split, by_name in sets.items()
        }
        rows = [("—", "—", None)] + [(s, t, t) for s in ("lowest", "second-lowest") for t in THRESHOLDS]
        for statistic, label, threshold in rows:
            for split, by_name in measured.items():
                cells = []
                for name, (score, ratios, energy) in by_name.items():
                    flagged = score > 1.0
                    if threshold is not None:
                        flagged &= window_statistic(ratios, energy, str(statistic)) >= threshold
                    cells.append(flagged.mean() if name in ("clean", "good looks") else 1.0 - flagged.mean())
                print(
                    f"| {per_side} × {per_side} | {statistic} | {label} | {split} | "
                    + " | ".join(f"{cell:.3f}" for cell in cells)
                    + " |"
                )
    print("\nClean and good looks: share flagged as motion; streaks: share missed.")
    with open_slide(ROOT / "examples" / "data" / "cmu_small_region.svs") as slide:
        column, row = COLLAGEN_TILE
        tile = slide.read_region((224 * column, 224 * row), 0, (224, 224))[None]
    for per_side in (2, 3):
        score, ratios, energy = window_ratios(tile, per_side)
        shares = energy[0] / energy[0].mean()
        print(
            f"The sample's collagen tile, {per_side} × {per_side} windows: score {score[0]:.2f}, window ratios "
            f"{' '.join(f'{r:.2f}' for r in ratios[0])}, fine energy against the mean "
            f"{' '.join(f'{e:.2f}' for e in shares)}"
        )


if __name__ == "__main__":
    main()
