"""The measurements' matrix products run on one BLAS thread, and the process's own limit comes back
when the last measuring thread leaves, whatever order threads leave in."""

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

from slideiqa.measure.blas_threads import one_blas_thread
from slideiqa.measure.judgement import MEASURABLE, measure_tiles


def blas_threads() -> int:
    info = ThreadpoolController().select(user_api="blas").info()
    if not info:
        pytest.skip("no BLAS library loaded")
    return info[0]["num_threads"]


def test_overlapping_callers_share_one_limit_and_the_last_restores_the_process_limit():
    """Two callers whose spans overlap (as two block threads' measurements do) and leave in the order
    they came: the first to leave must not lift the limit the second still relies on."""
    with threadpool_limits(limits=2, user_api="blas"):
        first, second = one_blas_thread(), one_blas_thread()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert blas_threads() == 1
        second.__exit__(None, None, None)
        assert blas_threads() == 2


def test_measuring_tiles_leaves_the_process_limit_as_it_was(heldout_tiles):
    with threadpool_limits(limits=2, user_api="blas"):
        measured = measure_tiles(np.asarray(heldout_tiles[:4]), list(MEASURABLE))
        assert blas_threads() == 2
    assert measured.jpeg is not None and len(measured.jpeg) == 4
