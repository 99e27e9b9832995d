"""Motion measured on tiles a little coarser than the model (a 20× scanner's 0.55 µm/px), with the
fine and coarse bands read at fixed cycles per pixel (as before) and scaled to the same periods in µm
(shipped), the thresholds unchanged.

    python training/analysis/motion_scale.py [--data ../shared/data] [--mpp 0.55]

Every clean field of ``benchmarks/clean_tissue.py``'s catalogue shrunk to ``--mpp`` (as
``field_measurements.py`` cuts them), then streaked whole at that scale — a streak is a length on
the glass, so 5 µm is 9 px at 0.55 — by slideiqa's two kinds and by albumentations' and OpenCV's,
and defocused by 1 µm. Per reading and split (sources the model trains on / held-out sources): the
share of clean tiles, good looks and defocused tiles flagged as motion, and of each streak missed;
the same at the model's own 0.5 µm/px as the reference the scaled reading should match.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from field_measurements import MODEL_MPP, ROOT, tile_sets

sys.path.insert(0, str(ROOT / "benchmarks"))
from clean_tissue import HELD_OUT

from slideiqa.measure.motion_blur import motion_score
from slideiqa.synthetic.distortions import KINDS, distort
from training.cross_implementation import IMPLEMENTATIONS
from training.generalisation import FLOORS


def degraded_at(mpp: float):
    """Copies of a field at ``mpp`` µm/px: streaked at the 5 µm floor by every implementation,
    defocused by 1 µm — each written at the field's own scale."""

    def copies(field: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        seed = lambda: int(rng.integers(2**31))  # noqa: E731
        out = {
            f"streak slideiqa {kind}": distort(field, "motion", FLOORS["motion"], mpp=mpp, seed=seed(), kind=kind)
            for kind in KINDS["motion"]
        }
        out |= {
            f"streak {name}": implementation(field, FLOORS["motion"], mpp, np.random.default_rng(seed()))
            for name, implementation in IMPLEMENTATIONS["motion"].items()
        }
        out["defocus 1 µm"] = distort(field, "defocus", FLOORS["defocus"], mpp=mpp, seed=seed())
        return out

    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--mpp", type=float, default=0.55)
    args = parser.parse_args()
    splits = {"trained on": lambda source: source not in HELD_OUT, "held out": lambda source: source in HELD_OUT}
    readings = {
        f"{MODEL_MPP} µm/px (reference)": (MODEL_MPP, None),
        f"{args.mpp} µm/px, bands in cycles/px (before)": (args.mpp, None),
        f"{args.mpp} µm/px, bands in µm (shipped)": (args.mpp, args.mpp),
    }
    sets = {
        (split, mpp): tile_sets(args.data, degraded_at(mpp), keep, at_mpp=mpp)
        for split, keep in splits.items()
        for mpp in {MODEL_MPP, args.mpp}
    }
    names = ["clean", "good looks", *next(iter(sets.values()))[2]]
    print("| reading | sources | tiles | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for label, (mpp, measured_at) in readings.items():
        for split in splits:
            clean, looks, copies = sets[(split, mpp)]
            flagged = lambda tiles, at=measured_at: motion_score(tiles, at) > 1.0  # noqa: E731
            cells = [flagged(clean).mean(), flagged(looks).mean()]
            cells += [
                (1.0 - flagged(tiles).mean()) if name.startswith("streak") else flagged(tiles).mean()
                for name, tiles in copies.items()
            ]
            print(f"| {label} | {split} | {len(clean)} | " + " | ".join(f"{cell:.3f}" for cell in cells) + " |")
    print("\nClean, good looks and defocus: share flagged as motion; streaks: share missed.")


if __name__ == "__main__":
    main()
