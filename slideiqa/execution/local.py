"""Where a map's block tasks run on one machine or one cluster: a pool of threads in this process
(the default), a Dask ``LocalCluster`` of worker processes, or a running Dask scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from slideiqa.outputs.store import (
    MapError,
)
from slideiqa.pipeline.block_task import blas_on_one_thread, worker_threads

#: How long to wait for a ``--scheduler`` before giving up with a one-line error.
SCHEDULER_TIMEOUT_S = 10


#: How long a reachable scheduler may take to have its first worker (an adaptive cluster scaling up
#: from none needs a while) before the map or batch gives up with a one-line error.
SCHEDULER_WORKER_WAIT_S = 120


class ThreadRunner:
    """Block tasks on a pool of threads in this process, with the part of a Dask client's interface
    that :class:`BlockRun` uses (``submit``, ``cancel``, ``as_completed``, ``close``)."""

    def __init__(self, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="slideiqa-block")
        self._blas_limit = blas_on_one_thread()  # a thread per core already; restored on close

    def submit(self, function: Callable, *arguments: Any, pure: bool = False) -> Any:
        return self.pool.submit(function, *arguments)

    def cancel(self, futures: list) -> None:
        for future in futures:
            future.cancel()

    @staticmethod
    def as_completed(futures):
        from concurrent.futures import as_completed

        return as_completed(futures)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._blas_limit.restore_original_limits()


def start_client(workers: int | None, scheduler: str | None, worker_wait_s: float | None = None):
    """A client to run block tasks on, the cluster it owns (None if none) and the inference threads
    each task should use (None: the engine's own choice, for a cluster of unknown machines).

    ``workers=N`` starts a Dask cluster of N single-threaded worker processes sharing the cores out
    for inference; ``scheduler`` connects to a running one; neither gives a :class:`ThreadRunner`
    with a thread per core. Dask's dashboard is served on a free port (its pages need bokeh, the
    ``dashboard`` extra). A scheduler must have a worker within ``worker_wait_s`` (default
    :data:`SCHEDULER_WORKER_WAIT_S`).
    """
    worker_wait_s = SCHEDULER_WORKER_WAIT_S if worker_wait_s is None else worker_wait_s
    if not workers and not scheduler:
        return ThreadRunner(os.cpu_count() or 1), None, 1
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
        except (OSError, TimeoutError) as error:
            raise MapError(
                f"{scheduler}: cannot reach the Dask scheduler within {SCHEDULER_TIMEOUT_S} s ({type(error).__name__})"
            ) from None
        try:  # a scheduler whose workers never come would otherwise be waited on forever
            client.wait_for_workers(1, timeout=worker_wait_s)
        except TimeoutError:
            client.close()
            raise MapError(
                f"{scheduler}: the Dask scheduler has no worker, and none joined within "
                f"{worker_wait_s:g} s; start workers (dask worker {scheduler}) and run again"
            ) from None
        return client, None, None
    # A free port always: Dask's default (8787) clashes with any other cluster on the machine, and
    # two maps started at once would both warn about it. The scheduler serves its HTTP routes with or
    # without bokeh (without, the dashboard's pages ask for it), and None would mean 8787.
    with _interrupts_ignored_by_children():
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.ERROR
        )
    return Client(cluster), cluster, worker_threads(workers or 1)


@contextlib.contextmanager
def _interrupts_ignored_by_children():
    """Start worker processes with SIGINT ignored (children keep an ignored signal across exec, and
    Python installs its KeyboardInterrupt handler only where SIGINT is at its default).

    Ctrl-C in a terminal reaches the whole foreground process group; worker processes that took it
    died mid-task and left the driver waiting on a cluster that kept restarting them, for minutes.
    Only the driver must hear Ctrl-C: it cancels the work and closes the cluster itself. Where
    signals cannot be set (a thread other than the main one, e.g. napari's), nothing changes."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
