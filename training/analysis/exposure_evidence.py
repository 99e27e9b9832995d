"""What exposure evidence a tile shows (``slideiqa.measure.exposure_evidence``): on every group's sharp test
tiles, and on the same tiles given each exposure error of ``tone_throughout.ERRORS`` (slideiqa's
kinds at the ±1 EV floor, OpenCV's gain).

    python training/analysis/exposure_evidence.py runs/base

Per group: the extremes of its sharp tiles' measurements and the share with evidence (cap above 0.5),
then per error the share of tiles whose evidence lets P(exposure) stand (cap > 0.5) and the share
where too little light is certain (floor > 0). A tone curve (γ) shows none by design: it is a stain
of another density. ``README.md`` and ``slideiqa/measure/exposure_evidence.py`` quote the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tone_throughout import ERRORS, load_tile_set

from slideiqa.measure.exposure_evidence import exposure_evidence, exposure_measurements


def main(run: Path) -> None:
    tiles = load_tile_set(run / "test_tiles.npz")
    groups = list(dict.fromkeys(tiles.groups.tolist()))
    sharp = {group: tiles.images[(tiles.groups == group) & (tiles.families == "none")] for group in groups}
    print(
        "| group | sharp tiles | lowest white point | most clipped stain | most clipped tile | most black "
        "| sharp tiles with evidence |"
    )
    print("|---|---|---|---|---|---|---|")
    for group, images in sharp.items():
        measured = exposure_measurements(images)
        print(
            f"| {group} | {len(images)} | {measured['white_point'].min():.0f} | {measured['clipped_stain'].max():.3f} "
            f"| {measured['clipped_tile'].max():.3f} | {measured['black'].max():.4f} "
            f"| {(exposure_evidence(images).cap > 0.5).mean():.3f} |"
        )
    print("\n| error throughout | evidence (cap > 0.5): mean, worst group | too little light certain: mean |")
    print("|---|---|---|")
    for name, error in ERRORS.items():
        shown, certain = [], []
        for images in sharp.values():
            evidence = exposure_evidence(np.stack([error(tile) for tile in images]))
            shown.append(float((evidence.cap > 0.5).mean()))
            certain.append(float((evidence.floor > 0).mean()))
        print(f"| {name} | {np.mean(shown):.2f}, {min(shown):.2f} | {np.mean(certain):.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/base"))
