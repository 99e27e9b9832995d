"""The verdict rule at its boundaries: a share exactly at ``max_bad_share`` passes, one tile more fails;
a score exactly at the threshold is not below it; artefact and unreadable tiles count as lost; and a
rule read from a settings file is applied with the same ``<=`` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from slideiqa import open_map
from slideiqa.outputs.report import summarize
from slideiqa.outputs.store import FIXED_LABELS
from slideiqa.outputs.summary import MapSummary

from paths import CMU_SLIDE, ROOT

CLASSES = ["good", "defocus"]


def _tiles(scores: list[float], fixed: list[str] = (), background: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A one-row map: assessed tiles with ``scores`` (label 1 or 2 by score), then ``fixed`` tiles
    (NaN score, a fixed label), then background (NaN score, label 0)."""
    score = np.array([*scores, *[np.nan] * (len(fixed) + background)], np.float32)[None]
    label = np.array(
        [1 if s >= 0.5 else 2 for s in scores] + [FIXED_LABELS[name] for name in fixed] + [0] * background, np.uint8
    )[None]
    return score, label


@pytest.mark.parametrize("bad, verdict", [(2, "pass"), (3, "fail")])
def test_a_share_exactly_at_the_limit_passes_and_one_tile_more_fails(bad, verdict):
    score, label = _tiles([0.1] * bad + [0.9] * (20 - bad))
    summary = summarize(score, label, CLASSES, threshold=0.5, max_bad_share=0.1)
    assert summary.tissue_tiles == 20 and summary.share_below_threshold == bad / 20
    assert summary.verdict == verdict


def test_a_score_exactly_at_the_threshold_is_not_below_it():
    score, label = _tiles([0.5] * 10)
    assert summarize(score, label, CLASSES, threshold=0.5, max_bad_share=0.0).verdict == "pass"
    lower = float(np.nextafter(np.float32(0.5), np.float32(0.0)))
    score, label = _tiles([lower] + [0.9] * 9)
    summary = summarize(score, label, CLASSES, threshold=0.5, max_bad_share=0.0)
    assert summary.share_below_threshold == 0.1 and summary.verdict == "fail"


def test_artefact_and_unreadable_tiles_count_as_lost_tissue():
    score, label = _tiles([0.9] * 8, fixed=["pen", "unreadable"])
    summary = summarize(score, label, CLASSES, threshold=0.5, max_bad_share=0.2)
    assert summary.tissue_tiles == 10 and summary.share_below_threshold == 0.2 and summary.verdict == "pass"
    assert summary.unreadable_tiles == 1 and summary.artefact_tiles["pen"] == 1
    assert summarize(score, label, CLASSES, threshold=0.5, max_bad_share=0.19).verdict == "fail"


def _map(out, settings) -> MapSummary:
    run = subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "map", str(CMU_SLIDE), "-o", str(out), "--settings", str(settings)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    summary = open_map(out).summary
    assert summary is not None
    return summary


@pytest.mark.slow
def test_a_rule_from_a_settings_file_is_applied_at_its_exact_boundary(tmp_path):
    """A strict threshold from the file leaves a share s of the sample's tiles below it; the same map
    judged again with ``max_bad_share = s`` (written to full precision) passes, and with the next
    smaller double, fails — the CLI reads the file, not a rounded copy."""
    out, settings = tmp_path / "cmu.quality.zarr", tmp_path / "lab.toml"
    settings.write_text("[map]\nthreshold = 0.97\nmax_bad_share = 0.0\n")
    first = _map(out, settings)
    share = first.share_below_threshold
    assert first.threshold == 0.97 and 0.0 < share < 1.0 and first.verdict == "fail"
    for limit, verdict in ((share, "pass"), (float(np.nextafter(share, 0.0)), "fail")):
        settings.write_text(f"[map]\nthreshold = 0.97\nmax_bad_share = {limit!r}\n")
        summary = _map(out, settings)
        assert (summary.max_bad_share, summary.verdict) == (limit, verdict)
    history = open_map(out).attributes["verdicts"]
    assert [entry["verdict"] for entry in history] == ["fail", "pass", "fail"]
    assert json.loads(json.dumps(history))[1]["max_bad_share"] == share
