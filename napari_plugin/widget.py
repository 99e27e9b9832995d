"""The *Slide quality* dock widget: run a quality map from the viewer and read its summary.

The map runs in a background thread (napari's worker), so the viewer stays responsive; the mapping
reports progress through a Qt signal, which Qt delivers in the GUI thread. *Cancel* asks the run
to stop at the next finished block: the map stays on disk, resumable, and *Run* continues it.

The threshold slider changes only what is shown — the outlines of tiles below it and the verdict in
the summary — without recomputing the map; the threshold is also passed to a run, for the verdict
written into the map's ``summary.json``.
"""

from __future__ import annotations

import html
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from slideiqa.errors import SlideIQAError, describe
from slideiqa.models.zoo import available_pretrained
from slideiqa.outputs.palette import SCORE_RAMP_WORDS, VERDICT_COLOURS, hex_colour, score_colours
from slideiqa.outputs.report import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD, summarize
from slideiqa.outputs.store import open_map
from slideiqa.outputs.summary import VerdictFigures
from slideiqa.pipeline.execute import MapCancelled
from slideiqa.pipeline.finish import MapResult
from slideiqa.pipeline.mapping import map_slide
from slideiqa.settings.options import MapOptions

from .layers import (
    ROLE_HIGHLIGHT,
    ROLE_LABEL,
    ROLE_SCORE,
    ROLE_SLIDE,
    below_threshold,
    explanation_layers,
    map_layers,
    role_of,
    slide_layer,
)
from .viewer_watch import watch_viewer

SLIDER_STEPS = 100  # threshold resolution 0.01
LEGEND_WIDTH, LEGEND_HEIGHT = 240, 12


class _Progress(QObject):
    """Carries ``map_slide``'s progress callback, called in the worker thread, to the GUI thread."""

    changed = Signal(int, int)


class QualityWidget(QWidget):
    """Choose a slide (a slide layer or a file), model, threshold and workers; *Run* maps it."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.map_path: Path | None = None
        self._stop = threading.Event()
        self._files: list[Path] = []
        #: (map, its verdict rule's max_bad_share, whether it is complete), read once per map shown.
        self._rule: tuple[Path | None, float, bool] | None = None
        self._progress = _Progress(self)
        self._progress.changed.connect(self._on_progress)
        self._build()
        watch_viewer(napari_viewer)
        napari_viewer.layers.events.inserted.connect(self._on_layers_changed)
        napari_viewer.layers.events.removed.connect(self._on_layers_changed)
        # closeEvent is not always delivered to a dock widget (removed dock, closed viewer): a run
        # left behind would keep mapping and report to a deleted widget, so stop it on destruction.
        self.destroyed.connect(self._stop.set)
        self._on_layers_changed()

    # -- construction -----------------------------------------------------------------------------
    def _build(self) -> None:
        self.slide_box = QComboBox()
        self.browse_button = QPushButton("File…")
        self.browse_button.clicked.connect(self._browse)
        slide_row = QHBoxLayout()
        slide_row.addWidget(self.slide_box, 1)
        slide_row.addWidget(self.browse_button)

        self.model_box = QComboBox()
        self.model_box.setEditable(True)  # a checkpoint path may be typed in
        self.model_box.addItems(list(available_pretrained()) or ["default"])
        self.model_box.setToolTip("a shipped model or the path of a .safetensors checkpoint")

        self.threshold_slider = QSlider(Qt.Orientation.Horizontal)
        self.threshold_slider.setRange(0, SLIDER_STEPS)
        self.threshold_slider.setValue(round(DEFAULT_THRESHOLD * SLIDER_STEPS))
        self.threshold_label = QLabel()
        self.threshold_slider.valueChanged.connect(self._on_threshold)
        threshold_row = QHBoxLayout()
        threshold_row.addWidget(self.threshold_slider, 1)
        threshold_row.addWidget(self.threshold_label)

        self.workers_box = QSpinBox()
        self.workers_box.setRange(0, max(1, os.cpu_count() or 1))
        self.workers_box.setSpecialValueText("threads in napari")
        self.workers_box.setToolTip("0: threads of this process; N: N worker processes")

        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("beside the slide: <slide>.quality.zarr")
        self.overwrite_box = QCheckBox("replace a map made with other settings")

        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.explain_button = QPushButton("Explain the tile under the cursor")
        self.explain_button.setToolTip(
            "heatmaps of where the model sees each defect in that tile (its cell "
            "map, or Grad-CAM for a model without one): one layer per class, the "
            "most likely shown where it is found"
        )
        self.explain_button.clicked.connect(self.explain_cursor_tile)
        self._explainer: Any = None

        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m tiles")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.summary_label = QLabel("")
        self.summary_label.setTextFormat(Qt.TextFormat.RichText)
        self.summary_label.setWordWrap(True)
        # The score layer (shown) and the class layer (hidden at first) use overlapping colours for
        # different things: red is "low P(good)" on one and "defocus" on the other. Each gets its
        # own legend, titled by its layer.
        self.score_legend = QLabel("")
        self.score_legend.setToolTip(
            f"colours of the score layer: P(good) of each tile, {SCORE_RAMP_WORDS}; the black tick is the threshold"
        )

        form = QFormLayout()
        form.addRow("Slide", slide_row)
        form.addRow("Model", self.model_box)
        form.addRow("Threshold", threshold_row)
        form.addRow("Workers", self.workers_box)
        form.addRow("Output", self.output_edit)
        form.addRow("", self.overwrite_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.explain_button)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.score_legend)
        layout.addWidget(self.summary_label)
        layout.addStretch(1)
        self._on_threshold()

    # -- slide choice -----------------------------------------------------------------------------
    def _slide_layers(self) -> list[Any]:
        return [layer for layer in self.viewer.layers if role_of(layer)[0] == ROLE_SLIDE]

    def _refresh_slides(self) -> None:
        current = self.slide_path()
        self.slide_box.blockSignals(True)
        self.slide_box.clear()
        for layer in self._slide_layers():
            self.slide_box.addItem(f"layer: {layer.name}", layer.metadata["slideiqa"]["slide"])
        for path in self._files:
            self.slide_box.addItem(f"file: {path.name}", str(path))
        index = self.slide_box.findData(str(current)) if current else -1
        self.slide_box.setCurrentIndex(index if index >= 0 else self.slide_box.count() - 1)
        self.slide_box.blockSignals(False)

    def add_slide_file(self, path: str | Path) -> None:
        """Offer ``path`` in the slide list and select it (what *File…* does after its dialog)."""
        path = Path(path).resolve()
        if path not in self._files:
            self._files.append(path)
        self._refresh_slides()
        self.slide_box.setCurrentIndex(self.slide_box.findData(str(path)))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Slide to map")
        if path:
            self.add_slide_file(path)

    def slide_path(self) -> Path | None:
        data = self.slide_box.currentData()
        return Path(data) if data else None

    # -- threshold and summary --------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        return self.threshold_slider.value() / SLIDER_STEPS

    def _map_layer(self, role: str) -> Any:
        return next(
            (layer for layer in self.viewer.layers if self.map_path and role_of(layer) == (role, str(self.map_path))),
            None,
        )

    def _on_threshold(self, *_: Any) -> None:
        threshold = self.threshold
        self.threshold_label.setText(f"{threshold:.2f}")
        score_layer, highlight = self._map_layer(ROLE_SCORE), self._map_layer(ROLE_HIGHLIGHT)
        label_layer = self._map_layer(ROLE_LABEL)
        if score_layer is not None and highlight is not None:
            label = None if label_layer is None else np.asarray(label_layer.data)
            highlight.data = below_threshold(np.asarray(score_layer.data), threshold, label)
            highlight.name = f"below {threshold:.2f}"
            highlight.metadata["threshold"] = threshold
        self._show_summary()

    def summary(self) -> VerdictFigures | None:
        """The shown map's figures at the slider's threshold (``slideiqa.outputs.report.summarize``)."""
        score_layer, label_layer = self._map_layer(ROLE_SCORE), self._map_layer(ROLE_LABEL)
        if score_layer is None or label_layer is None:
            return None
        classes = list(label_layer.features["class"])[1:]
        return summarize(
            np.asarray(score_layer.data), np.asarray(label_layer.data), classes, self.threshold, self._max_bad_share()
        )

    def _max_bad_share(self) -> float:
        """The shown map's verdict rule (the slider calls for it at every step)."""
        return self._map_facts()[0]

    def _map_complete(self) -> bool:
        """Whether the shown map is complete: a map still being written, or interrupted, has no verdict."""
        return self._map_facts()[1]

    def _map_facts(self) -> tuple[float, bool]:
        """(max_bad_share, complete) of the shown map, read once per map."""
        if self.map_path is None:  # no map shown
            return DEFAULT_MAX_BAD_SHARE, False
        if self._rule is None or self._rule[0] != self.map_path:
            try:
                opened = open_map(self.map_path)
                saved, complete = opened.saved_summary, opened.complete
            except SlideIQAError:  # the map was moved or deleted since it was shown
                saved, complete = None, False
            rule = saved.max_bad_share if saved is not None and saved.max_bad_share is not None else None
            self._rule = (self.map_path, float(DEFAULT_MAX_BAD_SHARE if rule is None else rule), complete)
        return self._rule[1], self._rule[2]

    def _show_score_legend(self, score_layer: Any) -> None:
        """A colour bar of the score layer with the threshold marked, under the layer's name."""
        from qtpy.QtGui import QImage, QPixmap

        if score_layer is None:
            self.score_legend.clear()
            return
        ramp = score_colours(np.linspace(0.0, 1.0, LEGEND_WIDTH))
        bar = np.ascontiguousarray(np.repeat(np.rint(ramp)[None].astype(np.uint8), LEGEND_HEIGHT, axis=0))
        tick = min(LEGEND_WIDTH - 1, round(self.threshold * (LEGEND_WIDTH - 1)))
        bar[:, max(0, tick - 1) : tick + 2] = 0
        image = QImage(
            bar.data,  # type: ignore[call-overload]  # any buffer will do; the stub names bytes only
            LEGEND_WIDTH,
            LEGEND_HEIGHT,
            3 * LEGEND_WIDTH,
            QImage.Format.Format_RGB888,
        ).copy()
        self.score_legend.setPixmap(QPixmap.fromImage(image))
        self.score_legend.setToolTip(
            f"'{score_layer.name}' layer: P(good) per tile, {SCORE_RAMP_WORDS}; "
            f"the black tick is the threshold {self.threshold:.2f}"
        )

    def _show_summary(self) -> None:
        summary = self.summary()
        self._show_score_legend(self._map_layer(ROLE_SCORE))
        if summary is None:
            self.summary_label.setText("")
            return
        if not self._map_complete():
            alarm = hex_colour(VERDICT_COLOURS["error"])
            self.summary_label.setText(
                f"<b>{html.escape(self.map_path.name if self.map_path else '')}</b> — <b style='color: {alarm}'>UNFINISHED</b>: the map "
                "is still being written or was interrupted, so it has no verdict yet; run slideiqa map on its "
                "slide again (or Run here) to finish it"
            )
            return
        label_layer = self._map_layer(ROLE_LABEL)
        if not getattr(label_layer, "_slideiqa_watched", False):  # its legend's title follows its eye
            label_layer.events.visible.connect(lambda *_: self._show_summary())
            label_layer._slideiqa_watched = True
        shown = "shown" if label_layer.visible else "hidden: tick its eye in the layer list to show it"
        colours = dict(label_layer.metadata.get("legend", []))
        verdict_colour = hex_colour(VERDICT_COLOURS["pass" if summary.passed else "error"])
        mean = summary.mean_score
        rows = "".join(
            f"<tr><td><span style='color: rgb{tuple(colours.get(name, (128, 128, 128)))}'>■</span> "
            f"{html.escape(name)}</td><td align='right'>{share:.1%}</td></tr>"
            for name, share in summary.share_per_class.items()
        )
        self.summary_label.setText(
            f"<b>{html.escape(self.map_path.name if self.map_path else '')}</b> — above: the score layer's colours (P(good), "
            f"{SCORE_RAMP_WORDS}, tick = threshold)<br>"
            f"<b style='color: {verdict_colour}'>{summary.verdict.upper()}</b> — {summary.verdict_rule}<br>"
            f"{summary.share_below_threshold:.1%} of {summary.tissue_tiles} tissue tiles below "
            f"{summary.threshold:.2f}; mean score {'–' if mean is None else f'{mean:.2f}'}<br>"
            f"<table><tr><th align='left'>class colours of the '{html.escape(label_layer.name)}' layer ({shown})"
            f"</th><th align='right'>share of tissue</th></tr>{rows}</table>"
        )

    # -- layers -----------------------------------------------------------------------------------
    def _on_layers_changed(self, event: Any = None) -> None:
        self._refresh_slides()
        if event is None or event.type == "inserted":
            # A map opened by the reader, the sample or a run (or already there when the widget
            # opens): the newest one is the one summarised and thresholded.
            candidates = [event.value] if event is not None else list(self.viewer.layers)[::-1]
            for layer in candidates:
                role, map_path = role_of(layer)
                if map_path and role != ROLE_SLIDE:  # its layers arrive one by one: refresh on each
                    self.map_path = Path(map_path)
                    self._on_threshold()
                    return
        if self.map_path is not None and self._map_layer(ROLE_SCORE) is None:
            self.map_path = None
            self._show_summary()

    def show_map(self, map_path: Path, slide_path: Path) -> None:
        """Put the map's layers in the viewer (replacing an earlier version) over its slide."""
        from napari.layers import Layer

        quality = open_map(map_path)
        for layer in [
            layer
            for layer in self.viewer.layers
            if role_of(layer)[1] == str(quality.path) and role_of(layer)[0] != ROLE_SLIDE
        ]:
            self.viewer.layers.remove(layer)
        slide_layers = [
            layer
            for layer in self._slide_layers()
            if Path(layer.metadata["slideiqa"]["slide"]).resolve() == slide_path.resolve()
        ]
        if slide_layers:  # the slide on screen now lies under this map: its tiles describe themselves
            slide_layers[0].metadata["slideiqa"]["map"] = str(quality.path)
        else:
            from slideiqa.io.slide import open_slide

            mpp = quality.slide.mpp
            self.viewer.add_layer(Layer.create(*slide_layer(open_slide(slide_path), mpp, quality.path)))
        for data in map_layers(quality, self.threshold):
            self.viewer.add_layer(Layer.create(*data))
        self.viewer.canvas.overlays.scale_bar.visible = True
        self.viewer.reset_view()

    def explain_cursor_tile(self) -> list[Any]:
        """Add the heatmaps of the shown map's tile under the cursor; returns the layers added (none,
        with a note in the status line, when no map is shown or the cursor is off its tiles)."""
        from napari.layers import Layer

        from slideiqa.explain.heatmaps import explain_map_tile, explainer_for

        if self.map_path is None:
            self.status_label.setText("open or run a map first: explanations are of its tiles")
            return []
        quality = open_map(self.map_path)
        y, x = self.viewer.cursor.position[-2:]
        row, col = int(y // quality.tile_um), int(x // quality.tile_um)
        rows, cols = quality.grid.shape
        if not (0 <= row < rows and 0 <= col < cols):
            self.status_label.setText("the cursor is not over the map's tiles")
            return []
        slide_layers = [layer for layer in self._slide_layers() if role_of(layer)[1] == str(quality.path)]
        slide = slide_layers[0].metadata["slideiqa"]["slide"] if slide_layers else None
        model = quality.options.model
        try:
            if self._explainer is None or self._explainer[0] != model:
                self._explainer = (model, explainer_for(model))  # loading takes a second: kept for the next tile
            explanation = explain_map_tile(quality.path, row, col, slide, self._explainer[1])
        except (SlideIQAError, OSError) as error:  # a slide moved away, PyTorch missing: a notice, not a traceback
            from napari.utils.notifications import show_error

            message = describe(error)
            self.status_label.setText(f"cannot explain tile ({row}, {col}): {message}")
            show_error(f"Slide quality: cannot explain tile ({row}, {col}): {message}")
            return []
        added = [
            self.viewer.add_layer(Layer.create(*data))
            for data in explanation_layers(explanation, row, col, quality.tile_um, quality.path, self.threshold)
        ]
        self.status_label.setText(f"tile ({row}, {col}) explained: {added[0].name}")
        return added

    # -- running ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def options(self) -> MapOptions:
        """The map options the widget's controls choose (the same object the CLI builds)."""
        return MapOptions(
            model=self.model_box.currentText().strip() or "default",
            threshold=self.threshold,
            overwrite=self.overwrite_box.isChecked(),
        )

    def run(self) -> None:
        """Map the chosen slide in a background thread."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_warning

        slide = self.slide_path()
        if self.running:
            return
        if slide is None:
            show_warning("Slide quality: choose a slide layer or a file first")
            return
        self._stop.clear()
        output = self.output_edit.text().strip()
        self.worker = create_worker(
            map_slide,
            slide,
            Path(output) if output else None,
            self.options(),
            workers=self.workers_box.value() or None,
            progress=self._progress.changed.emit,
            should_stop=self._stop.is_set,
            _start_thread=False,
            _ignore_errors=True,
        )
        self.worker.returned.connect(lambda result: self._on_done(result, slide))
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the first progress report gives the total
        self.status_label.setText(f"Mapping {slide.name}…")
        self.worker.start()

    def cancel(self) -> None:
        """Ask the run to stop when its current block is written; the map stays resumable."""
        if self.running:
            self._stop.set()
            self.cancel_button.setEnabled(False)
            self.status_label.setText("Cancelling after the current block…")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(done)

    def _on_done(self, result: MapResult, slide: Path) -> None:
        self._rule = None  # the map may have been shown while it was being written
        state = "already complete" if result.skipped else f"done in {result.summary.runtime_s or 0:.1f} s"
        self.status_label.setText(f"{result.path.name}: {state}")
        try:
            self.show_map(result.path, slide)
        except Exception as error:  # a notification, never a traceback dialog from a Qt slot
            from napari.utils.notifications import show_error

            show_error(f"Slide quality: the map was made but cannot be shown: {error}")

    def _on_error(self, error: Exception) -> None:
        from napari.utils.notifications import show_error

        if isinstance(error, MapCancelled):
            self.status_label.setText(f"Cancelled: {error}")
            return
        message = str(error) if isinstance(error, SlideIQAError) else f"{type(error).__name__}: {error}"
        self.status_label.setText(f"Failed: {message}")
        show_error(f"Slide quality: {message}")

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)

    def closeEvent(self, event: Any) -> None:  # Qt's name
        self._stop.set()  # a run left behind would hold the slide and a Dask cluster
        super().closeEvent(event)
