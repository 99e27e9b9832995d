"""Sample data under *File → Open Sample → slideiqa*: the bundled slide, alone or with its quality map.

The slide is the repository's real Aperio crop (``examples/data/cmu_small_region.svs``), packaged with
the plugin as ``data/cmu_small_region.svs`` (a link in the repository, a copy in a wheel). Its map is
the one ``slideiqa map`` writes beside it when complete; otherwise it is mapped once (about ten
seconds) into slideiqa's cache folder and reused from there.
"""

from __future__ import annotations

from pathlib import Path

from slideiqa.io.slide import open_slide
from slideiqa.models.predictor import cache_dir
from slideiqa.outputs.store import is_quality_map, open_map
from slideiqa.pipeline.mapping import map_slide

from .layers import LayerData, map_layers, slide_layer
from .viewer_watch import watch_viewer

SAMPLE_SLIDE = Path(__file__).parent / "data" / "cmu_small_region.svs"


def sample_slide_path() -> Path:
    if not SAMPLE_SLIDE.is_file():
        raise FileNotFoundError(f"the sample slide {SAMPLE_SLIDE} is missing from this installation of slideiqa")
    return SAMPLE_SLIDE.resolve()


def sample_map_path() -> Path:
    """A complete map of the sample slide, made now if none exists yet."""
    slide = sample_slide_path()
    beside = slide.with_name(slide.stem + ".quality.zarr")
    if is_quality_map(beside) and open_map(beside).complete:
        return beside
    cached = cache_dir() / "napari-sample" / beside.name
    if is_quality_map(cached) and open_map(cached).complete:
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    return map_slide(slide, cached).path  # an interrupted earlier run is resumed


def cmu_slide() -> list[LayerData]:
    """The sample slide as a lazy multiscale layer in µm."""
    slide = open_slide(sample_slide_path())
    return [slide_layer(slide, slide.mpp)]


def cmu_quality_map() -> list[LayerData]:
    """The sample slide with its quality map over it."""
    from napari import current_viewer

    quality = open_map(sample_map_path())
    slide = open_slide(sample_slide_path())
    watch_viewer(current_viewer())
    return [slide_layer(slide, quality.slide.mpp, quality.path), *map_layers(quality)]
