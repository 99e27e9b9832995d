"""What judging against the slide does to a slide toned wrongly *throughout*: each held-out group's
sharp test tiles given one exposure error each (slideiqa's kinds at the ±1 EV floor, OpenCV's gain),
forming a slide of their own, judged by the shipped model with and without the slide's tone.

    python training/analysis/tone_throughout.py runs/base

Such a slide is its own reference, so nothing departs; what can change is the clearing of exposure
on tiles that fit their slide (``slideiqa.measure.slide_tone.fit_probability``), which a calibrated glass
allows. ``training/README.md`` quotes the table. The shipped model saw other tiles of these groups,
so its flags are the optimistic end; the difference between the columns is the point.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

try:
    from slideiqa_training.generalisation import CLASSES, load_tile_set
except ImportError:  # from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.modules["slideiqa_training"] = __import__("training")
    from slideiqa_training.generalisation import CLASSES, load_tile_set

from slideiqa.measure.slide_tone import judge_against_slide, judge_tone, tone_deviation, tone_features
from slideiqa.models.predictor import Predictor
from slideiqa.synthetic.distortions import exposure

ERRORS = {
    "gamma, paler (γ ½)": lambda tile: exposure(tile, 0.5, kind="gamma", direction=1),
    "gamma, darker (γ 2)": lambda tile: exposure(tile, 0.5, kind="gamma", direction=-1),
    "gain +1 EV": lambda tile: exposure(tile, 0.5, kind="gain", direction=1),
    "gain −1 EV": lambda tile: exposure(tile, 0.5, kind="gain", direction=-1),
    "flat +1 EV": lambda tile: exposure(tile, 0.5, kind="flat", direction=1),
    "flat −1 EV": lambda tile: exposure(tile, 0.5, kind="flat", direction=-1),
    "OpenCV gain × 2": lambda tile: cv2.convertScaleAbs(tile, alpha=2.0),
    "OpenCV gain × ½": lambda tile: cv2.convertScaleAbs(tile, alpha=0.5),
}


def main(run: Path) -> None:
    tiles = load_tile_set(run / "test_tiles.npz")
    predictor = Predictor("default")
    order = [predictor.classes.index(name) for name in CLASSES]
    groups = list(dict.fromkeys(tiles.groups.tolist()))
    print(
        "error throughout: flagged share, mean over groups, departing only / departing and clearing;"
        " groups that lose more than 0.05"
    )
    for name, error in ERRORS.items():
        before, after, losses = [], [], []
        for group in groups:
            sharp = tiles.images[(tiles.groups == group) & (tiles.families == "none")]
            toned = np.stack([error(tile) for tile in sharp])
            probabilities = predictor.predict(toned)[:, order]
            features = tone_features(toned)
            departing = judge_tone(probabilities, list(CLASSES), tone_deviation(features))
            judged = judge_against_slide(probabilities, list(CLASSES), features)
            before.append(float((departing[:, 0] < 0.5).mean()))
            after.append(float((judged[:, 0] < 0.5).mean()))
            if before[-1] - after[-1] > 0.05:
                losses.append(f"{group} {before[-1]:.2f} → {after[-1]:.2f}")
        print(f"  {name:>20}: {np.mean(before):.2f} / {np.mean(after):.2f}  {'; '.join(losses)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/base"))
