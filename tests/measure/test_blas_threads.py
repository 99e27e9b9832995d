"""The measurements' matrix products run on one BLAS thread, and the process's own limit comes back
when the last measuring thread leaves, whatever order threads leave in."""

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

from slideiqa.measure import judgement
from slideiqa.measure.blas_threads import one_blas_thread
from slideiqa.measure.jpeg_quantisation import jpeg_scale


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


def test_the_jpeg_products_run_on_one_thread_and_the_process_limit_comes_back(heldout_tiles, monkeypatch):
    seen = []

    def jpeg_scale_noting_threads(*arguments):
        seen.append(blas_threads())
        return jpeg_scale(*arguments)

    monkeypatch.setattr(judgement, "jpeg_scale", jpeg_scale_noting_threads)
    with threadpool_limits(limits=2, user_api="blas"):
        measured = judgement.measure_tiles(np.asarray(heldout_tiles[:4]), list(judgement.MEASURABLE))
        assert blas_threads() == 2
    assert seen == [1]
    assert measured.jpeg is not None and len(measured.jpeg) == 4
