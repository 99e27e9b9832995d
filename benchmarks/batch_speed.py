"""``slideiqa batch`` on a LocalCluster against mapping the same slides one after another.

Builds once (cached under ``benchmarks/cache/batch/``) eight different 8192 × 8192 px pyramidal JPEG
TIFFs of real pixels, then maps all of them three ways, each into a fresh output folder:

(a) one by one: ``map_slide`` on each slide in turn in this process (its default in-process threads);
(a2) one ``slideiqa map`` command per slide, one after another (what a lab without ``batch`` runs:
     each command also starts Python and loads the model);
(b) ``run_batch`` on an embedded LocalCluster of 1 worker process;
(c) ``run_batch`` on an embedded LocalCluster of 2 worker processes (the default on 2 cores);

and prints slides/hour, tissue tiles/s and the speed of each against (a), plus the peak RSS of the
workers (the per-worker memory bound). With ``--slurm`` (a running SLURM cluster, e.g.
``examples/slurm/single_node.sh start``) also (d) and (e): ``run_batch`` on 1 and 2 SLURM jobs of one
single-threaded worker process each, started through dask-jobqueue as ``batch --cluster slurm`` does
(the time includes waiting for the jobs' workers).

    python benchmarks/batch_speed.py [--slides 8] [--side 8192] [--slurm]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from synthetic_slides import CACHE, build_slide


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ``ru_maxrss``: Linux keeps that across ``execve``, so
    a worker spawned by a nanny inside a large process (a LocalCluster's) would report its parent's peak."""
    with open("/proc/self/status") as status:
        kilobytes = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return kilobytes / 1024


def worker_peak_rss_mb(client) -> float:
    return max(client.run(_peak_rss_mb).values())


def one_by_one(slides: list[Path], out: Path) -> tuple[int, float]:
    from slideiqa import map_slide

    started, tiles = time.perf_counter(), 0
    for slide in slides:
        tiles += map_slide(slide, out / f"{slide.stem}.quality.zarr").summary.tissue_tiles
    return tiles, time.perf_counter() - started


def commands(slides: list[Path], out: Path) -> tuple[int, float]:
    import json
    import subprocess
    import sys

    started = time.perf_counter()
    for slide in slides:
        target = out / f"{slide.stem}.quality.zarr"
        subprocess.run(
            [sys.executable, "-m", "slideiqa.cli.app", "map", str(slide), "-o", str(target)],
            check=True,
            capture_output=True,
        )
    seconds = time.perf_counter() - started
    tiles = sum(
        json.loads((out / f"{s.stem}.quality.zarr" / "summary.json").read_text())["tissue_tiles"] for s in slides
    )
    return tiles, seconds


def batched(slides: list[Path], out: Path, workers: int) -> tuple[int, float, float]:
    import logging

    from distributed import Client, LocalCluster

    from slideiqa.batch.run import run_batch
    from slideiqa.pipeline.block_task import worker_threads

    # The same cluster run_batch starts by itself, opened here so that the workers' memory can be read.
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
        ) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter()
        result = run_batch(slides, out, client=client, inference_threads=worker_threads(workers))
        seconds = time.perf_counter() - started
        assert not result.failed, [r.error for r in result.failed]
        return sum(r.tissue_tiles for r in result.records), seconds, worker_peak_rss_mb(client)


def on_slurm(slides: list[Path], out: Path, jobs: int) -> tuple[int, float, float]:
    from slideiqa.batch.run import run_batch
    from slideiqa.execution.jobqueue import start_jobqueue

    started = time.perf_counter()
    client, cluster, threads = start_jobqueue(
        "slurm",
        {
            "jobs": jobs,
            "cores": 1,
            "processes": 1,
            "memory": "2GB",
            "walltime": "01:00:00",
            "worker_timeout_s": 120,
            "log_directory": str(out.parent / "slurm-logs"),
        },
        name="slideiqa-benchmark",
    )
    try:
        client.wait_for_workers(jobs, timeout=120)
        result = run_batch(slides, out, client=client, inference_threads=threads)
        seconds = time.perf_counter() - started
        assert not result.failed, [r.error for r in result.failed]
        return sum(r.tissue_tiles for r in result.records), seconds, worker_peak_rss_mb(client)
    finally:
        client.close()
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--side", type=int, default=8192, help="slide width and height in pixels")
    parser.add_argument("--slurm", action="store_true", help="also run on 1 and 2 SLURM jobs")
    args = parser.parse_args()
    slides = [
        build_slide(CACHE / "batch" / f"slide_{i}_{args.side}.tif", args.side, args.side, 3, seed=i + 1)
        for i in range(args.slides)
    ]
    scratch = Path(tempfile.mkdtemp())
    try:
        tiles, base = one_by_one(slides, scratch / "one_by_one")
        rows = [("(a) one by one, in-process threads", tiles, base, None)]
        tiles_c, seconds = commands(slides, scratch / "commands")
        assert tiles_c == tiles
        rows.append(("(a2) one `slideiqa map` command per slide", tiles, seconds, None))
        for workers in (1, 2):
            tiles_b, seconds, rss = batched(slides, scratch / f"batch_{workers}", workers)
            assert tiles_b == tiles
            rows.append(
                (
                    f"({'b' if workers == 1 else 'c'}) batch, LocalCluster of {workers} worker process"
                    f"{'es' if workers > 1 else ''}",
                    tiles,
                    seconds,
                    rss,
                )
            )
        for jobs in (1, 2) if args.slurm else ():
            tiles_s, seconds, rss = on_slurm(slides, scratch / f"slurm_{jobs}", jobs)
            assert tiles_s == tiles
            rows.append(
                (
                    f"({'d' if jobs == 1 else 'e'}) batch, {jobs} SLURM job{'s' if jobs > 1 else ''} of 1 worker",
                    tiles,
                    seconds,
                    rss,
                )
            )
    finally:
        shutil.rmtree(scratch)
    print(f"{len(slides)} slides of {args.side} × {args.side} px, {tiles} tissue tiles in all")
    print(f"{'mode':<48} {'s':>6} {'slides/h':>9} {'tiles/s':>8} {'vs (a)':>7} {'worker peak RSS':>16}")
    for name, count, seconds, rss in rows:
        print(
            f"{name:<48} {seconds:6.1f} {len(slides) * 3600 / seconds:9.0f} {count / seconds:8.0f} "
            f"{base / seconds:7.2f} {'' if rss is None else f'{rss:.0f} MB':>16}"
        )


if __name__ == "__main__":
    main()
