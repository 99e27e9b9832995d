"""``run_batch``: map every slide under folders on one Dask cluster, each slide failing alone.

Every slide goes through :func:`slideiqa.pipeline.mapping.map_slide` — the very code path of ``slideiqa map`` —
in one of two ways, chosen slide by slide:

- **whole on a worker** while the batch has at least as many slides left to start as the cluster has
  threads: one task maps the slide from tissue mask to reports inside a worker, its blocks on that
  worker's own threads. Every thread then has a slide of its own, nothing passes through the driver,
  and the per-slide steps that run on one core (tissue mask, overview, reports) overlap across
  workers instead of queueing on the driver — measured, this is what lets a batch beat mapping the
  slides one after another (``benchmarks/batch_speed.py``);
- **spread block by block** for the last few slides (fewer left than threads): the driver prepares
  them and their blocks run on every free worker, so the batch's tail does not wait on one worker.

Each worker holds one batch of tiles, a few open slide handles and one model (bounded memory). A
block or a whole-slide task lost with a dying worker is run again elsewhere by Dask; a slide task
then resumes the map its dead worker left, and since a block's result does not depend on where it
ran, the map comes out the same.

Failure isolation: anything that goes wrong with one slide (unreadable, truncated, no tissue, a
worker that keeps dying on it, a map made with other settings) becomes that slide's ``failed`` row in
the report; the batch goes on. Resume is map_slide's: a complete map with the same model and settings
is skipped, a partial one is finished, another one is replaced only with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from slideiqa import __version__
from slideiqa.batch.discovery import SlideJob, discover_slides
from slideiqa.batch.report import (
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_MAPPED,
    STATUS_RESUMED,
    STATUS_SKIPPED,
    FolderReport,
    SlideRecord,
    record_from_summary,
    tone_outliers,
    with_batch_tone,
)
from slideiqa.cli.terminal import timestamp
from slideiqa.errors import SlideIQAError
from slideiqa.execution.local import ThreadRunner, start_client
from slideiqa.extras import dashboard_installed
from slideiqa.measure.slide_tone import TONE_FEATURES, glass_warning
from slideiqa.models.zoo import resolve_model
from slideiqa.pipeline.block_task import SLIDE_CACHE_SIZE, tune_worker_process
from slideiqa.pipeline.execute import MapCancelled
from slideiqa.pipeline.mapping import map_slide
from slideiqa.settings.options import MapOptions, MppTable, mpp_for

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

    @property
    def tone_warnings(self) -> list[str]:
        """One line per slide of this batch whose tone is unlike the rest of the folder's slides (this
        batch's and earlier ones), and per slide whose glass says it is exposed wrongly throughout:
        such a slide passes its own map's tone check, and may pass its verdict too."""
        unlike = [
            f"{record.slide}: its tone (glass level, stain density or white point) is unlike the rest of the "
            f"batch's, by {record.tone_vs_batch:.1f} robust spreads: a slide-wide exposure or staining difference; "
            "check it"
            for record in tone_outliers(self.records)
        ]
        glass = TONE_FEATURES.index("glass")
        exposed = [(record.slide, glass_warning(record.tone[glass])) for record in self.records if record.tone]
        return unlike + [f"{slide}: its {warning}" for slide, warning in exposed if warning]


#: How long a stopping batch waits for its whole-slide tasks to finish their current block.
STOP_WAIT_S = 60.0


def _map_one(
    job: SlideJob,
    out: Path,
    options: MapOptions,
    client: Any,
    threads: int | None,
    should_stop: Callable[[], bool] | None = None,
    mpp_table: dict[str, float] | None = None,
    partial_before: bool = True,
) -> SlideRecord:
    """Map one slide of the batch; any failure becomes the slide's ``failed`` record, never an exception.
    ``mpp_table`` (slide → µm/px) overrides the batch's µm/px for the slides it names. ``partial_before``
    False says no map was there when the batch began: a map resumed now was left by a worker of this
    batch that died, and the slide counts as mapped, not resumed."""
    started = time.perf_counter()
    target = out / job.map_name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        own_mpp = mpp_for(job.path, mpp_table or {})
        slide_options = options.updated(mpp=own_mpp) if own_mpp else options
        result = map_slide(
            job.path, target, slide_options, client=client, inference_threads=threads, should_stop=should_stop
        )
    except MapCancelled as error:  # the batch is stopping: the map stays resumable
        return SlideRecord(
            str(job.path), str(target), STATUS_INTERRUPTED, runtime_s=time.perf_counter() - started, error=str(error)
        )
    except Exception as error:  # one slide's failure, whatever it is, must not end the batch
        if not isinstance(error, SlideIQAError):
            log.debug("slide %s failed", job.path, exc_info=True)
        message = str(error) if isinstance(error, SlideIQAError) else f"{job.path}: {type(error).__name__}: {error}"
        return SlideRecord(
            str(job.path), str(target), STATUS_FAILED, runtime_s=time.perf_counter() - started, error=message
        )
    status = (
        STATUS_SKIPPED
        if result.skipped
        else STATUS_RESUMED
        if result.resumed_blocks and partial_before
        else STATUS_MAPPED
    )
    record = record_from_summary(str(job.path), str(target), status, result.summary, time.perf_counter() - started)
    return replace(record, mpp_from="table") if own_mpp else record


def _map_on_worker(
    job: SlideJob,
    out: Path,
    options: MapOptions,
    threads: int | None,
    mpp_table: dict[str, float] | None,
    stop_event: str,
    partial_before: bool,
) -> SlideRecord:
    """A Dask task: map one whole slide inside this worker, its blocks on the worker's own threads.
    The batch asks it to stop through the Dask event named ``stop_event`` (polled as blocks finish)."""
    from distributed import Event, get_worker

    tune_worker_process()
    stop = Event(stop_event)
    runner = ThreadRunner(get_worker().state.nthreads)
    try:
        return _map_one(job, out, options, runner, threads, stop.is_set, mpp_table, partial_before)
    finally:
        runner.close()


def run_batch(
    inputs: Sequence[str | Path],
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
    share of a given client's cores (default: the engine's choice). At most ``slides_in_flight`` slides
    are mapped at once (default: one whole slide per cluster thread, and at most
    ``MAX_SLIDES_IN_FLIGHT`` prepared by the driver for the tail). ``mpp_table`` gives µm/px per slide (path or file name →
    µm/px; ``options.mpp`` for the others). ``on_start(jobs, dashboard)`` and ``on_slide(record)`` report progress.
    """
    started = time.perf_counter()
    options = options or MapOptions()
    out = Path(out).resolve()  # rows name maps by absolute paths, whatever the working folder
    discovery = discover_slides([Path(p) for p in inputs], recursive, output=out)
    checkpoint = resolve_model(options.model)  # an unknown model fails the batch before any slide
    table = mpp_table if isinstance(mpp_table, MppTable) else MppTable(Path("mpp_table"), mpp_table or {}, [])
    # A folder that already holds a report: the new one lists its slides too, and a report file
    # slideiqa did not write is never overwritten.
    folder = FolderReport(out)
    warnings = discovery.warnings + table.warnings([job.path for job in discovery.jobs]) + folder.dropped
    out.mkdir(parents=True, exist_ok=True)
    header = {
        "version": __version__,
        "model": options.model,
        "checkpoint": str(checkpoint),
        "started": timestamp(),
        "verdict_rule": f"pass when at most {options.max_bad_share:.0%} of tissue tiles score below "
        f"{options.threshold}",
        "inputs": [str(p) for p in inputs],
        "options": options.to_dict(),
        "mpp_table": mpp_table or {},
        "warnings": warnings,
        "left_out": discovery.left_out,
    }
    own_client, cluster = client is None, None
    threads = inference_threads
    if own_client:
        client, cluster, threads = start_client(workers or os.cpu_count() or 1, scheduler)
    records: list[SlideRecord] = []
    stop = threading.Event()
    reports = ReportWriter(folder, header, started)
    try:
        # A cluster started here without bokeh serves no dashboard pages; a running one may have its own.
        dashboard = _dashboard_link(client) if dashboard_installed() or not own_client else None
        if on_start:
            on_start(discovery.jobs, dashboard)
        feed = SlideFeed(client, discovery.jobs, out, options, threads, mpp_table, slides_in_flight, stop)

        def finished(record: SlideRecord) -> None:
            records.append(record)
            reports.update(records)
            if on_slide:
                on_slide(record)

        try:
            feed.run(finished)
        except BaseException:
            # Ctrl-C or a failing callback: slides not started are dropped, running ones stop after
            # their current block (their maps stay resumable), and the report says what was done
            # and what was not.
            records += feed.stop(reported={record.slide for record in records})
            raise
        finally:
            reports.update(records, final=True)
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()
    # Each slide's tone against every slide of the folder's report, as the report itself compares them.
    compared = {record.slide: record for record in with_batch_tone(reports.listed or records) if not record.earlier}
    return BatchResult(
        out,
        [compared.get(record.slide, record) for record in records],
        discovery.ignored,
        warnings,
        dashboard,
        time.perf_counter() - started,
    )


class SlideFeed:
    """Hands the batch's slides to the cluster, each whole to one worker or block by block (see the
    module docstring), and turns every outcome — a dead worker included — into a :class:`SlideRecord`.

    At most one whole-slide task per cluster thread runs at once (the others wait here, so that a
    thread freed late can still take a slide), and at most ``slides_in_flight`` slides are mapped at
    once in all; slides mapped block by block are prepared by the driver, at most
    :data:`MAX_SLIDES_IN_FLIGHT` at a time (it holds each one's tissue thumbnail)."""

    def __init__(
        self,
        client: Any,
        jobs: list[SlideJob],
        out: Path,
        options: MapOptions,
        threads: int | None,
        mpp_table: dict[str, float] | None,
        slides_in_flight: int | None,
        stop: threading.Event,
    ) -> None:
        from distributed import Event

        self.client, self.out, self.options, self.threads, self.mpp_table = client, out, options, threads, mpp_table
        self.waiting = list(jobs)
        self.total_cap = slides_in_flight
        self.driver_cap = min(slides_in_flight or MAX_SLIDES_IN_FLIGHT, MAX_SLIDES_IN_FLIGHT)
        self.stop_flag = stop
        # Whole-slide tasks run in worker processes: they hear "stop" through the scheduler.
        self.stop_event_name = f"slideiqa-stop-{uuid.uuid4().hex}"
        self.stop_event = Event(self.stop_event_name, client=client)
        self.on_workers: dict[Any, SlideJob] = {}  # Dask future → slide mapped whole on a worker
        self.on_driver: dict[Future, SlideJob] = {}  # thread future → slide mapped block by block
        self.pool = ThreadPoolExecutor(self.driver_cap, thread_name_prefix="slide")

    def _start_what_fits(self) -> None:
        threads = max(1, sum(self.client.nthreads().values()))  # workers may still be joining
        while self.waiting:
            if self.total_cap and len(self.on_workers) + len(self.on_driver) >= self.total_cap:
                return
            job = self.waiting[0]
            if len(self.waiting) >= threads:  # enough slides left to give every thread its own
                if len(self.on_workers) >= threads:
                    return  # every thread has a slide: the next one waits for a free thread
                partial_before = (self.out / job.map_name).exists()
                future = self.client.submit(
                    _map_on_worker,
                    job,
                    self.out,
                    self.options,
                    self.threads,
                    self.mpp_table,
                    self.stop_event_name,
                    partial_before,
                    pure=False,
                    key=f"slide-{job.path.name}-{uuid.uuid4().hex[:8]}",
                )
                self.on_workers[future] = job
            else:  # the tail: fewer slides left than threads, spread them over every worker
                if len(self.on_driver) >= self.driver_cap:
                    return
                future = self.pool.submit(
                    _map_one,
                    job,
                    self.out,
                    self.options,
                    self.client,
                    self.threads,
                    self.stop_flag.is_set,
                    self.mpp_table,
                )
                self.on_driver[future] = job
            self.waiting.pop(0)

    def run(self, finished: Callable[[SlideRecord], None]) -> None:
        """Map every slide; ``finished(record)`` hears each one as it ends. Polls every 0.2 s, which
        also lets a cluster's late workers take slides as they join."""
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_threads

        from distributed import wait as wait_tasks

        self._start_what_fits()
        while self.on_workers or self.on_driver or self.waiting:
            done = [f for f in self.on_workers if f.done()] + [f for f in self.on_driver if f.done()]
            if not done:
                if self.on_workers:
                    with contextlib.suppress(TimeoutError):  # Dask's wait raises where the threads' returns
                        wait_tasks(list(self.on_workers), timeout=0.2, return_when="FIRST_COMPLETED")
                else:
                    wait_threads(list(self.on_driver), timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                if future in self.on_workers:
                    finished(self._worker_record(future, self.on_workers.pop(future)))
                else:
                    self.on_driver.pop(future)
                    finished(future.result())
            self._start_what_fits()
        self.pool.shutdown(wait=True)

    def _worker_record(self, future: Any, job: SlideJob) -> SlideRecord:
        try:
            return future.result()
        except Exception as error:  # the task itself never raises: its worker died, again and again
            return SlideRecord(
                str(job.path),
                str(self.out / job.map_name),
                STATUS_FAILED,
                error=f"{job.path}: the workers mapping it kept dying ({type(error).__name__}: {error})",
            )

    def stop(self, reported: set[str]) -> list[SlideRecord]:
        """Stop the batch: nothing new starts, running slides stop after their current block (their
        maps stay resumable). Records of the slides not yet reported: what their tasks returned while
        stopping, or ``interrupted``."""
        from distributed import wait

        self.stop_flag.set()
        # A cluster already gone, or a task that would not stop in time: its slide is interrupted.
        with contextlib.suppress(Exception):
            self.stop_event.set()
            wait(list(self.on_workers), timeout=STOP_WAIT_S)
        self.pool.shutdown(wait=True, cancel_futures=True)
        late = []
        for future, job in [*self.on_workers.items(), *self.on_driver.items()]:
            if str(job.path) in reported:
                continue
            late.append(future.result() if future.done() and _succeeded(future) else self._interrupted(job))
        return late + [self._interrupted(job) for job in self.waiting if str(job.path) not in reported]

    def _interrupted(self, job: SlideJob) -> SlideRecord:
        return SlideRecord(
            str(job.path),
            str(self.out / job.map_name),
            STATUS_INTERRUPTED,
            error=f"{job.path}: not mapped, the batch was interrupted; run it again to map it",
        )


def _succeeded(future: Any) -> bool:
    """Whether a finished future (thread or Dask) holds a result, not an error or a cancellation."""
    try:
        return not future.cancelled() and future.exception() is None
    except Exception:
        return False


class ReportWriter:
    """Rewrites the batch report as slides finish: at most every ``interval`` seconds (the HTML page
    of a large cohort is megabytes), and always at the end; ``listed`` is every row last written (this
    batch's and the folder's others: :class:`~slideiqa.batch.report.FolderReport`)."""

    def __init__(self, folder: FolderReport, header: dict[str, Any], started: float, interval: float = 10.0) -> None:
        self.folder, self.header, self.started, self.interval = folder, header, started, interval
        self.last = 0.0
        self.listed: list[SlideRecord] = []

    def update(self, records: list[SlideRecord], final: bool = False) -> None:
        now = time.perf_counter()
        if records and (final or now - self.last >= self.interval or len(records) == 1):
            self.listed = self.folder.write(records, self.header | _totals(records, self.started))
            self.last = now


def _totals(records: list[SlideRecord], started: float) -> dict[str, Any]:
    return {
        "slides": len(records),
        "failed": sum(r.failed for r in records),
        "runtime_s": time.perf_counter() - started,
        "updated": timestamp(),
    }


def _dashboard_link(client: Any) -> str | None:
    try:
        return client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") else None
    except Exception:  # no dashboard is not an error
        return None
