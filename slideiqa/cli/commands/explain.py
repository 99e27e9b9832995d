"""``slideiqa explain``: where in a field, tile or slide region the model sees each defect."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from slideiqa.cli.base import command, output
from slideiqa.cli.shared_options import ModelOption
from slideiqa.settings.defaults import DEFAULT_THRESHOLD


class ExplainMethod(str, Enum):
    auto = "auto"
    cells = "cells"
    gradcam = "gradcam"


@command(short="Heatmaps of where the model sees each defect in a field or a region of a slide")
def explain(
    image: Annotated[Path, typer.Argument(help="a field or tile image (PNG, JPEG, TIFF), or a slide with --region")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="picture to write (default IMAGE.explain.png)")
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            help="the region of a slide to explain, X,Y,W,H in level-0 px "
            "(read as slideiqa map reads its tiles; at most 16 × 16 tiles)",
            metavar="X,Y,W,H",
        ),
    ] = None,
    model: ModelOption = "default",
    mpp: Annotated[
        float | None, typer.Option(help="µm/px of the image, overriding (or supplying) its metadata")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    method: Annotated[
        ExplainMethod,
        typer.Option(help="cells: the model's own cell map (auto, where it has a cell head); gradcam: Grad-CAM"),
    ] = ExplainMethod.auto,
    threshold: Annotated[
        float,
        typer.Option(
            help="a class is found in a tile whose P reaches this; heat is drawn only there", min=0.0, max=1.0
        ),
    ] = DEFAULT_THRESHOLD,
    width: Annotated[
        int | None, typer.Option(help="the picture's largest width in px [default: 2500, a screen's]", min=400)
    ] = None,
) -> None:
    """Write a picture of the field and, per defect class, a heatmap of where the model sees it
    (its cell map, or Grad-CAM) on the tiles where it is found: see slideiqa/explain/heatmaps.py."""
    from slideiqa.explain.heatmaps import (
        PICTURE_WIDTH,
        WHERE_SHARE,
        explain_field,
        explain_slide_region,
        explanation_picture,
    )

    if region is None:
        explanation = explain_field(image, model, mpp, device, method=method.value)
        what = image.name
    else:
        explanation, tiles = explain_slide_region(image, _region(region), model, mpp, device, method=method.value)
        what = (
            f"{image.name}, region {region} (map tiles rows {tiles.row0}–{tiles.row0 + tiles.rows - 1}, "
            f"columns {tiles.col0}–{tiles.col0 + tiles.cols - 1})"
        )
    target = out or image.with_name(image.stem + ".explain.png")
    explanation_picture(
        explanation,
        f"{what}: where the model sees each defect ({explanation.method})",
        threshold,
        width or PICTURE_WIDTH,
    ).save(target)
    rows, assessed = [], explanation.assessed_tiles
    for name in explanation.classes:
        found = explanation.tiles_found_in(name, threshold)
        heat = explanation.heatmaps.get(name)
        area = (
            ""
            if heat is None
            else "–"
            if not found
            else f"{(explanation.where(name) & explanation.found_in(name, threshold)).mean():.1%}"
        )
        rows.append((name, f"{explanation.highest(name):.4f}", f"{found} of {assessed}", area))
    floor = f", ≥ {explanation.where_floor:g}" if explanation.where_floor else ""
    kind = "tiles" if explanation.assessed is None else "tissue tiles"
    output.table(
        (
            "class",
            f"highest {kind[:-1]} P",
            f"{kind} with P ≥ {threshold:g}",
            f"area ≥ {WHERE_SHARE:g} × peak{floor}, in those tiles",
        ),
        rows,
    )
    output.line(f"wrote {target}")


def _region(text: str) -> tuple[int, int, int, int]:
    """X,Y,W,H of ``--region`` as four whole numbers."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 4 or not all(part.lstrip("-").isdigit() for part in parts):
        raise typer.BadParameter(f"{text!r}: give X,Y,W,H, four whole numbers of level-0 px", param_hint="--region")
    x, y, w, h = (int(part) for part in parts)
    return x, y, w, h
