"""The options ``map`` and ``batch`` share, declared once, and how a command line's values become
:class:`~slideiqa.settings.options.MapOptions` (defaults, then ``--settings``, then the command line)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from slideiqa.artefacts.registry import ARTEFACT_NAMES

SETTINGS_HELP = (
    "TOML settings file (model, mpp, threshold, max_bad_share, min_tissue, …); options given here win over it"
)


THRESHOLD_HELP = "tiles scoring below this are low quality"


MAX_BAD_SHARE_HELP = "a slide fails when more of its tissue than this is low quality, under ink or unreadable"


class GeoJSON(str, Enum):
    regions = "regions"
    tiles = "tiles"


# The options map and batch share, declared once.
SettingsOption = Annotated[Path | None, typer.Option(help=SETTINGS_HELP)]


ModelOption = Annotated[str, typer.Option(help="shipped model name or checkpoint path")]


BatchSizeOption = Annotated[int, typer.Option(min=1, help="tiles per inference batch")]


DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda")]


ThresholdOption = Annotated[float, typer.Option(min=0, max=1, help=THRESHOLD_HELP)]


MaxBadShareOption = Annotated[float, typer.Option(min=0, max=1, help=MAX_BAD_SHARE_HELP)]


MinTissueOption = Annotated[float, typer.Option(min=0, max=1, help="tissue share that makes a tile worth assessing")]


NoTissueMaskOption = Annotated[bool, typer.Option("--no-tissue-mask", help="assess every tile, background too")]


NoArtefactsOption = Annotated[
    bool,
    typer.Option(
        "--no-artefacts",
        help="do not look for preparation artefacts (pen ink, folds, bubbles, coverslip edges, debris)",
    ),
]


ArtefactsOption = Annotated[
    str | None,
    typer.Option(
        help=f"which preparation artefacts to look for, comma-separated (default all: {','.join(ARTEFACT_NAMES)})",
    ),
]


NoCellsOption = Annotated[
    bool,
    typer.Option(
        "--no-cells",
        help="judge whole tiles only: no cell arrays (where in each tile), even with a model that has a cell head",
    ),
]


GeoJSONOption = Annotated[
    GeoJSON,
    typer.Option(
        help="regions: regions.geojson of low-quality areas; tiles: also "
        "tiles.geojson, every tissue tile as a QuPath object"
    ),
]


#: The map options a command line sets, each from its parameter (of another name where it is a flag
#: that switches the option off) and how the parameter's value becomes the option's.
OPTION_PARAMETERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    **{
        name: (name, lambda value: value)
        for name in ("model", "mpp", "batch_size", "device", "threshold", "max_bad_share", "overwrite", "min_tissue")
    },
    "use_tissue_mask": ("no_tissue_mask", lambda off: not off),
    "find_artefacts": ("no_artefacts", lambda off: not off),
    "artefacts": ("artefacts", lambda names: tuple(name.strip() for name in names.split(",") if name.strip())),
    "cells": ("no_cells", lambda off: not off),
    "tile_geojson": ("geojson", lambda choice: choice is GeoJSON.tiles),
}


def map_options(context: typer.Context):
    """The map options: defaults, then the ``--settings`` file, then what was given on this command
    line (a parameter left at its default does not override the file)."""
    from slideiqa.settings.options import MapOptions, load_settings

    given = {}
    for option, (parameter, convert) in OPTION_PARAMETERS.items():
        source = context.get_parameter_source(parameter)
        if source is not None and source.name != "DEFAULT":
            given[option] = convert(context.params[parameter])
    settings = context.params["settings"]
    return (load_settings(settings) if settings else MapOptions()).updated(**given)
