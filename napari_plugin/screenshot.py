"""A picture of a quality map over its slide, rendered by napari itself.

``python -m slideiqa_napari.screenshot MAP.quality.zarr OUT.png`` opens the map (and its slide) with
this plugin's reader in a real viewer, docks the *Slide quality* widget with the map's summary and
legend, and saves the window. It needs a display (under a headless server: ``xvfb-run -a``). The
README's picture is made this way, and the tests render the same layers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

WINDOW_SIZE = (1400, 900)


def open_overlay(viewer: Any, map_path: str | Path) -> list[Any]:
    """Open ``map_path`` (and its slide beneath it) with this plugin's reader, fitted to the canvas."""
    layers = viewer.open(str(map_path), plugin="slideiqa")
    viewer.reset_view()
    return layers


def render(map_path: str | Path, out: str | Path, with_widget: bool = True) -> np.ndarray:
    """Save the window (or only the canvas) showing ``map_path`` to ``out``; returns the RGBA pixels."""
    import napari
    from PIL import Image

    viewer = napari.Viewer(show=True)
    try:
        viewer.window.resize(*WINDOW_SIZE)
        if with_widget:
            viewer.window.add_plugin_dock_widget("slideiqa", "Slide quality")
        open_overlay(viewer, map_path)
        viewer.canvas.overlays.scale_bar.visible = True
        pixels = viewer.screenshot(canvas_only=not with_widget, flash=False)
        Image.fromarray(pixels).save(out)
        return pixels
    finally:
        viewer.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("map", help="a *.quality.zarr map")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--canvas-only", action="store_true", help="the canvas without the widget")
    arguments = parser.parse_args(argv)
    render(arguments.map, arguments.out, with_widget=not arguments.canvas_only)


if __name__ == "__main__":
    main()
