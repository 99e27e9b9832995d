"""End-to-end ``slideiqa map`` against plain OpenSlide decoding of the same tissue tiles.

Builds once (cached under ``benchmarks/cache/``) a 40 960 × 30 720 px pyramidal JPEG TIFF at 0.5 µm/px
from the real pixels in ``examples/data`` (512 px pieces of the H&E, IHC and CMU fields, flipped and
turned, inside an elliptical tissue area on glass), then in one run measures:

(a) read-only: OpenSlide decoding exactly the tissue tiles of the map's grid, with as many threads
    as there are cores (OpenSlide releases the GIL), nothing else — the yardstick;
(a2) the same tiles read as the map reads them (its JPEG tiles decoded directly, each once:
    ``slideiqa.io.scaled_decode``), nothing else;
(b) ``map_slide`` end to end on the same slide with the default model and settings (and with each
    further model of ``--models``, e.g. ``default,accurate``: the same map with another network);

and prints tiles/s of each, their ratio, and peak RSS of the mapping process (with its children).
The read-only measurements run in a child process of their own, so that the tile caches they fill
(OpenSlide's is process-wide) are not counted in the map's memory.

    python benchmarks/map_speed.py [--workers N] [--models default,accurate]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from synthetic_slides import CACHE, build_slide

WIDTH, HEIGHT, LEVELS = 40_960, 30_720, 4


def tissue_cells(slide):
    """The default model's grid on ``slide``, its read plan, and the grid cells a map assesses."""
    from slideiqa.io.grid import TileGrid, read_plan
    from slideiqa.models.predictor import Predictor
    from slideiqa.pipeline.plan import tissue_map
    from slideiqa.settings.options import DEFAULT_MIN_TISSUE

    card = Predictor("default").card
    grid = TileGrid(*slide.dimensions, slide.mpp, card.mpp, card.tile_size)
    tissue = tissue_map(slide, grid).tissue
    return grid, read_plan(slide, grid), np.argwhere(tissue >= DEFAULT_MIN_TISSUE)


def read_only(path: Path, threads: int, openslide: bool = True) -> tuple[int, float]:
    """Decode exactly the map's tissue tiles with OpenSlide (``openslide``), else as the map reads them;
    returns (tiles, seconds)."""
    from dataclasses import replace

    from slideiqa.io.grid import read_tile
    from slideiqa.io.slide import open_slide

    with open_slide(path) as slide:
        grid, plan, cells = tissue_cells(slide)
        if openslide:
            plan = replace(plan, decode_factor=1, jpeg_tiles=False)
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            chunks = np.array_split(cells, threads * 16)
            # Decode and drop: keeping the pixels would measure memory, not decoding.
            list(pool.map(lambda chunk: sum(read_tile(slide, grid, plan, r, c)[0].size > 0 for r, c in chunk), chunks))
        return len(cells), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=None, help="map with N worker processes")
    parser.add_argument("--build-only", action="store_true", help="only build (and cache) the benchmark slide")
    parser.add_argument("--models", default="default", help="comma-separated models to map with, in turn")
    args = parser.parse_args()
    from slideiqa import map_slide

    slide = build_slide(CACHE / "benchmark_40960x30720.tif", WIDTH, HEIGHT, LEVELS)
    if args.build_only:
        return
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        tiles, seconds = child.submit(read_only, slide, cores).result()
        _, direct_seconds = child.submit(read_only, slide, cores, False).result()
    read_rate = tiles / seconds
    print(
        f"(a) read-only OpenSlide, {cores} threads: {tiles} tissue tiles in {seconds:.1f} s = {read_rate:.0f} tiles/s",
        flush=True,
    )
    print(
        f"(a2) read-only as the map reads (direct JPEG), {cores} threads: {tiles / direct_seconds:.0f} tiles/s "
        f"({seconds / direct_seconds:.1f}× OpenSlide's)",
        flush=True,
    )
    rates: dict[str, float] = {}
    for model in args.models.split(","):
        out = Path(tempfile.mkdtemp()) / "benchmark.quality.zarr"
        started = time.perf_counter()
        result = map_slide(slide, out, model=model, workers=args.workers)
        wall = time.perf_counter() - started
        assessed = result.summary.tissue_tiles
        map_rate = rates[model] = result.summary.tiles_per_s
        rss = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        )
        print(
            f"(b) slideiqa map, model {model} ({'threads' if args.workers is None else f'{args.workers} workers'}): "
            f"{assessed} tiles, {map_rate:.0f} tiles/s while computing, {assessed / wall:.0f} tiles/s over "
            f"{wall:.1f} s in all"
        )
        print(
            f"ratio map / read-only: {map_rate / read_rate:.2f} (computing), {assessed / wall / read_rate:.2f} (in all)"
        )
        print(f"peak RSS so far: {rss / 1024:.0f} MB (largest of this process and of its children)", flush=True)
        shutil.rmtree(out.parent)
    first = next(iter(rates))
    for model, rate in list(rates.items())[1:]:
        print(
            f"model {model} maps at {rate / rates[first]:.2f}× the speed of {first} ({rates[first] / rate:.1f}× slower)"
        )
    sys.exit(0)


if __name__ == "__main__":
    main()
