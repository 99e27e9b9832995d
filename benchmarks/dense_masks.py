"""Where in a tile: the cell head's masks against true masks of local defects, and what cells cost a map.

    python benchmarks/dense_masks.py [--data ../shared/data] [--crops 40] [--model default] [--no-speed]

1. **Masks.** Crops of the catalogue's *holdout* files (``training/sources.toml``: two H&E tiles of the
   CMU source and three Chula smear fields, which neither the shipped model nor its cell head saw) get
   one defect inside a random mask covering 10–60 % of the 224 px tile (``training.cell_head.local_mask``:
   a disk, a band or a half-plane), at a severity from the family's floor to 1, by slideiqa's code and,
   separately, by another library (``training.cross_implementation``, composited in the same mask). The
   model runs as a map runs it (``Predictor.predict_with_cells``: ONNX, noise measured per cell); the
   dense mask is P(good) per cell, enlarged bilinearly (cell centres on the pixels they cover) and cut at
   0.5. Per family and code: IoU with the true mask (mean, median), the share of flagged cells under
   the mask given the right family, and the share of tiles the tile classifier flags. Then the share of
   cells of the clean crops flagged, by class, and the same on 30 clean crops of every catalogued
   group's files (training files included: the false cells a lab's own tissue may get).
2. **Speed.** ``map_slide`` on the 40 960 × 30 720 px benchmark slide of ``map_speed.py`` with and
   without cell arrays (``cells=False``), alternately, twice each, each into a fresh folder.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from slideiqa.explain.heatmaps import enlarge  # noqa: E402
from slideiqa.models.predictor import Predictor  # noqa: E402
from slideiqa.synthetic.distortions import FAMILIES, distort_local  # noqa: E402
from training.catalogue import load_catalogue  # noqa: E402
from training.cell_head import holdout_crops, local_mask, per_cell  # noqa: E402
from training.cross_implementation import degrade  # noqa: E402
from training.generalisation import FLOORS, CropPlan, cut_tiles  # noqa: E402


def dense_defect(cells: np.ndarray, good: int, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose bilinearly enlarged cell P(good) is below 0.5."""
    return enlarge(cells[..., good], shape) < 0.5


def masks(predictor: Predictor, crops: list[np.ndarray], mpp: float, rng: np.random.Generator) -> None:
    good, cell_px = predictor.card.good_index, predictor.card.cell_px
    print("| family | code | IoU (mean) | IoU (median) | right family, flagged cells under the mask | tiles flagged |")
    print("|---|---|---|---|---|---|")
    for family in FAMILIES:
        label = predictor.classes.index(family)
        for code in ("slideiqa", "other"):
            ious, right, flagged = [], [], []
            for crop in crops:
                mask = local_mask(rng, crop.shape[0])
                severity = float(rng.uniform(FLOORS[family], 1.0))
                if code == "slideiqa":
                    degraded = distort_local(crop, mask, family, severity, mpp=mpp, seed=rng)
                else:
                    whole, _ = degrade(crop, family, severity, mpp, rng)
                    degraded = np.where(mask[..., None], whole, crop)
                tile, cells = predictor.predict_with_cells(degraded[None])
                found = dense_defect(cells[0], good, mask.shape)
                ious.append((found & mask).sum() / max((found | mask).sum(), 1))
                under = per_cell(mask.astype(np.float32), cell_px) >= 0.5
                bad_under = under & (cells[0][..., good] < 0.5)
                if bad_under.any():
                    right.append((cells[0].argmax(-1)[bad_under] == label).mean())
                flagged.append(tile[0, good] < 0.5)
            print(
                f"| {family} | {code} | {np.mean(ious):.2f} | {np.median(ious):.2f} | "
                f"{np.mean(right) if right else float('nan'):.2f} | {np.mean(flagged):.2f} |"
            )
    _, cells = predictor.predict_with_cells(np.stack(crops))
    bad = cells[..., good] < 0.5
    by_class = ", ".join(
        f"{name} {(bad & (cells.argmax(-1) == i)).mean():.1%}" for i, name in enumerate(predictor.classes) if i != good
    )
    print(f"\nClean crops: {bad.mean():.1%} of {bad.size} cells flagged ({by_class})")


def clean_cells_per_group(predictor: Predictor, data: Path, plan: CropPlan, per_group: int = 30) -> None:
    """Cells flagged on clean crops of every group's files, by the class they are given."""
    good = predictor.card.good_index
    rng = np.random.default_rng(7)
    print(f"\n| group ({per_group} clean crops) | tiles flagged | cells flagged | flagged cells by most likely class |")
    print("|---|---|---|---|")
    for group in load_catalogue():
        crops = cut_tiles(group, group.paths(data, plan.cache, include_holdout=True), per_group, plan, rng)
        tiles, cells = predictor.predict_with_cells(np.stack(crops))
        bad = cells[..., good] < 0.5
        by_class = ", ".join(
            f"{name} {(bad & (cells.argmax(-1) == i)).mean():.1%}"
            for i, name in enumerate(predictor.classes)
            if (bad & (cells.argmax(-1) == i)).any()
        )
        print(f"| {group.name} | {(tiles[:, good] < 0.5).mean():.2f} | {bad.mean():.1%} | {by_class or '–'} |")


def speed(model: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from map_speed import HEIGHT, LEVELS, WIDTH
    from synthetic_slides import CACHE, build_slide

    from slideiqa import map_slide

    slide = build_slide(CACHE / "benchmark_40960x30720.tif", WIDTH, HEIGHT, LEVELS)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for cells in (True, False, True, False):
        out = Path(tempfile.mkdtemp()) / "benchmark.quality.zarr"
        started = time.perf_counter()
        result = map_slide(slide, out, model=model, cells=cells)
        wall = time.perf_counter() - started
        rates[cells].append(result.summary.tiles_per_s)
        print(
            f"map {'with' if cells else 'without'} cells: {result.summary.tissue_tiles} tiles, "
            f"{result.summary.tiles_per_s:.0f} tiles/s computing, {wall:.1f} s in all",
            flush=True,
        )
        shutil.rmtree(out.parent)
    with_cells, without = np.mean(rates[True]), np.mean(rates[False])
    print(f"ratio with / without cells: {with_cells / without:.2f} ({with_cells:.0f} / {without:.0f} tiles/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--crops", type=int, default=40, help="crops per holdout group")
    parser.add_argument("--model", default="default")
    parser.add_argument("--no-speed", action="store_true", help="skip the map speed comparison")
    args = parser.parse_args()
    predictor = Predictor(args.model, device="cpu")
    plan = CropPlan()
    rng = np.random.default_rng(2026)
    crops = holdout_crops(load_catalogue(), args.data, args.crops, plan, rng)
    print(
        f"{len(crops)} held-out crops, model {predictor.card.name or args.model}; a dense mask is P(good) per "
        f"{predictor.card.cell_px} px cell, enlarged bilinearly, below 0.5\n"
    )
    masks(predictor, crops, plan.mpp, rng)
    clean_cells_per_group(predictor, args.data, plan)
    if not args.no_speed:
        print()
        speed(args.model)


if __name__ == "__main__":
    main()
