"""Whether a batch can tell a slide toned wrongly *throughout* from its lab's other slides: the batch
report's tone comparison (``slideiqa.measure.slide_tone.cohort_deviation``) measured on each smear lab's fields.

    python training/analysis/cohort_tone.py ../shared/data

There are no sets of whole slides from one lab here, so each field of a lab's smear collection stands
for one slide: its tone is measured over the whole field, as a map's median over a slide's tiles. Per
lab: the share of its clean fields that depart from the lab's (false alarms, field-to-field variation
being at least as wide as slide-to-slide), and the share of whole-field tone errors at the exposure
floor (±1 EV), written by other libraries and by slideiqa, that do.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.exposure import adjust_gamma

from slideiqa.measure.slide_tone import DEPARTURE_Z, ToneReference, tone_deviation, tone_features
from slideiqa.synthetic.distortions import exposure

LABS = {"bccd": "smears/bccd", "chula_rbc12": "smears/chula_rbc12"}
#: Whole-field tone errors at the exposure floor (±1 EV at mid-grey).
ERRORS = {
    "skimage gamma 2": lambda field: adjust_gamma(field, 2.0),
    "skimage gamma 1/2": lambda field: adjust_gamma(field, 0.5),
    "OpenCV gain +1 EV": lambda field: cv2.convertScaleAbs(field, alpha=2.0),
    "OpenCV gain -1 EV": lambda field: cv2.convertScaleAbs(field, alpha=0.5),
    "slideiqa clip 0.5": lambda field: exposure(field, 0.5, kind="clip"),
}


def lab_fields(folder: Path) -> np.ndarray:
    fields = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob("*.jpg"))]
    shape = max({f.shape for f in fields}, key=[f.shape for f in fields].count)
    return np.stack([f for f in fields if f.shape == shape])


def main(data: Path) -> None:
    print(f"fields departing from their lab's tone by more than {DEPARTURE_Z:g} robust spreads")
    for lab, folder in LABS.items():
        fields = lab_fields(data / folder)
        clean = tone_features(fields)
        reference = ToneReference.of(clean, 5)
        false_alarms = float((tone_deviation(clean, reference) > DEPARTURE_Z).mean())
        print(f"  {lab} ({len(fields)} fields): clean {false_alarms:.3f}; reference {reference.to_dict()}")
        for name, error in ERRORS.items():
            toned = tone_features(np.stack([error(field) for field in fields]))
            print(f"    {name:>18}: {float((tone_deviation(toned, reference) > DEPARTURE_Z).mean()):.2f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/data"))
