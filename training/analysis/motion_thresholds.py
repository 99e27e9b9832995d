"""Where the motion measurement's thresholds come from, and how they hold on sources never seen.

    python training/analysis/motion_thresholds.py runs/generalisation

Reads a generalisation run's ``train_tiles.npz`` and ``test_tiles.npz``. The two anisotropies of
``slideiqa.measure.motion_blur`` are computed for every tile; the thresholds are the pair, on a grid, that
misses the fewest *training* motion copies at the 5 µm floor or stronger while flagging at most
``MAX_GOOD_FLAGGED`` of the training good looks. Then, per held-out group, with the shipped pair and
with a pair chosen again without that group's training tiles (so that nothing of the group is seen):
the share of its sharp test tiles called motion, of its motion tiles flagged (slideiqa's code / other
libraries'), and of its other defects called motion.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

try:
    from slideiqa_training.generalisation import FLOORS, load_tile_set
except ImportError:  # from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.modules["slideiqa_training"] = __import__("training")
    from slideiqa_training.generalisation import FLOORS, load_tile_set

from slideiqa.measure.motion_blur import MOTION_FINE, MOTION_RATIO, motion_anisotropy

MAX_GOOD_FLAGGED = 0.002
FINE_GRID = np.round(np.arange(2.0, 5.01, 0.1), 2)
RATIO_GRID = np.round(np.arange(2.0, 4.01, 0.05), 2)


def choose_thresholds(
    anisotropy: np.ndarray, good: np.ndarray, streaked: np.ndarray
) -> tuple[float, float, float, float]:
    """(fine, ratio, share of streaks missed, share of good flagged) of the best pair on the grid."""
    best = None
    for fine in FINE_GRID:
        above_fine = anisotropy[:, 0] > fine
        for ratio in RATIO_GRID:
            flagged = above_fine & (anisotropy[:, 1] > ratio)
            good_flagged, missed = flagged[good].mean(), 1.0 - flagged[streaked].mean()
            if good_flagged <= MAX_GOOD_FLAGGED and (best is None or missed < best[2]):
                best = (float(fine), float(ratio), float(missed), float(good_flagged))
    if best is None:
        raise SystemExit(f"no pair on the grid flags at most {MAX_GOOD_FLAGGED:.1%} of the good looks")
    return best


def main(run: Path) -> None:
    train, test = load_tile_set(run / "train_tiles.npz"), load_tile_set(run / "test_tiles.npz")
    train_anisotropy, test_anisotropy = motion_anisotropy(train.images), motion_anisotropy(test.images)
    good = train.families == "none"
    streaked = (train.families == "motion") & (train.severities >= FLOORS["motion"])
    fine, ratio, missed, good_flagged = choose_thresholds(train_anisotropy, good, streaked)
    print(
        f"Thresholds from every group's training tiles: fine {fine:.2f}, ratio {ratio:.2f} (shipped: "
        f"{MOTION_FINE}, {MOTION_RATIO}); training motion ≥ floor missed {missed:.4f}, good looks flagged "
        f"{good_flagged:.4f}\n"
    )
    print(
        "| held-out group | thresholds without it | sharp called motion | motion flagged, ours / other code "
        "| other defects called motion |"
    )
    print("|---|---|---|---|---|")
    sharp, ours = test.families == "none", test.makers == "slideiqa"
    for group in dict.fromkeys(test.groups.tolist()):
        here = test.groups == group
        without = choose_thresholds(
            train_anisotropy, good & (train.groups != group), streaked & (train.groups != group)
        )
        cells = []
        for pair in ((fine, ratio), without[:2]):
            flagged = (test_anisotropy[:, 0] > pair[0]) & (test_anisotropy[:, 1] > pair[1])
            motion = here & (test.families == "motion")
            others = here & ~sharp & (test.families != "motion")
            cells.append(
                (
                    flagged[here & sharp].mean(),
                    flagged[motion & ours].mean(),
                    flagged[motion & ~ours].mean(),
                    flagged[others].mean(),
                )
            )
        shipped, held = cells
        print(
            f"| {group} | {without[0]:.2f} / {without[1]:.2f} | {shipped[0]:.3f} ({held[0]:.3f}) | "
            f"{shipped[1]:.2f} / {shipped[2]:.2f} ({held[1]:.2f} / {held[2]:.2f}) | {shipped[3]:.3f} ({held[3]:.3f}) |"
        )
    print("\n(in brackets: with the thresholds chosen without the held-out group)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
