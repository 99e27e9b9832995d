"""slideiqa: which parts of a microscope scan are good enough to trust.

A CNN image-quality model (after Albuquerque, Vasconcelos & Cardoso) applied to microscope fields
and, tile by tile, to whole-slide images. The names below are the Python API; everything else is
internal and may change between versions.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("slideiqa")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: Each public name and the module that defines it: imported on first use, so that
#: ``slideiqa --version`` and ``import slideiqa`` stay instant.
_WHERE = {
    "map_slide": "slideiqa.pipeline.mapping",
    "MapOptions": "slideiqa.settings.options",
    "load_settings": "slideiqa.settings.options",
    "MapResult": "slideiqa.pipeline.finish",
    "MapSummary": "slideiqa.outputs.summary",
    "MapCancelled": "slideiqa.pipeline.execute",
    "open_map": "slideiqa.outputs.store",
    "QualityMap": "slideiqa.outputs.store",
    "usable_tissue": "slideiqa.outputs.usable",
    "run_batch": "slideiqa.batch.run",
    "BatchResult": "slideiqa.batch.run",
    "open_slide": "slideiqa.io.slide",
    "score_field": "slideiqa.pipeline.fields",
    "Predictor": "slideiqa.models.predictor",
    "explain_field": "slideiqa.explain.heatmaps",
    "SlideIQAError": "slideiqa.errors",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'slideiqa' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
