"""What slideiqa keeps up on a viewer whose layers come and go: every map layer's tile description in
the status bar (``hover.py``) and its label layers read-only (``read_only.py``)."""

from __future__ import annotations

import weakref
from typing import Any

from .hover import attach_all
from .read_only import lock_all

_WATCHED: weakref.WeakSet[Any] = weakref.WeakSet()


def _keep_up(viewer: Any) -> None:
    # The slide may be inserted before its map's score layer: every layer is looked at each time.
    attach_all(viewer)
    lock_all(viewer)


def watch_viewer(viewer: Any) -> None:
    """Keep ``viewer``'s slideiqa layers, now and later, described and read-only (idempotent)."""
    if viewer is None:
        return
    _keep_up(viewer)
    if viewer in _WATCHED:
        return
    _WATCHED.add(viewer)
    viewer_ref = weakref.ref(viewer)  # the viewer's own event must not keep the viewer alive

    def on_inserted(event: Any) -> None:
        if (current := viewer_ref()) is not None:
            _keep_up(current)

    viewer.layers.events.inserted.connect(on_inserted)
