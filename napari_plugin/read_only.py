"""slideiqa's label layers — tile classes, cell classes, below-threshold outlines — cannot be painted.

They are measurements, not annotations, yet napari opens every Labels layer editable: one click of its
paint tool would change the map on screen with nothing to say so. napari 0.9 takes no ``editable``
from a reader and makes a layer editable again whenever its data is set (the threshold slider
rewrites the outlines), so each layer is locked as it is inserted and again whenever napari unlocks it.
"""

from __future__ import annotations

from typing import Any

from .layers import ROLE_CELL_LABEL, ROLE_HIGHLIGHT, ROLE_LABEL, role_of

#: The roles of slideiqa's Labels layers.
READ_ONLY_ROLES = frozenset({ROLE_LABEL, ROLE_CELL_LABEL, ROLE_HIGHLIGHT})


def lock(layer: Any) -> None:
    """Make ``layer`` read-only for good if it is one of slideiqa's label layers (idempotent)."""
    if role_of(layer)[0] not in READ_ONLY_ROLES or getattr(layer, "_slideiqa_read_only", False):
        return

    def keep_read_only(event: Any = None) -> None:
        if layer.editable:
            layer.editable = False  # napari also leaves the paint mode for pan & zoom

    layer.events.editable.connect(keep_read_only)
    layer._slideiqa_read_only = True
    keep_read_only()


def lock_all(viewer: Any) -> None:
    for layer in list(viewer.layers):
        lock(layer)
