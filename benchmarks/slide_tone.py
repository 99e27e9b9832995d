"""The slide-tone check on real slides of varied tissue: a local tone error written by other libraries
into a 2 × 2-tile box of a real slide, mapped end to end.

    python benchmarks/slide_tone.py          # about 2 min on a 2-core AMD EPYC

The leave-one-group-out benchmark (training/README.md) treats each held-out group's tiles as a slide;
for groups that are one small field that slide is steadier than a real one. Here the slides are the
real ones at hand: the bundled CMU crop (skin: epidermis, dermis, fat) and HistoPrep's 2500 × 2500
prostate-like field (glands, stroma), written as 0.5 µm/px pyramidal TIFFs. For each slide, tone
error and box (boxes of four tissue tiles that the clean slide's map calls good), the box is given the
error, the slide is mapped, and a box tile counts as flagged when its score is below 0.5. Beside it:
the same tiles judged one by one (the map's judgement without the slide's tone), how many box tiles
depart from the slide's tone, and how many clean tiles elsewhere do (false alarms).
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.exposure import adjust_gamma

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from slideiqa import map_slide  # noqa: E402
from slideiqa.io.slide import open_slide  # noqa: E402
from slideiqa.measure.slide_tone import DEPARTURE_Z, tone_deviation  # noqa: E402
from slideiqa.models.predictor import Predictor  # noqa: E402
from slideiqa.outputs.store import FIXED_LABELS, open_map  # noqa: E402

from slides import write_pyramidal_tiff  # noqa: E402

DATA = HERE.parent / "examples" / "data"
SHARED = HERE.parent.parent / "shared" / "data"
TILE = 224
BOXES = 6
ERRORS = {
    "skimage gamma 2": lambda pixels: adjust_gamma(pixels, 2.0),
    "skimage gamma 1/2": lambda pixels: adjust_gamma(pixels, 0.5),
    "OpenCV gain x2": lambda pixels: cv2.convertScaleAbs(pixels, alpha=2.0),
    "OpenCV gain x1/2": lambda pixels: cv2.convertScaleAbs(pixels, alpha=0.5),
}


def real_slides() -> dict[str, np.ndarray]:
    with open_slide(DATA / "cmu_small_region.svs") as slide:
        slides = {"CMU crop": np.array(slide.read_region((0, 0), 0, slide.dimensions))}
    histoprep = SHARED / "fields_more" / "histoprep_slide.jpeg"
    if histoprep.exists():
        slides["HistoPrep field"] = np.asarray(Image.open(histoprep).convert("RGB"))
    return slides


def good_boxes(quality, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left corners of ``count`` 2 × 2-tile boxes whose four tiles the clean map calls good."""
    good = quality.array("score") >= 0.5
    corners = [
        (r, c) for r in range(good.shape[0] - 1) for c in range(good.shape[1] - 1) if good[r : r + 2, c : c + 2].all()
    ]
    return [corners[i] for i in rng.choice(len(corners), size=min(count, len(corners)), replace=False)]


def main() -> None:
    predictor = Predictor("default")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for number, (name, pixels) in enumerate(real_slides().items()):
            clean = map_slide(
                write_pyramidal_tiff(work / f"{number}-clean.tif", pixels, mpp=0.5, compression="zlib"),
                work / f"{number}-clean.quality.zarr",
            )
            quality = open_map(clean.path)
            found = quality.attributes["tone_context"]
            print(
                f"\n{name}: {found['tiles_compared']} tissue tiles, {found['tiles_departing']} depart from its tone "
                f"when clean; spreads {[(k, v['spread']) for k, v in found['reference'].items()]}"
            )
            boxes = good_boxes(quality, BOXES, rng)
            names = {value: name for name, value in FIXED_LABELS.items()}
            print(
                "| error | box tiles: flagged / labelled an artefact / background / passed | flagged one by one "
                "| depart from the slide's tone | clean tiles departing elsewhere |"
            )
            print("|---|---|---|---|---|")
            for kind, (error_name, error) in enumerate(ERRORS.items()):
                outcomes = Counter()
                alone = departing = false_alarms = clean_tiles = 0
                for index, (r, c) in enumerate(boxes):
                    box = np.s_[r * TILE : (r + 2) * TILE, c * TILE : (c + 2) * TILE]
                    toned = pixels.copy()
                    toned[box] = error(np.ascontiguousarray(toned[box]))
                    stem = work / f"{number}-{kind}-{index}"
                    path = write_pyramidal_tiff(stem.with_suffix(".tif"), toned, mpp=0.5, compression="zlib")
                    result = open_map(map_slide(path, stem.with_suffix(".quality.zarr")).path)
                    in_box = np.zeros(result.array("score").shape, bool)
                    in_box[r : r + 2, c : c + 2] = True
                    outcomes.update(
                        _outcome(score, label, names)
                        for score, label in zip(result.array("score")[in_box], result.array("label")[in_box])
                    )
                    tiles = np.stack(
                        [
                            toned[y * TILE : (y + 1) * TILE, x * TILE : (x + 1) * TILE]
                            for y, x in zip(*np.nonzero(in_box))
                        ]
                    )
                    alone += int((predictor.score(predictor.predict(tiles)) < 0.5).sum())
                    tone = result.array("tone")
                    assessed = np.isfinite(result.array("probs")).all(axis=0)
                    deviation = np.zeros(in_box.shape)
                    deviation[assessed] = tone_deviation(tone[:, assessed].T)
                    departing += int((deviation[in_box] > DEPARTURE_Z).sum())
                    false_alarms += int((deviation[assessed & ~in_box] > DEPARTURE_Z).sum())
                    clean_tiles += int((assessed & ~in_box).sum())
                total = 4 * len(boxes)
                artefacts = ", ".join(f"{n} {name}" for name, n in outcomes.items() if name not in SIMPLE_OUTCOMES)
                shares = (
                    " / ".join(f"{outcomes[name] / total:.2f}" for name in ("flagged",))
                    + f" / {sum(n for name, n in outcomes.items() if name not in SIMPLE_OUTCOMES) / total:.2f}"
                    + (f" ({artefacts})" if artefacts else "")
                    + f" / {outcomes['background'] / total:.2f} / {outcomes['passed'] / total:.2f}"
                )
                print(
                    f"| {error_name} | {shares} | {alone / total:.2f} | {departing / total:.2f} "
                    f"| {false_alarms} of {clean_tiles} |"
                )


SIMPLE_OUTCOMES = ("flagged", "background", "passed")


def _outcome(score: float, label: int, names: dict[int, str]) -> str:
    """What became of one tile in a map: flagged (score below 0.5), an artefact's name, background
    (no longer taken for tissue) or passed."""
    if label == 0:
        return "background"
    if np.isnan(score):
        return names.get(int(label), str(label))
    return "flagged" if score < 0.5 else "passed"


if __name__ == "__main__":
    main()
