"""The measurements' matrix products on the calling thread's core alone.

OpenBLAS runs a product on a thread per core and leaves those threads busy-waiting for the next one.
The measurements' products are small (the JPEG step's block coefficients: 0.05–0.07 ms a tile either
way), and the waiting threads take the cores from whatever runs beside them — the network, or a
map's other block threads: measured on two cores, the default model's measurements alone used both
cores' time, and the network followed by them ran at 450 tiles/s where the two apart would give 770.

OpenBLAS (0.3.31, pthreads) honours a limit set from the main thread, in every thread, and ignores
one set from any other: measured by CPU time over wall time of a product, 1.3 against 2.0. So the
limit holds for ``slideiqa predict`` and ``explain`` and for a map started from the main thread (its
block threads are limited by ``pipeline.block_task.blas_on_one_thread`` too); Dask's worker processes
start with one BLAS thread already (its nanny sets ``OPENBLAS_NUM_THREADS=1``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_users = 0
_limit: Any = None
_controller: Any = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS limited to one thread while any caller is inside, process-wide (threadpoolctl), and its
    own limit restored when the last one leaves: callers on several threads share the limit rather
    than each restoring what another set."""
    global _users, _limit, _controller
    with _lock:
        if _users == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _limit = _controller.limit(limits=1, user_api="blas")
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _limit.restore_original_limits()
                _limit = None
