"""What the lab's tools read: logs without a terminal, QuPath GeoJSON, settings files, per-slide µm/px,
info and predict for scripts, the verdict history and the two-panel overview."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import tifffile

from slideiqa import map_slide, open_map
from slideiqa.outputs.report import overview_image
from slideiqa.outputs.store import label_entries
from slideiqa.settings.options import MapOptions, SettingsError, load_mpp_table, load_settings

from paths import CMU_SLIDE, FIELDS
from support import slideiqa_process

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 ")


def _cli(*arguments, **environment) -> subprocess.CompletedProcess:
    """slideiqa in a child process, its output a pipe; a narrow terminal width must not wrap a log."""
    return slideiqa_process(*arguments, **({"COLUMNS": "40"} | environment))


# -- logs -----------------------------------------------------------------------------------------------


def test_map_output_without_a_terminal_is_one_timestamped_line_per_event(tmp_path):
    out = tmp_path / "a-long-folder-name-that-a-terminal-of-forty-columns-would-wrap" / "sample.quality.zarr"
    out.parent.mkdir()
    result = _cli("map", CMU_SLIDE, "-o", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    lines = result.stdout.splitlines()
    assert lines and all(TIMESTAMP.match(line) for line in lines), result.stdout
    assert not re.search("[┃│━┏└─]", result.stdout)  # no table boxes in a log
    assert any(str(out) in line and f"verdict: {summary['verdict']}" in line for line in lines)  # the path whole
    tiles = summary["tissue_tiles"]
    assert any(re.search(rf"cmu_small_region\.svs: {tiles}/{tiles} tiles", line) for line in lines)  # progress


@pytest.mark.slow
def test_batch_lines_keep_whole_paths_and_warnings_go_to_stderr(tmp_path):
    folder = tmp_path / "slides-from-the-scanner-room-with-a-long-name"
    folder.mkdir()
    (folder / "sample.svs").write_bytes(CMU_SLIDE.read_bytes())
    (folder / "broken.svs").write_text("not a slide")
    result = _cli("batch", folder, "-o", tmp_path / "out", "--workers", "1")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert all(TIMESTAMP.match(line) for line in lines), result.stdout
    failed = [line for line in lines if "failed" in line]
    assert len(failed) == 1 and str(folder / "broken.svs") in failed[0]
    assert sum(str(folder / "sample.svs") in line for line in lines) == 1  # said once, not repeated by wrapping


# -- QuPath ---------------------------------------------------------------------------------------------


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _check_qupath_feature(feature: dict, object_types: set[str]) -> None:
    """What QuPath's GeoJSON import reads: a UUID id, a polygon in level-0 pixels, objectType,
    classification (name, RGB) and measurements (name → number)."""
    from shapely.geometry import shape

    assert feature["type"] == "Feature" and _is_uuid(feature["id"])
    geometry = shape(feature["geometry"])
    assert geometry.is_valid and geometry.area > 0 and feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    properties = feature["properties"]
    assert properties["objectType"] in object_types
    classification = properties["classification"]
    assert isinstance(classification["name"], str) and len(classification["color"]) == 3
    assert all(isinstance(c, int) and 0 <= c <= 255 for c in classification["color"])
    measurements = properties["measurements"]
    assert measurements and all(isinstance(v, float) and math.isfinite(v) for v in measurements.values())


def test_geojson_regions_and_tiles_carry_measurements_qupath_reads(phantom, tmp_path):
    from shapely.geometry import shape

    result = map_slide(phantom, tmp_path / "p.quality.zarr", MapOptions(block=4, tile_geojson=True))
    quality = open_map(result.path)
    score, label, probs = quality.array("score"), quality.array("label"), quality.array("probs")
    step = quality.attributes["grid"]["step"]

    regions = json.loads((result.path / "regions.geojson").read_text())["features"]
    assert regions
    for feature in regions:
        _check_qupath_feature(feature, {"annotation"})
        measured = feature["properties"]["measurements"]
        # round trip: the polygon's area is its tile count in level-0 pixels, the count its area in µm²
        assert shape(feature["geometry"]).area == pytest.approx(measured["tiles"] * step**2, rel=1e-6)
        assert measured["area µm^2"] == pytest.approx(measured["tiles"] * quality.tile_um**2)
        assert 0 <= measured["mean score"] < 0.5  # regions are of tiles below the threshold
    assert not any("(1 tiles" in f["properties"]["name"] for f in regions)

    tiles = json.loads((result.path / "tiles.geojson").read_text())["features"]
    assert len(tiles) == int((label > 0).sum()) == result.summary.tissue_tiles
    for feature in tiles:
        _check_qupath_feature(feature, {"tile"})
        measured = feature["properties"]["measurements"]
        row, col = int(measured["row"]), int(measured["column"])
        assert measured["score"] == pytest.approx(float(score[row, col]))
        assert measured["P(defocus)"] == pytest.approx(float(probs[quality.classes.index("defocus"), row, col]))
        names = {value: name for value, name, _ in label_entries(quality.classes)}
        assert feature["properties"]["classification"]["name"] == names[int(label[row, col])]
        x0, y0, x1, y1 = shape(feature["geometry"]).bounds
        assert (x0, y0) == pytest.approx((col * step, row * step))
    assert len({f["id"] for f in tiles}) == len(tiles)

    again = map_slide(phantom, result.path, MapOptions(block=4, tile_geojson=True))  # complete: reports again
    assert again.skipped
    assert [f["id"] for f in json.loads((result.path / "tiles.geojson").read_text())["features"]] == [
        f["id"] for f in tiles
    ]  # ids are stable: QuPath keeps objects by id


# -- settings, per-slide µm/px, verdict history ----------------------------------------------------------


def test_settings_file_is_checked_and_names_the_file(tmp_path):
    good = tmp_path / "lab.toml"
    good.write_text("[map]\nthreshold = 0.6\nmpp = 0.25\nfind_artefacts = false\n")
    options = load_settings(good)
    assert (options.threshold, options.mpp, options.find_artefacts, options.max_bad_share) == (0.6, 0.25, False, 0.1)
    assert options.artefacts_searched == ()
    chosen = tmp_path / "chosen.toml"
    chosen.write_text('artefacts = ["pen", "edge"]\n')
    assert load_settings(chosen).artefacts_searched == ("edge", "pen")  # searched in the map's own order
    ink = tmp_path / "ink.toml"
    ink.write_text('artefacts = ["pen", "ink"]\n')
    with pytest.raises(SettingsError, match=r"ink\.toml: artefacts must name artefacts among edge, pen, .*; got 'ink'"):
        load_settings(ink)
    typo = tmp_path / "typo.toml"
    typo.write_text("treshold = 0.6\n")
    with pytest.raises(SettingsError, match=r"typo\.toml: unknown setting\(s\) treshold"):
        load_settings(typo)
    bad = tmp_path / "bad.toml"
    bad.write_text("threshold = 1.5\n")
    with pytest.raises(SettingsError, match=r"bad\.toml: threshold must lie between 0 and 1"):
        load_settings(bad)
    result = _cli("map", CMU_SLIDE, "-o", tmp_path / "x.quality.zarr", "--settings", typo)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: {typo}: unknown setting(s) treshold; known: model, mpp, threshold, max_bad_share, min_tissue, "
        "use_tissue_mask, find_artefacts, artefacts, cells, tile_geojson, batch_size, device, block"
    ]
    assert not (tmp_path / "x.quality.zarr").exists()


@pytest.mark.slow
def test_batch_reads_the_settings_file_and_per_slide_mpp(tmp_path):
    """A real batch: a settings file sets the rule; a CSV gives µm/px to a slide whose file has none
    and overrides the sample's; the command line wins over the file."""
    from PIL import Image

    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "sample.svs").write_bytes(CMU_SLIDE.read_bytes())
    field = np.asarray(Image.open(FIELDS / "he_tumour_target.png").convert("RGB"))
    tifffile.imwrite(cohort / "no_mpp.tif", field, tile=(256, 256), compression="zlib", photometric="rgb")
    settings = tmp_path / "lab.toml"
    settings.write_text("[map]\nthreshold = 0.6\nmax_bad_share = 0.3\n")
    table = tmp_path / "mpp.csv"
    table.write_text("slide,mpp\nno_mpp.tif,0.5\ncohort/sample.svs,0.45\n")
    assert load_mpp_table(table) == {"no_mpp.tif": 0.5, str(cohort / "sample.svs"): 0.45}

    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "slideiqa.cli.app",
            "batch",
            cohort,
            "-o",
            out,
            "--workers",
            "1",
            "--settings",
            settings,
            "--mpp-table",
            table,
            "--max-bad-share",
            "0.4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["options"]["threshold"] == 0.6 and report["options"]["max_bad_share"] == 0.4
    assert "40%" in report["verdict_rule"] and "0.6" in report["verdict_rule"]
    by_name = {Path(row["slide"]).name: row for row in report["slides"]}
    assert by_name["no_mpp.tif"]["mpp"] == 0.5 and by_name["sample.svs"]["mpp"] == 0.45
    for row in report["slides"]:
        attributes = open_map(row["map"]).attributes
        assert attributes["options"]["threshold"] == 0.6 and attributes["slide"]["mpp_from"] == "option"

    without_table = subprocess.run(
        [
            sys.executable,
            "-m",
            "slideiqa.cli.app",
            "batch",
            cohort / "no_mpp.tif",
            "-o",
            tmp_path / "out2",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert without_table.returncode == 1 and "pass it with --mpp" in without_table.stdout


def test_a_rerun_under_another_threshold_keeps_the_verdict_history(phantom, tmp_path):
    out = tmp_path / "h.quality.zarr"
    first = map_slide(phantom, out, block=4)
    strict = map_slide(phantom, out, block=4, threshold=0.9, max_bad_share=0.5)
    assert strict.skipped and strict.summary.threshold == 0.9
    history = open_map(out).attributes["verdicts"]
    assert [entry["threshold"] for entry in history] == [0.5, 0.9]
    assert history[0]["verdict"] == first.summary.verdict and history[1]["max_bad_share"] == 0.5
    map_slide(phantom, out, block=4, threshold=0.9, max_bad_share=0.5)  # the same rule again adds nothing
    assert len(open_map(out).attributes["verdicts"]) == 2


# -- info and predict for scripts ---------------------------------------------------------------------------


def test_info_json_says_scanner_date_tiles_compression_and_size(tmp_path):
    result = _cli("info", CMU_SLIDE, "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["scanner"] == "CPAPERIOCS" and facts["acquired"].startswith("12/29/09")
    assert facts["tile_size"] == [240, 240] and facts["compression"] == "JPEG"
    assert facts["size_mm"] == pytest.approx([2220 * 0.499 / 1000, 2967 * 0.499 / 1000], rel=1e-3)
    tiff = tmp_path / "plain.tif"
    tifffile.imwrite(tiff, np.zeros((300, 400, 3), np.uint8), tile=(128, 128), compression="zlib", photometric="rgb")
    facts = json.loads(_cli("info", tiff, "--json").stdout)
    assert facts["tile_size"] == [128, 128] and facts["compression"] == "deflate" and facts["size_mm"] is None


def test_info_piped_is_one_header_line_and_plain_key_value_lines():
    """Read by itself or piped into grep, ``info`` is a record: the file and the time once, then one
    ``key: value`` per fact, not a log that repeats both on every line."""
    lines = _cli("info", CMU_SLIDE).stdout.splitlines()
    assert TIMESTAMP.match(lines[0]) and lines[0].endswith(CMU_SLIDE.name), lines[0]
    facts = dict(line.split(": ", 1) for line in lines[1:])
    assert facts["scanner"] == "CPAPERIOCS" and facts["µm/px"] == "0.499 × 0.499", facts
    assert not any(TIMESTAMP.match(line) or CMU_SLIDE.name in line for line in lines[2:])


def test_predict_resamples_to_the_model_scale_and_says_when_it_assumes(tmp_path):
    field = FIELDS / "ihc_colon.png"
    assumed = _cli("predict", field, "--format", "json")
    assert assumed.returncode == 0
    rows = json.loads(assumed.stdout)  # stdout stays parseable: the note goes to stderr
    assert rows[0]["mpp_assumed"] and "µm/px unknown" in assumed.stderr
    finer = json.loads(_cli("predict", field, "--format", "json", "--mpp", "0.25").stdout)
    assert finer[0]["mpp"] == 0.25 and not finer[0]["mpp_assumed"] and finer[0]["tiles"] < rows[0]["tiles"]
    coarse = _cli("predict", field, "--mpp", "1.0")
    assert coarse.returncode == 1 and "coarser than the 0.5 µm/px" in coarse.stderr
    piped = _cli("predict", FIELDS / "blood_smear.jpg", field, "--mpp", "0.5").stdout.splitlines()
    # the table through a pipe: tab-separated, every name whole (a terminal table would cut it short)
    assert piped[0].split("\t")[:3] == ["image", "mpp", "tiles"]
    assert [row.split("\t")[0] for row in piped[1:]] == [str(FIELDS / "blood_smear.jpg"), str(field)]
    table = _cli("predict", field, "--mpp", "0.5", "--format", "csv")
    header, row = table.stdout.strip().splitlines()
    assert header.startswith("image,mpp,tiles,score") and row.startswith(f"{field},0.5,")


# -- the overview ------------------------------------------------------------------------------------------


def test_overview_shows_the_class_of_each_tile_and_a_scale_bar():
    classes = ["good", "defocus", "motion", "noise", "jpeg", "exposure"]
    thumbnail = np.full((400, 400, 3), 255, np.uint8)
    score = np.full((4, 4), 0.9, np.float32)
    label = np.ones((4, 4), np.uint8)
    score[:, :2], label[:, :2] = 0.1, 2  # the left half defocused
    # 100 thumbnail px per tile; a thumbnail pixel is 1 µm, so a 640 px panel pixel is 0.625 µm:
    # the longest round bar within a fifth of the panel (128 px = 80 µm) is 50 µm = 80 px.
    image = np.asarray(
        overview_image(thumbnail, score, label, 100.0, 0.5, "t", label_entries(classes), 1.0).convert("RGB")
    ).astype(int)
    width = 640
    right = image[:, image.shape[1] - 12 - width : image.shape[1] - 12]
    defocus = np.array(label_entries(classes)[2][2][:3])
    expected = 255 * 0.3 + defocus * 0.7
    top = 50
    assert np.abs(right[top + 100, 100] - expected).max() < 12  # a defocused tile in the class colour
    good = np.array(label_entries(classes)[1][2][:3]) * 0.7 + 255 * 0.3
    assert np.abs(right[top + 100, 500] - good).max() < 12
    bar_row = top + 640 - 24 + 2
    left_panel = image[bar_row, 12 : 12 + width]
    black = np.flatnonzero((left_panel < 40).all(axis=1))
    assert black.size and 78 <= black.max() - black.min() + 1 <= 82


def test_help_reads_as_plain_usage_text():
    """No typer syntax in the help (``<bool>``, ``{slide}``, ``<list[Path]>``), no raw reST backticks,
    and no command summary cut short with an ellipsis."""
    top = _cli("--help")
    commands = top.stdout.split("Commands:")[1]
    assert top.returncode == 0 and "..." not in commands and "…" not in commands
    for name in ("models", "predict", "info", "map", "batch"):
        text = _cli(name, "--help").stdout
        assert text.startswith(f"Usage: slideiqa {name} [OPTIONS]"), text
        for syntax in ("<bool>", "{", "}", "``", "<list["):
            assert syntax not in text, (name, syntax)
    assert "Usage: slideiqa map [OPTIONS] SLIDE\n" in _cli("map", "--help").stdout
    assert "Usage: slideiqa batch [OPTIONS] PATH...\n" in _cli("batch", "--help").stdout


def test_a_map_made_before_summaries_kept_warnings_gets_them_when_reported_again(tmp_path):
    """An earlier version's complete map has no ``warnings`` in its summary; reported again under
    another threshold, its summary.json says what the terminal says (the sample's dye specks)."""
    from slideiqa.outputs.store import open_for_update, update_attributes

    out = tmp_path / "cmu.quality.zarr"
    first = map_slide(CMU_SLIDE, out)
    assert [warning.code for warning in first.summary.warnings] == ["dye"]
    older = {key: value for key, value in first.summary.to_dict().items() if key != "warnings"}
    (out / "summary.json").write_text(json.dumps(older, indent=2) + "\n")
    update_attributes(open_for_update(out), summary=older)
    again = map_slide(CMU_SLIDE, out, threshold=0.6)
    assert again.skipped and [warning.code for warning in again.summary.warnings] == ["dye"]
    written = json.loads((out / "summary.json").read_text())
    assert [warning["code"] for warning in written["warnings"]] == ["dye"] and written["threshold"] == 0.6
