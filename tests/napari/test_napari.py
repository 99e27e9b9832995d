"""The napari plugin in a real viewer on a real display (Xvfb, started by pytest-xvfb): reader layers
and their µm placement, alignment of map and slide, hover status, rendered overlay colours, the widget
running and cancelling real maps, sample data, the manifest, and bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from slideiqa.io.slide import open_slide
from slideiqa.outputs.palette import score_colours
from slideiqa.outputs.store import (
    FIXED_LABELS,
    STATUS_COMPLETE,
    UNREADABLE,
    blocks_done,
    open_map,
)
from slideiqa_napari.layers import OUTLINE_INNER_VALUE, OUTLINE_OUTER_VALUE, SCORE_COLORMAP_NAME

from paths import CMU_SLIDE, FIXTURES, ROOT
from slides import map_killed_in_its_finish, truncated_copy, write_pyramidal_tiff
from support import skip_unless_available

pytestmark = pytest.mark.gui

BUBBLE = FIXED_LABELS["bubble"]
DEBRIS = FIXED_LABELS["debris"]
EDGE = FIXED_LABELS["edge"]
FOLD = FIXED_LABELS["fold"]
PEN = FIXED_LABELS["pen"]

try:  # `pip install -e ".[dev]"` has it
    import napari  # noqa: F401
except ImportError:
    skip_unless_available("napari", "the napari extra is not installed", module=True)

PLUGIN = "slideiqa"
CMU_MPP = 0.499


@pytest.fixture(autouse=True, scope="session")
def _display() -> None:
    """GUI tests need a display; without one Qt aborts the whole run, so say why here instead
    (session scope: checked before pytest-qt's session-wide QApplication is made)."""
    if not os.environ.get("DISPLAY"):
        pytest.fail("no display: install Xvfb (`apt-get install -y xvfb xauth`); pytest-xvfb then starts it")


@pytest.fixture(scope="session")
def sample_map(tmp_path_factory) -> Path:
    """The sample slide's quality map, as *Open Sample* makes it (shared by the tests that only read it)."""
    from slideiqa_napari.sample import sample_map_path

    with pytest.MonkeyPatch.context() as patch:  # the same cache folder as conftest's per-test fixture
        patch.setenv("SLIDEIQA_CACHE", str(tmp_path_factory.getbasetemp() / "slideiqa-cache"))
        return sample_map_path()


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer(show=True)


@pytest.fixture
def notifications():
    """Every napari notification shown during the test, as (severity, message)."""
    from napari.utils.notifications import notification_manager

    seen: list[tuple[str, str]] = []

    def record(notification) -> None:
        seen.append((str(notification.severity), notification.message))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def outer_extent(layer) -> np.ndarray:
    """[[top, left], [bottom, right]] of a 2-D layer in world units, pixel edges included."""
    extent = np.asarray(layer.extent.world)[:, -2:]
    half = np.asarray(layer.scale[-2:]) / 2
    return np.stack([extent[0] - half, extent[1] + half])


def by_role(viewer, role: str):
    return next(layer for layer in viewer.layers if layer.metadata.get("slideiqa", {}).get("role") == role)


def tile_centre(quality, row: int, col: int) -> tuple[float, float]:
    return ((row + 0.5) * quality.tile_um, (col + 0.5) * quality.tile_um)


# -- manifest ----------------------------------------------------------------------------------------
def test_npe2_validate_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", PLUGIN], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_manifest_patterns_are_the_formats_slideiqa_reads():
    """napari.yaml cannot import Python: its reader patterns must be kept equal to slideiqa.io.formats."""
    import yaml

    from slideiqa.io.formats import reader_patterns

    manifest = yaml.safe_load((ROOT / "napari_plugin" / "napari.yaml").read_text())
    (reader,) = manifest["contributions"]["readers"]
    assert sorted(reader["filename_patterns"]) == sorted(reader_patterns())
    assert len(reader["filename_patterns"]) == len(set(reader["filename_patterns"]))


# -- reader ------------------------------------------------------------------------------------------
def test_reader_opens_slide_as_lazy_multiscale_in_micrometres(viewer):
    (layer,) = viewer.open(str(CMU_SLIDE), plugin=PLUGIN)
    assert layer.multiscale and layer.rgb
    # One real level (2220 × 2967) plus one averaged level so the coarsest fits 2048 px.
    assert [tuple(level.shape) for level in layer.data] == [(2967, 2220, 3), (1483, 1110, 3)]
    assert np.allclose(layer.scale, (CMU_MPP, CMU_MPP)) and np.allclose(layer.translate, (CMU_MPP / 2,) * 2)
    assert [str(unit) for unit in layer.units] == ["micrometer", "micrometer"]
    level0 = layer.data[0]
    assert level0.numblocks[:2] == (3, 3)  # lazy chunks of at most 1024 px, read on demand
    with open_slide(CMU_SLIDE) as slide:
        np.testing.assert_array_equal(
            np.asarray(level0[1000:1040, 1500:1530]), slide.read_region((1500, 1000), 0, (30, 40))
        )
    assert np.allclose(outer_extent(layer), [[0, 0], [2967 * CMU_MPP, 2220 * CMU_MPP]])


def test_reader_uses_the_slides_own_pyramid_levels(viewer, tmp_path, tumour_field):
    image = np.ascontiguousarray(np.tile(tumour_field, (3, 3, 1)))  # 3000 px: three levels, coarsest 750
    path = write_pyramidal_tiff(tmp_path / "pyramid.tif", image, mpp=0.25, levels=3)
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert [tuple(level.shape[:2]) for level in layer.data] == [(3000, 3000), (1500, 1500), (750, 750)]
    assert np.allclose(layer.scale, (0.25, 0.25))
    with open_slide(path) as slide:
        np.testing.assert_array_equal(
            np.asarray(layer.data[2][100:120, 200:210]), slide.read_region((800, 400), 2, (10, 20))
        )


def test_reader_opens_map_over_its_slide_with_aligned_extents(viewer, sample_map):
    quality = open_map(sample_map)
    layers = viewer.open(str(sample_map), plugin=PLUGIN)
    roles = [layer.metadata["slideiqa"]["role"] for layer in layers]
    assert roles == ["slide", "score", "label", "cell score", "cell class", "below threshold"]
    slide, score, label, cell_score, cell_label, highlight = layers
    rows, cols = quality.array("score").shape
    assert score.data.shape == label.data.shape == (rows, cols)
    assert quality.tile_um == pytest.approx(112.0, rel=0.01)
    for layer in (score, label):  # NGFF placement: one tile per pixel, pixel centres half a tile in
        assert np.allclose(layer.scale, (quality.tile_um,) * 2)
        assert np.allclose(layer.translate, (quality.tile_um / 2,) * 2)
    assert highlight.data.shape == (rows * 8, cols * 8)
    # Below-threshold outlines: a black line with a white one inside, colours no class has.
    assert set(np.unique(highlight.data)) == {0, OUTLINE_OUTER_VALUE, OUTLINE_INNER_VALUE}
    np.testing.assert_allclose(
        highlight.colormap.map(np.array([OUTLINE_OUTER_VALUE, OUTLINE_INNER_VALUE])), [[0, 0, 0, 1], [1, 1, 1, 1]]
    )
    # Measurements, not annotations: the label layers open read-only, and a paint tool is refused.
    for layer in (label, cell_label, highlight):
        assert not layer.editable
        layer.mode = "paint"
        assert layer.mode == "pan_zoom", layer.name
    # The cells (where inside each tile): seven a tile side, 16 µm each, over exactly the tiles' extent.
    assert cell_score.data.shape == cell_label.data.shape == (rows * 7, cols * 7)
    for layer in (cell_score, cell_label):
        assert np.allclose(layer.scale, (quality.cell_um,) * 2) and not layer.visible
        np.testing.assert_allclose(outer_extent(layer), outer_extent(score), atol=1e-6)
    np.testing.assert_array_equal(cell_label.data, quality.array("cell_label"))
    assert cell_label.colormap.map(np.array([2]))[0].tolist() == label.colormap.map(np.array([2]))[0].tolist()
    assert np.allclose(slide.scale, (CMU_MPP, CMU_MPP))
    slide_box, map_box = outer_extent(slide), outer_extent(score)
    np.testing.assert_allclose(map_box[0], slide_box[0], atol=1e-6)  # same origin
    assert np.all(map_box[1] >= slide_box[1] - 1e-6)  # the grid covers the slide…
    assert np.all(map_box[1] < slide_box[1] + quality.tile_um)  # …with edge tiles running past by < 1 tile
    np.testing.assert_allclose(outer_extent(highlight), map_box, atol=1e-6)
    assert score.colormap.name == SCORE_COLORMAP_NAME and tuple(score.contrast_limits) == (0.0, 1.0)
    # the overview's ramp: the same colours at 0, 0.5 and 1
    np.testing.assert_allclose(
        score.colormap.map(np.array([0.0, 0.5, 1.0]))[:, :3] * 255, score_colours(np.array([0.0, 0.5, 1.0])), atol=1
    )
    assert 0.3 <= score.opacity <= 0.7 and not label.visible
    classes = quality.classes
    for index in range(len(classes)):  # one colour per class, from the map's own image-label
        expected = np.asarray(open_map(sample_map).image_label["colors"][index + 1]["rgba"]) / 255
        np.testing.assert_allclose(label.colormap.map(np.array([index + 1]))[0], expected, atol=1e-6)
    assert label.colormap.map(np.array([0]))[0][3] == 0  # background transparent
    assert tuple(label.colormap.map(np.array([UNREADABLE]))[0]) == (0, 0, 0, 1)  # unreadable tissue black
    np.testing.assert_allclose(label.colormap.map(np.array([PEN]))[0], np.array([86, 180, 233, 255]) / 255)
    np.testing.assert_allclose(label.colormap.map(np.array([EDGE]))[0], np.array([70, 70, 70, 255]) / 255)
    assert list(label.features["class"]) == [
        "background",
        *classes,
        "pen",
        "fold",
        "bubble",
        "edge",
        "debris",
        "unreadable",
    ]
    assert list(label.features["index"]) == [
        0,
        *range(1, len(classes) + 1),
        PEN,
        FOLD,
        BUBBLE,
        EDGE,
        DEBRIS,
        UNREADABLE,
    ]
    for value, colour in ((FOLD, [110, 110, 110, 255]), (BUBBLE, [255, 255, 255, 255]), (DEBRIS, [190, 190, 190, 255])):
        np.testing.assert_allclose(label.colormap.map(np.array([value]))[0], np.array(colour) / 255)


def test_hovering_a_tile_shows_its_score_and_class(viewer, sample_map):
    quality = open_map(sample_map)
    score, label = quality.array("score"), quality.array("label")
    viewer.open(str(sample_map), plugin=PLUGIN)
    row, col = np.unravel_index(np.nanargmin(score), score.shape)
    viewer.mouse_over_canvas = True
    viewer.cursor.position = tile_centre(quality, row, col)
    expected = f"tile ({row}, {col}): score {score[row, col]:.2f}, {quality.classes[label[row, col] - 1]}"
    for layer in viewer.layers:  # whichever layer is selected
        viewer.layers.selection.active = layer
        viewer.update_status_from_cursor()
        assert expected in str(viewer.status), (layer.name, viewer.status)
    background = np.argwhere(np.isnan(score))[0]
    viewer.cursor.position = tile_centre(quality, *background)
    viewer.update_status_from_cursor()
    assert f"tile ({background[0]}, {background[1]}): background" in str(viewer.status)


# -- rendering ---------------------------------------------------------------------------------------
def _centre_colour(viewer, world_yx: tuple[float, float]) -> np.ndarray:
    """Mean RGB of the canvas centre with the camera centred on ``world_yx``."""
    viewer.scene.camera.center = world_yx
    pixels = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
    h, w = pixels.shape[:2]
    return pixels[h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5].reshape(-1, 3).mean(axis=0)


def test_screenshot_shows_overlay_colours_where_map_says_bad_and_good(viewer, sample_map, tmp_path_factory):
    quality = open_map(sample_map)
    score = quality.array("score")
    viewer.open(str(sample_map), plugin=PLUGIN)
    viewer.reset_view()
    artefacts = tmp_path_factory.getbasetemp() / "artefacts"
    artefacts.mkdir(exist_ok=True)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    Image.fromarray(shot).save(artefacts / "napari_overlay.png")
    assert shot.shape[0] > 200 and shot[..., :3].std() > 10  # something was drawn
    print(f"screenshot: {artefacts / 'napari_overlay.png'}")

    overlay = by_role(viewer, "score")
    viewer.scene.camera.zoom *= 3  # a tile spans far more than the 10 px sampled at the centre
    worst, best = np.nanargmin(score), np.nanargmax(score)
    assert score.flat[worst] < 0.5 < score.flat[best]
    for flat in (worst, best):
        centre = tile_centre(quality, *np.unravel_index(flat, score.shape))
        overlay.visible = True
        shown = _centre_colour(viewer, centre)
        overlay.visible = False
        beneath = _centre_colour(viewer, centre)
        # translucent blending: shown = a·colour + (1 − a)·beneath, so the overlay's own colour is
        recovered = (shown - (1 - overlay.opacity) * beneath) / overlay.opacity
        expected = overlay.colormap.map(np.array([score.flat[flat]]))[0][:3] * 255
        np.testing.assert_allclose(recovered, expected, atol=20, err_msg=f"tile score {score.flat[flat]:.2f}")
    bad, good = (overlay.colormap.map(np.array([score.flat[i]]))[0][:3] for i in (worst, best))
    assert bad[0] > bad[2] and good[2] > good[0]  # red where the map says bad, blue where good

    background = tile_centre(quality, *np.argwhere(np.isnan(score))[0])
    overlay.visible = True
    shown = _centre_colour(viewer, background)
    overlay.visible = False
    np.testing.assert_allclose(shown, _centre_colour(viewer, background), atol=2)  # background: transparent


# -- widget ------------------------------------------------------------------------------------------
def _widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Slide quality")
    return widget


def test_explaining_the_tile_under_the_cursor_adds_its_heatmaps_over_it(viewer, sample_map):
    """The worst tile of the sample map: one heatmap layer per defect class, over exactly that tile,
    the most likely class shown, and the same numbers the Python API gives for that tile."""
    from slideiqa.explain.heatmaps import explain_map_tile

    quality = open_map(sample_map)
    score = quality.array("score")
    viewer.open(str(sample_map), plugin=PLUGIN)
    widget = _widget(viewer)
    row, col = np.unravel_index(np.nanargmin(score), score.shape)
    viewer.cursor.position = tile_centre(quality, row, col)
    added = widget.explain_cursor_tile()
    defects = [name for name in quality.classes if name != "good"]
    assert sorted(layer.metadata["slideiqa"]["class"] for layer in added) == sorted(defects)
    assert all(layer.metadata["slideiqa"]["role"] == "explanation" for layer in added)
    tile = np.array([[row, col], [row + 1, col + 1]]) * quality.tile_um
    for layer in added:
        np.testing.assert_allclose(outer_extent(layer), tile, atol=1e-6)
    assert [layer.visible for layer in added] == [True] + [False] * (len(added) - 1)
    expected = explain_map_tile(sample_map, row, col)
    shown = added[0].metadata["slideiqa"]["class"]
    assert shown == max(defects, key=lambda n: expected.probabilities[0, expected.classes.index(n)])
    np.testing.assert_allclose(added[0].data, expected.heatmaps[shown], atol=1e-5)
    assert added[0].data.max() > 0 and f"tile ({row}, {col}) explained" in widget.status_label.text()
    # The best tile: no class is found in it, so no heat map is shown, and each layer says so.
    viewer.cursor.position = tile_centre(quality, *np.unravel_index(np.nanargmax(score), score.shape))
    clean = widget.explain_cursor_tile()
    assert not any(layer.visible for layer in clean) and all(layer.name.endswith("(not found)") for layer in clean)

    viewer.cursor.position = (-5 * quality.tile_um, -5 * quality.tile_um)
    assert widget.explain_cursor_tile() == [] and "not over the map" in widget.status_label.text()


def _wait_for(qtbot, widget, timeout_s: float) -> float:
    """Wait for the run to end; returns the longest pause of the GUI event loop while tiles were
    being assessed (s): until the progress bar is full, before the layers are added."""
    from qtpy.QtCore import QTimer

    ticks: list[float] = [time.perf_counter()]
    bar = widget.progress_bar

    def tick() -> None:
        if not (0 < bar.maximum() == bar.value()):
            ticks.append(time.perf_counter())

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)
    qtbot.waitUntil(lambda: not widget.running, timeout=int(timeout_s * 1000))
    timer.stop()
    return float(np.diff(ticks).max()) if len(ticks) > 1 else 0.0


def test_widget_runs_the_sample_map_and_adds_the_layers(viewer, qtbot, tmp_path):
    widget = _widget(viewer)
    widget.add_slide_file(CMU_SLIDE)
    out = tmp_path / "cmu.quality.zarr"
    widget.output_edit.setText(str(out))
    assert widget.slide_path() == CMU_SLIDE.resolve()
    widget.run_button.click()
    assert widget.running and not widget.run_button.isEnabled() and widget.cancel_button.isEnabled()
    longest_pause = _wait_for(qtbot, widget, 120)
    assert longest_pause < 3.0  # the viewer kept handling events while the slide was mapped (~10 s)

    quality = open_map(out)
    assert quality.complete
    roles = [layer.metadata["slideiqa"]["role"] for layer in viewer.layers]
    assert roles == ["slide", "score", "label", "cell score", "cell class", "below threshold"]
    np.testing.assert_array_equal(by_role(viewer, "score").data, quality.array("score"), strict=False)
    # Progress counts the tiles read for the model: those it scored and those found holding debris.
    read = int((~np.isnan(quality.array("score"))).sum() + (quality.array("label") == DEBRIS).sum())
    assert widget.progress_bar.maximum() == widget.progress_bar.value() == read
    assert "done" in widget.status_label.text()
    saved = quality.summary
    assert saved is not None and saved.verdict.upper() in widget.summary_label.text()
    assert f"{saved.share_below_threshold:.1%}" in widget.summary_label.text()
    for name, share in saved.share_per_class.items():  # legend and share of each class
        assert name in widget.summary_label.text() and f"{share:.1%}" in widget.summary_label.text()

    # The visible score layer has its own legend (a red → blue bar with the threshold), and the class
    # legend says which layer it belongs to and whether that layer is shown.
    legend = widget.score_legend.pixmap().toImage()
    left, right = legend.pixelColor(2, 5), legend.pixelColor(legend.width() - 3, 5)
    assert left.red() > 150 and left.blue() < 60 and right.blue() > 120 and right.red() < 80
    tick = legend.pixelColor(round(0.5 * (legend.width() - 1)), 5)
    assert (tick.red(), tick.green(), tick.blue()) == (0, 0, 0)
    assert "hidden" in widget.summary_label.text() and by_role(viewer, "label").name in widget.summary_label.text()
    by_role(viewer, "label").visible = True
    assert "(shown)" in widget.summary_label.text()
    by_role(viewer, "label").visible = False

    # The slider re-thresholds the display: outlines and figures follow, the map is not recomputed.
    highlight = by_role(viewer, "below threshold")
    outlined_at_half = int(highlight.data.sum())
    widget.threshold_slider.setValue(95)
    score, label = quality.array("score"), quality.array("label")
    # Artefact tiles count as lost at any threshold (the sample has none since dye specks are not
    # debris; tests/artefacts/test_preparation_artefacts.py maps them).
    fixed = int((label >= min(FIXED_LABELS.values())).sum())
    assert widget.summary().share_below_threshold == pytest.approx(
        (int((score[~np.isnan(score)] < 0.95).sum()) + fixed) / read
    )
    assert int(highlight.data.sum()) > outlined_at_half and highlight.name == "below 0.95"
    assert not highlight.editable  # napari makes a layer editable whenever its data is set
    widget.threshold_slider.setValue(0)
    assert int(highlight.data.sum()) == 0 and f"{fixed / read:.1%} of" in widget.summary_label.text()


def test_tiles_slideiqa_labelled_itself_are_outlined_at_any_threshold():
    """A pen, fold or debris tile has no score, so the score layer leaves it transparent, like
    background; it is lost at any threshold, and the outline says so."""
    from slideiqa_napari.layers import below_threshold

    score = np.array([[0.9, np.nan, np.nan], [0.2, 0.9, np.nan]])
    label = np.array([[1, PEN, 0], [2, 1, DEBRIS]], np.uint8)
    for threshold, lost in ((0.5, {(0, 1), (1, 0), (1, 2)}), (0.0, {(0, 1), (1, 2)})):
        outline = below_threshold(score, threshold, label, subdivision=4)
        tiles = outline.reshape(2, 4, 3, 4).max(axis=(1, 3))
        assert {tuple(map(int, at)) for at in np.argwhere(tiles)} == lost
        for row, col in lost:  # no two lost tiles touch: each has a black ring of 12 px, a white one of 4
            block = outline[row * 4 : (row + 1) * 4, col * 4 : (col + 1) * 4]
            assert (block == OUTLINE_OUTER_VALUE).sum() == 12 and (block == OUTLINE_INNER_VALUE).sum() == 4
    assert not below_threshold(score, 0.5, subdivision=4)[:4, 4:8].any()  # without the labels, pen is not seen


def test_cancel_stops_the_worker_and_leaves_a_resumable_map(viewer, qtbot, tmp_path, tumour_field):
    # 5 × 36 tiles of real tissue: three blocks of 16 × 16 tiles, so a cancel has blocks left undone.
    strip = np.ascontiguousarray(np.tile(tumour_field, (1, 8, 1)))
    slide = write_pyramidal_tiff(tmp_path / "strip.tif", strip, mpp=0.5, levels=2, compression="zlib")
    out = tmp_path / "strip.quality.zarr"
    widget = _widget(viewer)
    widget.add_slide_file(slide)
    widget.output_edit.setText(str(out))
    widget.run_button.click()
    widget.cancel_button.click()
    _wait_for(qtbot, widget, 60)
    assert "Cancelled" in widget.status_label.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert [layer for layer in viewer.layers if layer.metadata["slideiqa"]["role"] != "slide"] == []
    root = zarr.open_group(str(out), mode="r")
    done = blocks_done(root)
    assert done.size == 3 and 1 <= done.sum() < 3  # stopped after the first block
    assert root.attrs["slideiqa"]["status"] != STATUS_COMPLETE

    widget.run_button.click()  # Run again resumes and finishes the same map
    _wait_for(qtbot, widget, 60)
    assert open_map(out).complete and by_role(viewer, "score").data.shape == (5, 36)


# -- sample data -------------------------------------------------------------------------------------
def test_open_sample_gives_the_slide_and_its_map(viewer, sample_map):
    (slide,) = viewer.open_sample(PLUGIN, "cmu_slide")
    assert slide.multiscale and np.allclose(slide.scale, (CMU_MPP, CMU_MPP))
    layers = viewer.open_sample(PLUGIN, "cmu_quality_map")
    assert [layer.metadata["slideiqa"]["role"] for layer in layers] == [
        "slide",
        "score",
        "label",
        "cell score",
        "cell class",
        "below threshold",
    ]
    assert layers[1].data.shape == open_map(sample_map).array("score").shape


# -- bad input ---------------------------------------------------------------------------------------
def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    not_a_map = tmp_path / "image.quality.zarr"
    zarr.open_group(str(not_a_map), mode="w").create_array("0", shape=(4, 4), dtype="uint8")
    plain = tmp_path / "plain.zarr"
    zarr.open_array(str(plain), mode="w", shape=(4, 4), dtype="uint8")
    empty = tmp_path / "empty.svs"
    empty.touch()
    return {
        "unopenable.tiff": FIXTURES / "unopenable.tiff",
        "unreadable.svs": FIXTURES / "unreadable.svs",
        "truncated.svs": truncated_copy(CMU_SLIDE, tmp_path / "truncated.svs", 0.3),
        "empty.svs": empty,
        "image.quality.zarr": not_a_map,
        "plain.zarr": plain,
    }


def test_bad_input_shows_a_notification_and_leaves_the_viewer_usable(viewer, tmp_path, notifications):
    for name, path in _bad_inputs(tmp_path).items():
        notifications.clear()
        assert viewer.open(str(path), plugin=PLUGIN) == [], name  # no exception, no layer
        errors = [message for severity, message in notifications if severity == "error"]
        assert len(errors) == 1 and path.name in errors[0] and "Traceback" not in errors[0], (name, notifications)
        if name.endswith(".zarr"):
            assert "not a slideiqa quality map" in errors[0]
    assert len(viewer.layers) == 0
    (layer,) = viewer.open(str(CMU_SLIDE), plugin=PLUGIN)  # still usable
    assert layer.data[0].shape == (2967, 2220, 3)


def test_map_whose_slide_is_gone_opens_alone_with_a_warning(viewer, tmp_path, sample_map, notifications):
    moved = tmp_path / "moved.quality.zarr"
    shutil.copytree(sample_map, moved)
    root = zarr.open_group(str(moved), mode="r+")
    root.attrs["slideiqa"] = root.attrs["slideiqa"] | {
        "slide": root.attrs["slideiqa"]["slide"] | {"path": str(tmp_path / "elsewhere" / "gone.svs")}
    }
    layers = viewer.open(str(moved), plugin=PLUGIN)
    assert [layer.metadata["slideiqa"]["role"] for layer in layers] == [
        "score",
        "label",
        "cell score",
        "cell class",
        "below threshold",
    ]
    assert any(severity == "warning" and "not found" in message for severity, message in notifications)
    # Explaining one of its tiles needs the slide's pixels: a one-line notice naming the file, no traceback.
    widget = _widget(viewer)
    quality = open_map(moved)
    viewer.cursor.position = tile_centre(quality, *np.argwhere(~np.isnan(quality.array("score")))[0])
    notifications.clear()
    assert widget.explain_cursor_tile() == []
    (error,) = [message for severity, message in notifications if severity == "error"]
    assert "gone.svs" in error and "Traceback" not in error and "cannot explain tile" in widget.status_label.text()


@pytest.mark.slow
def test_a_map_killed_in_its_finish_is_shown_as_unfinished_without_a_verdict(viewer, tmp_path):
    """A map cut by kill -9 just before it was marked complete: every tile is there, but the widget
    gives no verdict for it and its score layer says it is unfinished; finished by a rerun, both
    follow."""
    from slideiqa import map_slide

    out = tmp_path / "cmu.quality.zarr"
    assert map_killed_in_its_finish(CMU_SLIDE, out, "before the status") == -9
    widget = _widget(viewer)
    widget.show_map(out, CMU_SLIDE)
    text = widget.summary_label.text()
    assert "UNFINISHED" in text and "PASS" not in text and "FAIL" not in text
    assert by_role(viewer, "score").name.endswith("(unfinished)")
    map_slide(CMU_SLIDE, out)
    widget._rule = None  # as after a run of the widget's own
    widget.show_map(out, CMU_SLIDE)
    assert "PASS" in widget.summary_label.text() and not by_role(viewer, "score").name.endswith("(unfinished)")


def test_widget_reports_a_broken_slide_without_adding_layers(viewer, qtbot, notifications):
    widget = _widget(viewer)
    widget.add_slide_file(FIXTURES / "unreadable.svs")
    widget.run_button.click()
    _wait_for(qtbot, widget, 60)
    assert "Failed" in widget.status_label.text()
    assert any(severity == "error" and "unreadable.svs" in message for severity, message in notifications)
    assert len(viewer.layers) == 0 and widget.run_button.isEnabled()
