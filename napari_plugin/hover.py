"""The score and class of the tile under the cursor, in napari's status bar.

napari writes the status bar from the *selected* layer's ``get_status``: the score layer would show
only its value and the class layer only its class. Every slideiqa layer of a map (and the slide
beneath it) therefore appends the tile's full description — so the status says the same, whichever
of them is selected.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from .layers import ROLE_LABEL, ROLE_SCORE, role_of


def _map_arrays(viewer: Any, map_path: str) -> tuple[np.ndarray | None, np.ndarray | None, Any]:
    """The score array, label array and class layer shown for ``map_path``: what the user sees."""
    score = label = label_layer = None
    for layer in viewer.layers:
        role, path = role_of(layer)
        if path != map_path:
            continue
        if role == ROLE_SCORE:
            score = np.asarray(layer.data)
        elif role == ROLE_LABEL:
            label, label_layer = np.asarray(layer.data), layer
    return score, label, label_layer


def describe_tile(viewer: Any, map_path: str, world_yx: tuple[float, float], tile_um: float) -> str:
    """E.g. ``tile (3, 7): score 0.21, defocus``; empty outside the map."""
    score, label, label_layer = _map_arrays(viewer, map_path)
    if score is None:
        return ""
    row, col = (math.floor(v / tile_um) for v in world_yx)
    if not (0 <= row < score.shape[0] and 0 <= col < score.shape[1]):
        return ""
    value = float(score[row, col])
    names = {}
    if label is not None and label_layer is not None:
        names = dict(zip(label_layer.features["index"], label_layer.features["class"]))
    name = names.get(int(label[row, col])) if names and label is not None else None
    if math.isnan(value):  # not assessed: background, or a label slideiqa gave (pen, unreadable)
        return f"tile ({row}, {col}): {name if name and name != 'background' else 'background'}"
    return f"tile ({row}, {col}): score {value:.2f}" + (f", {name}" if name else "")


def _with_tile(layer: Any, viewer_ref: weakref.ref[Any], map_path: str, tile_um: float) -> None:
    original = layer.get_status

    def get_status(position=None, *, world: bool = False, **kwargs: Any) -> dict[str, str]:
        status = original(position, world=world, **kwargs)
        viewer = viewer_ref()
        if position is None or viewer is None:
            return status
        world_yx = np.asarray(position)[-2:] if world else np.asarray(layer.data_to_world(position))[-2:]
        text = describe_tile(viewer, map_path, (float(world_yx[0]), float(world_yx[1])), tile_um)
        if text:
            status["value"] = f"{status['value']}; {text}" if status["value"] else text
            status["coordinates"] = f"{status['coordinates']}; {text}"
        return status

    layer.get_status = get_status


def _attach(viewer: Any, layer: Any) -> None:
    _, map_path = role_of(layer)
    if map_path is None or getattr(layer, "_slideiqa_hover", False):
        return
    # The map's grid scale is the score layer's; the slide beneath it shares the map's world.
    tile_um = next(
        (float(other.scale[-1]) for other in viewer.layers if role_of(other) == (ROLE_SCORE, map_path)), None
    )
    if tile_um is None:
        return
    _with_tile(layer, weakref.ref(viewer), map_path, tile_um)
    layer._slideiqa_hover = True


def attach_all(viewer: Any) -> None:
    """Give every slideiqa map layer of ``viewer`` the tile description (idempotent)."""
    for layer in list(viewer.layers):
        _attach(viewer, layer)
