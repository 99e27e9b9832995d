"""How much of its stain a whole slide clips to white: clean fields, scanner-like looks of them, and
the same fields given too much light — the measurement that kept a slide-wide over-exposure rule out
(``docs/history.md`` row 47: bright scanner looks clip as much stain as twice the light does on
DAB-dense IHC).

    python training/analysis/slide_clipping.py [--data ../shared/data] [--looks 3]

Every clean field of ``benchmarks/clean_tissue.py``'s catalogue (held-out and catalogued sources) is
brought to the model's 0.5 µm/px (Lanczos) and cut into its 224 px grid tiles, kept where at least a
quarter of the pixels are tissue-dark. Per field, the median over its tiles of the share of stained
pixels clipped to white in some channel (``exposure_evidence.exposure_measurements``) — as a map's
finish step reads it from its tone array — for the field as it is, for ``--looks`` scanner-like
looks of the whole field (``appearance.vary_good`` with one draw per field: a scanner's look is the
slide's), and for the field given +1 EV by slideiqa's flat and gain kinds and OpenCV's gain.
Prints per source the clean fields' and looks' highest median and the over-exposed copies' lowest,
and the share of over-exposed copies beyond ``slide_tone.OVER_EXPOSED_STAIN``. About a minute.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from clean_tissue import catalogue_fields  # noqa: E402
from field_tiles import MODEL_MPP, field_at_model_scale, tissue_tiles  # noqa: E402

from slideiqa.measure.exposure_evidence import exposure_measurements  # noqa: E402
from slideiqa.synthetic.distortions import exposure  # noqa: E402
from training.appearance import vary_good  # noqa: E402
from training.generalisation import FLOORS  # noqa: E402

#: The rule measured: a slide whose tissue tiles' median clipped-stain share passes OVER_EXPOSED_STAIN,
#: over at least MIN_OVER_EXPOSED_TILES tiles, called over-exposed throughout.
OVER_EXPOSED_STAIN, MIN_OVER_EXPOSED_TILES = 0.08, 3


def slide_median(field: np.ndarray) -> float | None:
    """The median clipped-stain share over the field's tissue tiles; None with too few of them."""
    tiles = tissue_tiles(field)
    if len(tiles) < MIN_OVER_EXPOSED_TILES:
        return None
    return float(np.median(exposure_measurements(np.stack(tiles))["clipped_stain"]))


BRIGHTER = {
    "slideiqa flat +1 EV": lambda f: exposure(f, FLOORS["exposure"], mpp=MODEL_MPP, seed=7, kind="flat", direction=1),
    "slideiqa gain +1 EV": lambda f: exposure(f, FLOORS["exposure"], mpp=MODEL_MPP, seed=7, kind="gain", direction=1),
    "OpenCV gain ×2": lambda f: cv2.convertScaleAbs(f, alpha=2.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--looks", type=int, default=3)
    args = parser.parse_args()
    sources, _, _ = catalogue_fields(args.data)
    print(
        f"| source | fields (≥ {MIN_OVER_EXPOSED_TILES} tiles) | clean: highest median | looks: highest | "
        f"looks beyond {OVER_EXPOSED_STAIN} | over-exposed: lowest | over-exposed beyond {OVER_EXPOSED_STAIN} |"
        "\n|---|---|---|---|---|---|---|"
    )
    rng = np.random.default_rng(2026)
    for name, fields in sources.items():
        clean, looks, bright = [], [], []
        for item in fields:
            field = field_at_model_scale(item.path, item.mpp)
            clean.append(slide_median(field))
            looks += [slide_median(vary_good(field, rng)) for _ in range(args.looks)]
            bright += [slide_median(np.ascontiguousarray(degrade(field))) for degrade in BRIGHTER.values()]
        clean_medians, look_medians, bright_medians = (
            [float(v) for v in values if v is not None] for values in (clean, looks, bright)
        )
        if not clean_medians:
            continue
        beyond = (
            f"{np.mean(np.array(bright_medians) > OVER_EXPOSED_STAIN):.2f} of {len(bright_medians)}"
            if bright_medians
            else "–"
        )
        looks_beyond = (
            f"{np.mean(np.array(look_medians) > OVER_EXPOSED_STAIN):.2f} of {len(look_medians)}"
            if look_medians
            else "–"
        )
        print(
            f"| {name} | {len(clean_medians)} | {max(clean_medians):.3f} | "
            f"{max(look_medians, default=float('nan')):.3f} | {looks_beyond} | "
            f"{min(bright_medians, default=float('nan')):.3f} | {beyond} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
