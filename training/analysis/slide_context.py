"""A generalisation run's held-out groups judged in their own slide context (slideiqa.slide_context).

    python training/analysis/slide_context.py runs/generalisation

Reads the run's ``test_tiles.npz`` and ``probabilities-<group>.npy`` (each from a model that never saw
the group) and prints, per group, the measurement without context beside the three contexts of
``training/slide_context_measure.py``; noise is measured on the 224 px test tiles first
(``slideiqa.measure.noise_level``), as a map at 0.5 µm/px does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from slideiqa.measure.noise_level import judge_noise, noise_sigma

try:
    from slideiqa_training.generalisation import CLASSES, load_tile_set
    from slideiqa_training.slide_context_measure import context_table, measure_in_context
except ImportError:  # from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.modules["slideiqa_training"] = __import__("training")
    from slideiqa_training.generalisation import CLASSES, load_tile_set
    from slideiqa_training.slide_context_measure import context_table, measure_in_context


def main(run: Path) -> None:
    tiles = load_tile_set(run / "test_tiles.npz")
    rows = []
    for group in dict.fromkeys(tiles.groups.tolist()):
        path = run / f"probabilities-{group}.npy"
        if path.exists():
            held = tiles.subset(tiles.groups == group)
            judged = judge_noise(np.load(path), list(CLASSES), noise_sigma(held.images))
            rows.append(measure_in_context(group, held, judged))
    print(context_table(rows))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
