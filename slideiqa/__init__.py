"""slideiqa: which parts of a microscope scan are good enough to trust.

A CNN image-quality model (after Albuquerque, Vasconcelos & Cardoso) applied to microscope fields
and, tile by tile, to whole-slide images.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slideiqa")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
