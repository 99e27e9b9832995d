"""``slideiqa info``: what a slide file holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slideiqa.cli.base import command, output


@command(short="What a slide file holds: scanner, levels, µm/px, tiles")
def info(
    slide: Annotated[Path, typer.Argument(help="slide or field image", metavar="SLIDE")],
    as_json: Annotated[bool, typer.Option("--json", help="print every fact as one JSON object")] = False,
) -> None:
    """Format, scanner, levels, pixel size, size on the glass, tiles and compression of a slide."""
    import json

    from slideiqa.io.slide import open_slide

    with open_slide(slide) as opened:
        meta = opened.info
    if as_json:
        print(json.dumps(meta.to_dict(), indent=2))
        return
    size = meta.size_mm
    rows = [
        ("file", str(slide)),
        ("reader / vendor", f"{meta.reader} / {meta.vendor}"),
        ("scanner", meta.scanner or "not stated"),
        ("scanned", meta.acquired or "not stated"),
        ("µm/px", "unknown (pass --mpp to map it)" if meta.mpp is None else f"{meta.mpp[0]:.4g} × {meta.mpp[1]:.4g}"),
        ("size on the glass", "unknown" if size is None else f"{size[0]:.2f} × {size[1]:.2f} mm"),
        ("objective power", "unknown" if meta.objective_power is None else f"{meta.objective_power:g}×"),
        (
            "stored tiles",
            "none (strips or one image)" if meta.tile_size is None else f"{meta.tile_size[0]} × {meta.tile_size[1]} px",
        ),
        ("compression", meta.compression or "not stated"),
    ]
    rows += [
        (f"level {level}", f"{w} × {h} px, downsample {d:.4g}")
        for level, ((w, h), d) in enumerate(zip(meta.level_dimensions, meta.level_downsamples))
    ]
    rows.append(("associated images", ", ".join(meta.associated_images) or "none"))
    output.fields(slide.name, rows, event=False)
