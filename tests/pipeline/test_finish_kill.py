"""A map killed inside its finish step (kill -9 of a real process) is never presented as finished:
no verdict lies beside a map that is not complete, ``open_map``, ``usable`` and the batch report
treat it as unfinished, and a rerun finishes it; killed just after it was marked complete, its
summary comes from the map and a rerun writes the files again. (napari: ``test_napari.py``.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from slideiqa import map_slide, open_map

from paths import CMU_SLIDE, FIELDS
from slides import map_killed_in_its_finish
from support import slideiqa_process

REPORT_FILES = ("summary.json", "overview.png", "regions.geojson")


_slideiqa = slideiqa_process


@pytest.mark.slow
def test_killed_before_it_is_marked_complete_it_has_no_verdict_anywhere_and_a_rerun_finishes_it(tmp_path):
    out = tmp_path / "maps" / "cmu.quality.zarr"
    out.parent.mkdir()
    assert map_killed_in_its_finish(CMU_SLIDE, out, "before the status") == -9
    killed = open_map(out)
    assert not killed.complete and killed.summary is None
    assert [name for name in REPORT_FILES if (out / name).exists()] == []
    blocks = np.asarray(killed.group["progress"][...])
    assert blocks.all()  # every block was written: only the finish was cut

    usable = _slideiqa("usable", out)
    assert usable.returncode == 1 and len(usable.stderr.strip().splitlines()) == 1
    assert "not complete" in usable.stderr and str(out) in usable.stderr

    # A batch writing into the same folder lists only the maps that are complete.
    batch = _slideiqa("batch", FIELDS / "ihc_colon.png", "-o", tmp_path / "maps", "--workers", "1", "--mpp", "0.5")
    assert batch.returncode == 0, batch.stdout + batch.stderr
    rows = json.loads((tmp_path / "maps" / "report.json").read_text())["slides"]
    assert [row["slide"].rsplit("/", 1)[-1] for row in rows] == ["ihc_colon.png"]

    finished = map_slide(CMU_SLIDE, out)
    assert finished.resumed_blocks == blocks.size and not finished.skipped
    reopened = open_map(out)
    assert reopened.complete and all((out / name).exists() for name in REPORT_FILES)
    assert (
        json.loads((out / "summary.json").read_text()) == reopened.attributes["summary"] == reopened.summary.to_dict()
    )
    assert reopened.summary.verdict == "pass"


def test_killed_just_after_it_is_marked_complete_its_summary_comes_from_the_map(tmp_path):
    out = tmp_path / "cmu.quality.zarr"
    assert map_killed_in_its_finish(CMU_SLIDE, out, "after the status") == -9
    done = open_map(out)
    assert done.complete and not (out / "summary.json").exists()
    assert done.summary.to_dict() == done.attributes["summary"] and done.summary.verdict == "pass"
    again = map_slide(CMU_SLIDE, out)
    assert again.skipped and all((out / name).exists() for name in REPORT_FILES)
    assert json.loads((out / "summary.json").read_text())["verdict"] == "pass"
