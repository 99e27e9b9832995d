"""Do the explanation heatmaps point at the defect? IoU with true masks of local defects.

    python benchmarks/explain_masks.py [--data ../shared/data] [--crops 40] [--method auto|cells|gradcam]

The seed's question ("analyze the activation maps and see if the explanation is consistent with the
spatial placement of the noise") answered with a number. Crops of the catalogue's *holdout* files
(``training/sources.toml``: two H&E tiles of the CMU source and three Chula smear fields, which no
shipped model was trained on) get one defect inside a mask covering 10–60 % of the 224 px tile — a
disk, a band or a half-plane — by slideiqa's code (``distort_local``) and, separately, by another
library (``training.cross_implementation``, composited inside the same mask). Per family and code:

* IoU of ``Explanation.where`` (pixels at ≥ ``WHERE_SHARE`` of the heatmap's maximum and, for a cell
  map, at least ``CELL_WHERE_FLOOR``) with the mask;
* the share of tiles whose heatmap peaks inside the mask;
* the share of those tiles the model flags at all (P(good) < 0.5), for context.

``--method`` chooses the heatmaps (``slideiqa.explain.heatmaps.explainer_for``): the model's own cell map where
it has a cell head (``auto``, as ``slideiqa explain`` does), or Grad-CAM of its tile classifier.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from slideiqa.explain.heatmaps import WHERE_SHARE, explain_image, explainer_for  # noqa: E402
from slideiqa.synthetic.distortions import FAMILIES, distort_local  # noqa: E402
from training.catalogue import load_catalogue  # noqa: E402
from training.cell_head import holdout_crops, local_mask  # noqa: E402
from training.cross_implementation import degrade  # noqa: E402
from training.generalisation import CropPlan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--crops", type=int, default=40, help="crops per source group")
    parser.add_argument("--method", default="auto", choices=("auto", "cells", "gradcam"))
    args = parser.parse_args()
    explainer = explainer_for(method=args.method)
    plan = CropPlan()
    rng = np.random.default_rng(2026)
    crops = holdout_crops(load_catalogue(), args.data, args.crops, plan, rng)
    floor = f" and ≥ {explainer.where_floor:g}" if explainer.where_floor else ""
    print(
        f"{len(crops)} held-out crops; {explainer.method}; heatmap pixels at ≥ {WHERE_SHARE:g} × its maximum{floor}\n"
    )
    print("| family | code | IoU (mean) | IoU (median) | peak inside | flagged |")
    print("|---|---|---|---|---|---|")
    for family in FAMILIES:
        for code in ("slideiqa", "other"):
            ious, peaks, flagged = [], [], []
            for crop in crops:
                mask = local_mask(rng)
                severity = float(rng.uniform(0.5, 1.0))
                if code == "slideiqa":
                    degraded = distort_local(crop, mask, family, severity, mpp=plan.mpp, seed=rng)
                else:
                    whole, _ = degrade(crop, family, severity, plan.mpp, rng)
                    degraded = np.where(mask[..., None], whole, crop)
                explanation = explain_image(degraded, explainer)
                where = explanation.where(family)
                heat = explanation.heatmaps[family]
                ious.append((where & mask).sum() / max((where | mask).sum(), 1))
                peaks.append(bool(heat.max() > 0 and mask.flat[int(heat.argmax())]))
                flagged.append(explanation.probabilities[0, explainer.card.good_index] < 0.5)
            print(
                f"| {family} | {code} | {np.mean(ious):.2f} | {np.median(ious):.2f} | {np.mean(peaks):.2f} | "
                f"{np.mean(flagged):.2f} |"
            )


if __name__ == "__main__":
    main()
