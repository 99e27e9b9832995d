"""``slideiqa usable``: the usable-tissue mask of a mapped slide."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slideiqa.cli.base import command, output
from slideiqa.settings.defaults import DEFAULT_USABLE_UM_PER_PX


@command(short="Write the usable-tissue mask of a mapped slide (PNG and QuPath GeoJSON)")
def usable(
    quality_map: Annotated[Path, typer.Argument(help="a finished quality map (<slide>.quality.zarr)", metavar="MAP")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="mask PNG (default: MAP/usable.png)")] = None,
    um_per_px: Annotated[
        float, typer.Option("--um-per-px", help="µm on the glass per mask pixel")
    ] = DEFAULT_USABLE_UM_PER_PX,
    slide: Annotated[Path | None, typer.Option(help="the mapped slide, where it has moved since")] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="a tile's least P(good) (default: the map's)")
    ] = None,
    geojson: Annotated[
        bool, typer.Option("--geojson/--no-geojson", help="also write the mask as QuPath annotations")
    ] = True,
) -> None:
    """Write where a mapped slide has tissue that can be trusted: tissue, in a tile that passes, not
    under a preparation artefact (see slideiqa/outputs/usable.py), as a PNG and QuPath GeoJSON."""
    from slideiqa.outputs.usable import usable_tissue, write_usable

    found = usable_tissue(quality_map, um_per_px, slide, threshold)
    png = out or quality_map / "usable.png"
    shapes = png.with_suffix(".geojson") if geojson else None
    write_usable(found, png, shapes)
    tissue_rows = [
        ("µm/px", f"{found.um_per_px:.3g}"),
        ("size", f"{found.mask.shape[1]} × {found.mask.shape[0]} px"),
        ("threshold", f"{found.threshold:g}"),
        ("usable tissue", f"{found.area_um2 / 1e6:.3f} mm²"),
        ("written", str(png) + (f", {shapes}" if shapes else "")),
    ]
    output.fields(f"usable tissue of {found.slide.name}", tissue_rows)
