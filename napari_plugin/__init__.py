"""napari plugin of slideiqa: slides and their quality maps in the viewer, and maps run from it.

Modules, one job each:

* :mod:`.pyramid` — a slide as a lazy Dask pyramid (one chunk = one region read, on demand);
* :mod:`.layers` — the layer data of a slide and of a quality map, in micrometres so they align;
* :mod:`.hover` — the score and class of the tile under the cursor, in the status bar;
* :mod:`.reader` — napari's reader for slides and ``*.quality.zarr`` maps, with notifications on bad input;
* :mod:`.widget` — the *Slide quality* dock widget that runs a map in a background thread;
* :mod:`.sample` — the bundled sample slide and its map under *File → Open Sample*.

The contributions are declared in ``napari.yaml``.
"""

from __future__ import annotations

__all__: list[str] = []
