"""The measured families on every clean field's tiles, and on the same fields degraded at the floors:
the figures ``slideiqa/measure/noise_level.py``, ``jpeg_quantisation.py``, ``motion_blur.py`` and
``exposure_evidence.py`` (certain over-exposure) quote.

    python training/analysis/field_measurements.py [--data ../shared/data]

Every clean field of ``benchmarks/clean_tissue.py``'s catalogue (held-out and catalogued sources) at
or finer than 0.55 µm/px is brought to the model's 0.5 µm/px (Lanczos), degraded *as a whole* — noise
σ 15 (slideiqa's three kinds, scikit-image's, albumentations'), a 5 µm streak (slideiqa's uniform and
accelerating, albumentations', OpenCV's), JPEG at quality 15 (Pillow 4:2:0 and 4:4:4, OpenCV,
albumentations) and at the qualities scanners write (30, 50, 75), twice the light (slideiqa's gain,
OpenCV's) — and cut into 224 px tiles on a
112 px stride, kept where at least 10 % of the pixels are tissue-dark. Three good looks of each clean
tile (``appearance.vary_good``: stain, calibration, the scanner's sharpening and compression) stand
for scanners the fields did not come from. Prints per measurement its clean extremes and the share of
defective tiles it misses. Takes about two minutes here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from clean_tissue import catalogue_fields, resampled  # noqa: E402

from slideiqa.io.slide import open_slide  # noqa: E402
from slideiqa.measure.exposure_evidence import (  # noqa: E402
    CERTAIN_CLIPPED_STAIN,
    CERTAIN_CLIPPED_TILE,
    exposure_evidence,
    exposure_measurements,
)
from slideiqa.measure.jpeg_quantisation import JPEG_SCALE, MIN_BLOCKINESS, block_grid, jpeg_scale  # noqa: E402
from slideiqa.measure.motion_blur import motion_score  # noqa: E402
from slideiqa.measure.noise_level import NOISE_SIGMA, noise_sigma  # noqa: E402
from slideiqa.synthetic.distortions import KINDS, distort, exposure, jpeg_round_trip  # noqa: E402
from training.appearance import vary_good  # noqa: E402
from training.cross_implementation import IMPLEMENTATIONS  # noqa: E402
from training.generalisation import FLOORS  # noqa: E402

MODEL_MPP, TILE, STRIDE = 0.5, 224, 112
#: A tile is kept where this share of its pixels has an RGB sum below DARK_SUM (tissue, not glass).
MIN_TISSUE, DARK_SUM = 0.10, 630
GOOD_LOOKS = 3


def copies_of(field: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The field degraded whole by every implementation of the measured families."""
    seed = lambda: int(rng.integers(2**31))  # noqa: E731
    out = {
        f"noise slideiqa {kind}": distort(field, "noise", FLOORS["noise"], seed=seed(), kind=kind)
        for kind in KINDS["noise"]
    }
    out |= {
        f"motion slideiqa {kind}": distort(field, "motion", FLOORS["motion"], seed=seed(), kind=kind)
        for kind in KINDS["motion"]
    }
    for family in ("noise", "motion", "jpeg"):
        for name, implementation in IMPLEMENTATIONS[family].items():
            out[f"{family} {name}"] = implementation(field, FLOORS[family], MODEL_MPP, np.random.default_rng(seed()))
    out |= {
        "jpeg Pillow q15 4:2:0": jpeg_round_trip(field, 15),
        "jpeg Pillow q15 4:4:4": jpeg_round_trip(field, 15, chroma_subsampled=False),
    }
    out |= {f"scanner Pillow q{quality}": jpeg_round_trip(field, quality) for quality in (30, 50, 75)}
    out |= {
        "exposure slideiqa gain brighter": exposure(field, FLOORS["exposure"], kind="gain", direction=1),
        "exposure OpenCV gain ×2": cv2.convertScaleAbs(field, alpha=2.0),
    }
    return out


Copies = Callable[[np.ndarray, np.random.Generator], dict[str, np.ndarray]]


def clean_fields(
    data: Path, keep: Callable[[str], bool] = lambda source: True, at_mpp: float = MODEL_MPP
) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, pixels at ``at_mpp`` µm/px) of every clean field of the catalogue's sources ``keep``
    names, at or finer than the model's scale (10 % coarser allowed), one at a time."""
    sources, _, _ = catalogue_fields(data)
    for source, fields in sources.items():
        if not keep(source):
            continue
        for item in fields:
            with open_slide(item.path) as slide:
                mpp = item.mpp or slide.mpp or MODEL_MPP
                pixels = slide.read_region((0, 0), 0, slide.dimensions)
            if mpp > MODEL_MPP * 1.1:
                continue
            yield Path(str(item.path)), pixels if abs(mpp - at_mpp) < 0.01 else resampled(pixels, mpp, at_mpp)


def tile_sets(
    data: Path,
    copies_of: Copies = copies_of,
    keep: Callable[[str], bool] = lambda source: True,
    at_mpp: float = MODEL_MPP,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(clean tiles, their good looks, {copy: tiles}) of every clean field at ``at_mpp`` µm/px (the
    model's, or a 20× scanner's slightly coarser one), of the sources ``keep`` names, each field
    degraded by ``copies_of``."""
    rng = np.random.default_rng(2026)
    clean: list = []
    looks: list = []
    degraded: dict = {}
    for _, field in clean_fields(data, keep, at_mpp):
        copies = copies_of(field, rng)
        height, width = field.shape[:2]
        for top in range(0, height - TILE + 1, STRIDE):
            for left in range(0, width - TILE + 1, STRIDE):
                window = np.s_[top : top + TILE, left : left + TILE]
                if (field[window].astype(np.int32).sum(axis=-1) < DARK_SUM).mean() < MIN_TISSUE:
                    continue
                clean.append(field[window])
                looks.extend(vary_good(field[window], rng) for _ in range(GOOD_LOOKS))
                for name, copy in copies.items():
                    degraded.setdefault(name, []).append(copy[window])
    return np.stack(clean), np.stack(looks), {name: np.stack(tiles) for name, tiles in degraded.items()}


def report(
    name: str,
    clean: np.ndarray,
    looks: np.ndarray,
    degraded: dict[str, np.ndarray],
    measure,
    threshold: float,
    family: str,
) -> None:
    """One measurement's clean extremes and, per copy of ``family``, the share of tiles it misses."""
    on_clean, on_looks = measure(clean), measure(looks)
    print(
        f"\n{name} (threshold {threshold:g}): clean tiles {len(clean)}, highest {on_clean.max():.2f}, "
        f"above {int((on_clean > threshold).sum())}; good looks {len(looks)}, 99.5th percentile "
        f"{np.percentile(on_looks, 99.5):.2f}, above {int((on_looks > threshold).sum())}"
    )
    print("| copy | lowest | median | highest | missed (≤ threshold) |\n|---|---|---|---|---|")
    for copy, tiles in degraded.items():
        if copy.split()[0] != family:
            continue
        values = measure(tiles)
        print(
            f"| {copy} | {values.min():.2f} | {np.median(values):.2f} | {values.max():.2f} "
            f"| {(values <= threshold).mean():.4f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    clean, looks, degraded = tile_sets(args.data)
    report("noise σ, grey levels", clean, looks, degraded, noise_sigma, NOISE_SIGMA, "noise")
    report("motion score", clean, looks, degraded, motion_score, 1.0, "motion")
    report("JPEG table scale", clean, looks, degraded, jpeg_scale, JPEG_SCALE, "jpeg")
    report("JPEG table scale, quality scanners write", clean, looks, degraded, jpeg_scale, JPEG_SCALE, "scanner")
    report(
        "certain over-exposure (P(exposure) floored)",
        clean,
        looks,
        degraded,
        lambda tiles: exposure_evidence(tiles).floor,
        0.0,
        "exposure",
    )
    for share, threshold in (("clipped_stain", CERTAIN_CLIPPED_STAIN), ("clipped_tile", CERTAIN_CLIPPED_TILE)):
        report(
            f"{share} (certain beyond {threshold:g}, with the other)",
            clean,
            looks,
            degraded,
            lambda tiles, share=share: exposure_measurements(tiles)[share],
            threshold,
            "exposure",
        )
    print(
        f"\nJPEG block grid (blockiness ≥ {MIN_BLOCKINESS}, read further): "
        f"clean {np.mean(block_grid(clean)[2] >= MIN_BLOCKINESS):.2f} of tiles; lowest blockiness at quality 15: "
        + ", ".join(
            f"{copy.removeprefix('jpeg ')} {block_grid(tiles)[2].min():.2f}"
            for copy, tiles in degraded.items()
            if copy.startswith("jpeg")
        )
    )


if __name__ == "__main__":
    main()
