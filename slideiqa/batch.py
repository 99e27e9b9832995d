"""``run_batch``: map every slide under folders on one Dask cluster, each slide failing alone.

Every slide goes through :func:`slideiqa.mapping.map_slide` — the very code path of ``slideiqa map`` —
with one shared client. The driver prepares a few slides at a time (open, tissue mask, checksum) in
threads, and their blocks of tiles all run as tasks on the same cluster: slides run in parallel and so
do the blocks within a slide, while each worker holds only one batch of tiles, a few open slide
handles and one model (bounded memory). A block lost with a dying worker is recomputed elsewhere by
Dask, and since a block's result does not depend on where it ran, the map comes out the same.

Failure isolation: anything that goes wrong with one slide (unreadable, truncated, no tissue, a
worker that keeps dying on it, a map made with other settings) becomes that slide's ``failed`` row in
the report; the batch goes on. Resume is map_slide's: a complete map with the same model and settings
is skipped, a partial one is finished, another one is replaced only with ``overwrite``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .batch_report import (STATUS_FAILED, STATUS_INTERRUPTED, STATUS_MAPPED, STATUS_RESUMED, STATUS_SKIPPED,
                           SlideRecord,
                           write_reports)
from .discovery import SlideJob, discover_slides
from .errors import SlideIQAError
from .mapping import MapCancelled, map_slide, start_client
from .models.zoo import resolve_model
from .options import MapOptions, mpp_for
from .terminal import timestamp
from .worker import SLIDE_CACHE_SIZE

log = logging.getLogger(__name__)

#: Default cap on slides prepared at once: the driver holds each one's tissue thumbnail (up to
#: 8192 px wide, ~150 MB), and a few large slides already give a big cluster thousands of blocks.
MAX_SLIDES_IN_FLIGHT = SLIDE_CACHE_SIZE

#: Exit status of ``slideiqa batch``: every slide has a complete map / at least one slide failed.
EXIT_OK, EXIT_SLIDE_FAILED = 0, 1


@dataclass
class BatchResult:
    out: Path
    records: list[SlideRecord]
    ignored: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dashboard: str | None = None
    runtime_s: float = 0.0

    @property
    def failed(self) -> list[SlideRecord]:
        return [record for record in self.records if record.failed]

    @property
    def exit_code(self) -> int:
        return EXIT_SLIDE_FAILED if self.failed else EXIT_OK


def map_one(job: SlideJob, out: Path, options: MapOptions, client: Any, threads: int | None,
            should_stop: Callable[[], bool] | None = None, mpp_table: dict[str, float] | None = None) -> SlideRecord:
    """Map one slide of the batch; any failure becomes the slide's ``failed`` record, never an exception.
    ``mpp_table`` (slide → µm/px) overrides the batch's µm/px for the slides it names."""
    started = time.perf_counter()
    target = out / job.map_name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        own_mpp = mpp_for(job.path, mpp_table or {})
        slide_options = options.updated(mpp=own_mpp) if own_mpp else options
        result = map_slide(job.path, target, slide_options, client=client, inference_threads=threads,
                           should_stop=should_stop)
    except MapCancelled as error:  # the batch is stopping: the map stays resumable
        return SlideRecord(str(job.path), str(target), STATUS_INTERRUPTED, runtime_s=time.perf_counter() - started,
                           error=str(error))
    except Exception as error:  # one slide's failure, whatever it is, must not end the batch
        if not isinstance(error, SlideIQAError):
            log.debug("slide %s failed", job.path, exc_info=True)
        message = str(error) if isinstance(error, SlideIQAError) else f"{job.path}: {type(error).__name__}: {error}"
        return SlideRecord(str(job.path), str(target), STATUS_FAILED, runtime_s=time.perf_counter() - started,
                           error=message)
    summary = result.summary
    status = STATUS_SKIPPED if result.skipped else STATUS_RESUMED if result.resumed_blocks else STATUS_MAPPED
    return SlideRecord(str(job.path), str(target), status, tissue_tiles=summary["tissue_tiles"],
                       unreadable_tiles=summary.get("unreadable_tiles", 0),
                       mean_score=summary["mean_score"], share_below_threshold=summary["share_below_threshold"],
                       share_per_class=summary["share_per_class"], verdict=summary["verdict"],
                       mpp=summary.get("mpp"), width_px=(summary.get("dimensions_px") or [None, None])[0],
                       height_px=(summary.get("dimensions_px") or [None, None])[1],
                       tissue_area_mm2=summary.get("tissue_area_mm2"), map_runtime_s=summary.get("runtime_s"),
                       runtime_s=time.perf_counter() - started)


def run_batch(
    inputs: list[str | Path],
    out: str | Path,
    *,
    recursive: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    options: MapOptions | None = None,
    slides_in_flight: int | None = None,
    mpp_table: dict[str, float] | None = None,
    client: Any = None,
    inference_threads: int | None = None,
    on_start: Callable[[list[SlideJob], str | None], None] | None = None,
    on_slide: Callable[[SlideRecord], None] | None = None,
) -> BatchResult:
    """Map every slide found under ``inputs`` into ``out`` and write the batch report there.

    Cluster: ``client`` if given (not closed here), else the scheduler at ``scheduler``, else a
    LocalCluster of ``workers`` processes (default: one per core); ``inference_threads`` is each task's
    share of a given client's cores (default: the engine's choice). ``slides_in_flight`` slides are
    prepared and mapped at once (default: twice the cluster's threads, so workers never wait for the
    driver, at most ``MAX_SLIDES_IN_FLIGHT``). ``mpp_table`` gives µm/px per slide (path or file name →
    µm/px; ``options.mpp`` for the others). ``on_start(jobs, dashboard)`` and ``on_slide(record)`` report progress.
    """
    started = time.perf_counter()
    options = options or MapOptions()
    out = Path(out)
    discovery = discover_slides([Path(p) for p in inputs], recursive, output=out)
    checkpoint = resolve_model(options.model)  # an unknown model fails the batch before any slide
    out.mkdir(parents=True, exist_ok=True)
    header = {"version": __version__, "model": options.model, "checkpoint": str(checkpoint),
              "started": timestamp(),
              "verdict_rule": f"pass when at most {options.max_bad_share:.0%} of tissue tiles score below "
                              f"{options.threshold}", "inputs": [str(p) for p in inputs],
              "options": options.to_dict(), "mpp_table": mpp_table or {},
              "warnings": discovery.warnings}
    own_client, cluster = client is None, None
    threads = inference_threads
    if own_client:
        client, cluster, threads = start_client(workers or os.cpu_count() or 1, scheduler)
    records: list[SlideRecord] = []
    stop = threading.Event()
    reports = ReportWriter(out, header, started)
    try:
        dashboard = _dashboard_link(client)
        if on_start:
            on_start(discovery.jobs, dashboard)
        in_flight = slides_in_flight or min(MAX_SLIDES_IN_FLIGHT, max(2, 2 * sum(client.nthreads().values())))
        pool = ThreadPoolExecutor(in_flight, thread_name_prefix="slide")
        futures: list[Future] = []
        try:
            futures += [pool.submit(map_one, job, out, options, client, threads, stop.is_set, mpp_table)
                       for job in discovery.jobs]
            for future in as_completed(futures):
                record = future.result()
                records.append(record)
                reports.update(records)
                if on_slide:
                    on_slide(record)
        except BaseException:
            # Ctrl-C or a failing callback: slides not started are dropped, running ones stop after
            # their current block (their maps stay resumable), and the report says what was done
            # and what was not.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            records += _unfinished(discovery.jobs, futures, records, out)
            raise
        finally:
            pool.shutdown(wait=True)
            reports.update(records, final=True)
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
    return BatchResult(out, records, discovery.ignored, discovery.warnings, dashboard, time.perf_counter() - started)


def _unfinished(jobs: list[SlideJob], futures: list[Future], records: list[SlideRecord], out: Path) -> list[SlideRecord]:
    """Records of the slides an interrupted batch had not reported: what their tasks returned while
    stopping, or ``interrupted`` for those that never started."""
    reported = {record.slide for record in records}
    late = []
    for job, future in zip(jobs, futures):
        if str(job.path) in reported:
            continue
        if future.done() and not future.cancelled() and future.exception() is None:
            late.append(future.result())
        else:
            late.append(SlideRecord(str(job.path), str(out / job.map_name), STATUS_INTERRUPTED,
                                    error=f"{job.path}: not mapped, the batch was interrupted; run it again to map it"))
    return late


class ReportWriter:
    """Rewrites the batch report as slides finish: at most every ``interval`` seconds (the HTML page
    of a large cohort is megabytes), and always at the end."""

    def __init__(self, out: Path, header: dict[str, Any], started: float, interval: float = 10.0) -> None:
        self.out, self.header, self.started, self.interval = out, header, started, interval
        self.last = 0.0

    def update(self, records: list[SlideRecord], final: bool = False) -> None:
        now = time.perf_counter()
        if records and (final or now - self.last >= self.interval or len(records) == 1):
            write_reports(records, self.out, self.header | _totals(records, self.started))
            self.last = now


def _totals(records: list[SlideRecord], started: float) -> dict[str, Any]:
    return {"slides": len(records), "failed": sum(r.failed for r in records),
            "runtime_s": time.perf_counter() - started,
            "updated": timestamp()}


def _dashboard_link(client: Any) -> str | None:
    try:
        return client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") else None
    except Exception:  # no dashboard is not an error
        return None
