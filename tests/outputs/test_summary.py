"""The summary's typed records read and write ``summary.json`` exactly: same keys, same order, same
values; a summary from an earlier version (figures missing, figures unknown) is read, not refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slideiqa import open_map
from slideiqa.outputs.summary import CellSummary, MapSummary, MapWarning, ToneSummary, VerdictRecord
from slideiqa.pipeline.finish import map_warnings


def test_a_written_summary_round_trips_key_for_key(phantom_map):
    written = json.loads((phantom_map.path / "summary.json").read_text())
    summary = MapSummary.from_dict(written)
    assert summary.to_dict() == written and list(summary.to_dict()) == list(written)
    assert json.dumps(summary.to_dict(), indent=2) == json.dumps(written, indent=2)
    assert summary == phantom_map.summary == open_map(phantom_map.path).summary
    assert isinstance(summary.tone, ToneSummary) and summary.tone.tiles_compared == written["tone"]["tiles_compared"]
    assert summary.tone.glass_median == written["tone"]["reference"]["glass"]["median"]
    assert all(isinstance(warning, MapWarning) for warning in summary.warnings)
    assert summary.extra == {}


def test_the_sections_a_map_lacks_stay_out_of_its_json(phantom_map):
    summary = MapSummary.from_dict(json.loads((phantom_map.path / "summary.json").read_text()))
    bare = MapSummary(**summary.figures(), slide="a.svs")
    assert "cells" not in bare.to_dict() and "tone" not in bare.to_dict()
    cells = CellSummary(16.0, 49, 0.25, {"defocus": 12})
    assert MapSummary.from_dict(MapSummary(**summary.figures(), cells=cells).to_dict()).cells == cells


def test_an_earlier_versions_summary_is_read_with_its_unknown_figures_kept():
    earlier = {
        "tissue_tiles": 10,
        "share_below_threshold": 0.2,
        "verdict": "fail",
        "threshold": 0.5,
        "a_figure_since_renamed": [1, 2],
    }
    summary = MapSummary.from_dict(earlier)
    assert (summary.tissue_tiles, summary.verdict, summary.mean_score, summary.tone) == (10, "fail", None, None)
    assert summary.warnings == [] and summary.dye_tiles == 0
    assert summary.extra == {"a_figure_since_renamed": [1, 2]}
    assert summary.to_dict()["a_figure_since_renamed"] == [1, 2]


def test_warnings_are_worked_out_from_the_typed_summary(phantom_map):
    summary = phantom_map.summary
    assert summary is not None
    counted = MapSummary(
        **(summary.figures() | {"artefact_tiles": summary.artefact_tiles | {"pen": 3}, "unreadable_tiles": 2}),
        dye_tiles=4,
    )
    found = {warning.code: warning for warning in map_warnings(counted, "bad JPEG")}
    assert set(found) == {"pen", "unreadable", "dye"}
    assert found["pen"].count == 3 and found["pen"].message.startswith("3 tissue tiles")
    assert found["unreadable"].count == 2 and found["unreadable"].message.endswith("First: bad JPEG")
    assert found["dye"].count == 4


@pytest.mark.parametrize("changed", [{"threshold": 0.9}, {"verdict": "fail"}, {"max_bad_share": 0.2}])
def test_a_verdict_record_tells_a_new_rule_from_the_same_one_given_again(changed):
    given = VerdictRecord("pass", "rule", 0.5, 0.1, 0.02, at="2026-01-01T00:00:00+00:00")
    again = VerdictRecord.from_dict(given.to_dict() | {"at": "2026-06-01T00:00:00+00:00"})
    assert given.same_verdict(again)
    assert not given.same_verdict(VerdictRecord.from_dict(given.to_dict() | changed))


def test_a_batch_report_passes_over_a_summary_it_cannot_read(phantom_map, tmp_path):
    """A map whose summary.json a later version cannot read is left out of the report's earlier rows,
    as a partial map is, rather than stopping the whole report."""
    import shutil

    from slideiqa.batch.report import _complete_summary

    copy = tmp_path / "odd.quality.zarr"
    shutil.copytree(phantom_map.path, copy)
    assert _complete_summary(copy) == phantom_map.summary
    written = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps(written | {"cells": {"assessed_cells": 3}, "warnings": [1, 2]}))
    assert _complete_summary(copy) is None


def test_a_class_beside_kept_ones_takes_only_what_they_leave():
    from slideiqa.measure.families import set_class_probability

    probabilities = np.array([[0.5, 0.3, 0.2]])
    lowered = set_class_probability(probabilities, 1, np.array([0.1]), keep=(2,))
    np.testing.assert_allclose(lowered, [[0.7, 0.1, 0.2]])
    raised = set_class_probability(probabilities, 1, np.array([0.8]), keep=(2,))
    np.testing.assert_allclose(raised, [[0.0, 0.8, 0.2]], atol=1e-12)
    with pytest.raises(ValueError, match="only take what they leave"):
        set_class_probability(probabilities, 1, np.array([0.9]), keep=(2,))
