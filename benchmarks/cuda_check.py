"""``--device cuda`` against the CPU path, on a machine with an NVIDIA GPU: speed and agreement.

Prepared to fit a short loan of a GPU machine (needs the ``torch`` extra with a CUDA build). On the
benchmark slide of ``map_speed.py`` and the 40× one of ``map_speed_40x.py`` (each built on first use,
``--scale`` of their size to keep the build short) it measures, in one run:

(a) OpenSlide reading the map's tissue tiles, one thread per core;
(b) ``map_slide`` on the CPU (ONNX Runtime), and ``slideiqa batch`` of the two slides on the CPU;
(c) the same with ``--device cuda`` (PyTorch on the GPU);

and prints tiles/s, the ratios to (a), and how far (c)'s scores lie from (b)'s. It exits 1 where
any tissue tile's score differs by 0.01 or more or its label differs, so a CUDA speed is never
reported without its agreement.

    python benchmarks/cuda_check.py [--scale 0.5] [--workers N] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import map_speed
import map_speed_40x
import numpy as np
from synthetic_slides import CACHE, build_slide

#: CUDA agrees with the CPU when no tissue tile's score differs by this much and every label is equal.
MAX_SCORE_DIFFERENCE = 0.01


def slides(scale: float) -> dict[str, Path]:
    """The two benchmark slides at ``scale`` of their full size (width and height)."""

    def size(value: int, multiple: int) -> int:
        return max(multiple, int(value * scale) // multiple * multiple)

    width, height = size(map_speed.WIDTH, 4096), size(map_speed.HEIGHT, 4096)
    width_40x, height_40x = size(map_speed_40x.WIDTH, 4096), size(map_speed_40x.HEIGHT, 4096)
    return {
        "0.5 µm/px": build_slide(CACHE / f"benchmark_{width}x{height}.tif", width, height, map_speed.LEVELS),
        "40×": build_slide(
            CACHE / f"benchmark_{width_40x}x{height_40x}_40x.tif",
            width_40x,
            height_40x,
            map_speed_40x.LEVELS,
            mpp=map_speed_40x.MPP,
            tile=map_speed_40x.TILE,
            level_step=map_speed_40x.LEVEL_STEP,
        ),
    }


def scores_and_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from slideiqa.outputs.store import open_map

    quality = open_map(path)
    return quality.array("score"), quality.array("label")


def compare(cpu: Path, cuda: Path) -> tuple[int, float, int]:
    """(tissue tiles, largest |Δ score|, tiles whose label differs) between two maps of one slide."""
    cpu_scores, cpu_labels = scores_and_labels(cpu)
    cuda_scores, cuda_labels = scores_and_labels(cuda)
    tissue = np.isfinite(cpu_scores) | np.isfinite(cuda_scores)
    difference = np.abs(np.nan_to_num(cpu_scores[tissue], nan=-1) - np.nan_to_num(cuda_scores[tissue], nan=-1))
    return int(tissue.sum()), float(difference.max(initial=0)), int((cpu_labels[tissue] != cuda_labels[tissue]).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5, help="the slides' share of their full width and height")
    parser.add_argument("--workers", type=int, default=None, help="map with N worker processes")
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU (cuda, cuda:1, …)")
    args = parser.parse_args()
    from slideiqa import map_slide
    from slideiqa.batch.run import run_batch
    from slideiqa.settings.options import MapOptions

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp())
    agree = True
    for name, slide in slides(args.scale).items():
        tiles, seconds = map_speed.read_only(slide, cores)
        read_rate = tiles / seconds
        print(
            f"{name} {slide.name}: (a) read-only {read_rate:.0f} tiles/s ({tiles} tiles, {cores} threads)", flush=True
        )
        maps: list[Path] = []
        for run, device in enumerate(("cpu", args.device)):
            maps.append(work / f"{run}-{device}-{slide.stem}.quality.zarr")
            started = time.perf_counter()
            result = map_slide(slide, maps[-1], MapOptions(device=device), workers=args.workers)
            wall = time.perf_counter() - started
            rate = result.summary.tiles_per_s
            print(
                f"  map --device {device}: {rate:.0f} tiles/s computing ({rate / read_rate:.2f}× read-only), "
                f"{result.summary.tissue_tiles / wall:.0f} over {wall:.1f} s",
                flush=True,
            )
        count, largest, labels = compare(*maps)
        agree &= largest < MAX_SCORE_DIFFERENCE and labels == 0
        print(
            f"  {args.device} against cpu: {count} tissue tiles, largest |Δ score| {largest:.4f}, labels differ on {labels}"
        )
    folder = work / "cohort"
    folder.mkdir()
    for slide in slides(args.scale).values():
        (folder / slide.name).symlink_to(slide)
    for run, device in enumerate(("cpu", args.device)):
        started = time.perf_counter()
        batch = run_batch([folder], work / f"batch-{run}-{device}", options=MapOptions(device=device))
        wall = time.perf_counter() - started
        tiles = sum(record.tissue_tiles or 0 for record in batch.records)
        print(
            f"batch --device {device}: {len(batch.records)} slides, {tiles} tiles in {wall:.1f} s = "
            f"{tiles / wall:.0f} tiles/s",
            flush=True,
        )
    print(json.dumps({"agree": agree, "bar": MAX_SCORE_DIFFERENCE}))
    sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
