"""slideiqa: which parts of a microscope scan are good enough to trust.

A CNN image-quality model (after Albuquerque, Vasconcelos & Cardoso) applied to microscope fields
and, tile by tile, to whole-slide images.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slideiqa")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "map_slide", "open_map", "open_slide"]


def __getattr__(name: str):
    """The Python API, imported on first use so that ``slideiqa --version`` stays instant."""
    if name == "map_slide":
        from slideiqa.pipeline.mapping import map_slide

        return map_slide
    if name == "open_map":
        from slideiqa.outputs.store import open_map

        return open_map
    if name == "open_slide":
        from slideiqa.io.slide import open_slide

        return open_slide
    raise AttributeError(f"module 'slideiqa' has no attribute {name!r}")
