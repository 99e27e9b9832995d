"""Where the motion measurement's fine band starts: the shipped band against the one it replaced and one
tried, with the thresholds unchanged, on clean fields the model trains on and on fields of hospitals it never saw.

    python training/analysis/motion_bands.py [--data ../shared/data]

Every clean field of ``benchmarks/clean_tissue.py``'s catalogue at the model's 0.5 µm/px (as
``field_measurements.py`` cuts them), streaked whole at the 5 µm floor (slideiqa's uniform and
accelerating kinds, albumentations', OpenCV's) and at 12 µm (slideiqa's two kinds), and defocused by
1 µm. Per band and per split (sources the model trains on / held-out sources): the share of clean
tiles, good looks and defocused tiles flagged as motion, and of each kind of streak missed. An
accelerating streak's transfer function has no zeros, so it removes least at the fine band's low end;
the band decides how many of them are seen. Takes about four minutes here.
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

from slideiqa.measure import motion_blur
from slideiqa.synthetic.distortions import KINDS, distort
from training.cross_implementation import IMPLEMENTATIONS
from training.generalisation import FLOORS

#: The fine bands compared (cycles/px): the one the measurement used first, the shipped one, one tried.
BANDS = {
    "0.12–0.35 (before)": (0.12, 0.35),
    f"{motion_blur.FINE_BAND[0]}–{motion_blur.FINE_BAND[1]} (shipped)": motion_blur.FINE_BAND,
    "0.14–0.35 (tried)": (0.14, 0.35),
}
STRONG = 1.0  # severity of a 12 µm streak


def streaked(field: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The field streaked at the floor by every implementation, at 12 µm by slideiqa's, defocused by 1 µm."""
    seed = lambda: int(rng.integers(2**31))  # noqa: E731
    out = {
        f"streak 5 µm slideiqa {kind}": distort(field, "motion", FLOORS["motion"], seed=seed(), kind=kind)
        for kind in KINDS["motion"]
    }
    out |= {
        f"streak 5 µm {name}": implementation(field, FLOORS["motion"], 0.5, np.random.default_rng(seed()))
        for name, implementation in IMPLEMENTATIONS["motion"].items()
    }
    out |= {
        f"streak 12 µm slideiqa {kind}": distort(field, "motion", STRONG, seed=seed(), kind=kind)
        for kind in KINDS["motion"]
    }
    out["defocus 1 µm"] = distort(field, "defocus", FLOORS["defocus"], seed=seed())
    return out


def flagged(tiles: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Whether each tile is motion by the shipped thresholds with ``band`` as the fine band."""
    motion_blur._sector_bins.cache_clear()
    shipped, motion_blur.FINE_BAND = motion_blur.FINE_BAND, band
    try:
        return motion_blur.motion_score(tiles) > 1.0
    finally:
        motion_blur.FINE_BAND = shipped
        motion_blur._sector_bins.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    splits = {"trained on": lambda source: source not in HELD_OUT, "held out": lambda source: source in HELD_OUT}
    sets = {split: tile_sets(args.data, streaked, keep) for split, keep in splits.items()}
    names = ["clean", "good looks", *sets["held out"][2]]
    print("| fine band | sources | tiles | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for label, band in BANDS.items():
        for split, (clean, looks, copies) in sets.items():
            cells = [flagged(clean, band).mean(), flagged(looks, band).mean()]
            cells += [
                (1.0 - flagged(tiles, band).mean()) if name.startswith("streak") else flagged(tiles, band).mean()
                for name, tiles in copies.items()
            ]
            print(f"| {label} | {split} | {len(clean)} | " + " | ".join(f"{cell:.3f}" for cell in cells) + " |")
    print("\nClean, good looks and defocus: share flagged as motion; streaks: share missed.")


if __name__ == "__main__":
    main()
