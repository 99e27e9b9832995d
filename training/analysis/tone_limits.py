"""What the slide-tone limit does on the held-out groups: bars met, sharp pass and exposure flagged at
several limits, for a good slide of each lab and for a mostly defective one.

    python training/analysis/tone_limits.py runs/base

The limit (``slideiqa.measure.slide_tone.DEPARTURE_Z``) was set on physical grounds; this is the look at its
effect afterwards that ``training/README.md`` quotes. Reads the run's ``test_tiles.npz`` and
``probabilities-<group>.npy`` (leave-one-group-out).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

try:
    from slideiqa_training.generalisation import ModelRecipe, load_tile_set
    from slideiqa_training.generalisation_runner import measure_fold
except ImportError:  # from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.modules["slideiqa_training"] = __import__("training")
    from slideiqa_training.generalisation import ModelRecipe, load_tile_set
    from slideiqa_training.generalisation_runner import measure_fold

import slideiqa.measure.slide_tone as slide_tone

LIMITS = (3.0, 4.0, 5.0, 6.0)


def main(run: Path) -> None:
    tiles = load_tile_set(run / "test_tiles.npz")
    groups = [g for g in dict.fromkeys(tiles.groups.tolist()) if (run / f"probabilities-{g}.npy").exists()]
    shipped = slide_tone.DEPARTURE_Z
    print(
        "limit: bars met in a good slide / in a mostly defective one; per group sharp pass / exposure "
        "flagged by slideiqa's code / by other code"
    )
    try:
        for limit in LIMITS:
            slide_tone.DEPARTURE_Z = limit  # read at call time by departure_probability
            rows = [
                measure_fold(g, tiles.subset(tiles.groups == g), np.load(run / f"probabilities-{g}.npy"), ModelRecipe())
                for g in groups
            ]
            bars = sum(sum(row["meets"].values()) for row in rows)
            defective = sum(sum(row["context_all_tiles"]["meets"].values()) for row in rows)
            shipped_mark = " (shipped)" if limit == shipped else ""
            print(f"{limit:.0f} z{shipped_mark}: {bars} / {defective} bars")
            for row in rows:
                print(
                    f"  {row['group']:>15}: {row['sharp_pass']:.2f} / {row['flagged']['exposure']:.2f} / "
                    f"{row['flagged_other']['exposure']:.2f}"
                )
    finally:
        slide_tone.DEPARTURE_Z = shipped


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/base"))
