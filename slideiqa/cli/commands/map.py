"""``slideiqa map``: one slide into a quality map, and the lines a person reads of its summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slideiqa.cli.base import command, output
from slideiqa.cli.shared_options import (
    ArtefactsOption,
    BatchSizeOption,
    DeviceOption,
    GeoJSON,
    GeoJSONOption,
    MaxBadShareOption,
    MinTissueOption,
    ModelOption,
    NoArtefactsOption,
    NoCellsOption,
    NoTissueMaskOption,
    SettingsOption,
    ThresholdOption,
    map_options,
)
from slideiqa.errors import SlideIQAError
from slideiqa.settings.defaults import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD
from slideiqa.settings.options import DEFAULT_MIN_TISSUE

if TYPE_CHECKING:  # the summary module is imported only when a map is summarised
    from slideiqa.outputs.summary import MapSummary


@command("map", short="Map the quality of every tissue tile of one slide")
def map_command(
    context: typer.Context,
    slide: Annotated[
        Path, typer.Argument(help="whole-slide image or field image", metavar="SLIDE", show_default=False)
    ],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="output map (default: <slide>.quality.zarr)")] = None,
    settings: SettingsOption = None,
    model: ModelOption = "default",
    mpp: Annotated[float | None, typer.Option(help="slide µm/px, overriding (or supplying) the metadata")] = None,
    batch_size: BatchSizeOption = 32,
    workers: Annotated[
        int | None, typer.Option(min=1, help="worker processes (default: threads in this process)")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(help="address of a running Dask scheduler")] = None,
    device: DeviceOption = "auto",
    threshold: ThresholdOption = DEFAULT_THRESHOLD,
    max_bad_share: MaxBadShareOption = DEFAULT_MAX_BAD_SHARE,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace an existing map instead of resuming it")
    ] = False,
    no_tissue_mask: NoTissueMaskOption = False,
    no_artefacts: NoArtefactsOption = False,
    artefacts: ArtefactsOption = None,
    no_cells: NoCellsOption = False,
    min_tissue: MinTissueOption = DEFAULT_MIN_TISSUE,
    geojson: GeoJSONOption = GeoJSON.regions,
) -> None:
    """Map the image quality of every tissue tile of a slide into a Zarr quality map."""
    if not slide.exists():  # before the heavy imports below, so that a mistyped path answers at once
        raise SlideIQAError(f"{slide}: no such file")
    options = map_options(context)
    from slideiqa.pipeline.mapping import map_slide

    with output.progress(slide.name) as update:
        result = map_slide(
            slide, out, options, workers=workers, scheduler=scheduler, progress=update, notice=output.note
        )
    output.fields(f"{result.path}" + (" (already complete)" if result.skipped else ""), _summary_rows(result.summary))
    for warning in result.warnings:
        output.warning(warning)


def _summary_rows(summary: MapSummary) -> list[tuple[str, str]]:
    """A map's summary as the lines a person reads: verdict, tissue, then where the tissue went.

    *below threshold or lost* is the verdict's figure: tiles scoring below the threshold, plus tissue
    under ink or unreadable. The shares per class say what the model thought most likely of each
    tile (a tile can be most likely ``good`` and still score below a strict threshold)."""
    from slideiqa.outputs.store import FIXED_LABELS

    mean = "–" if summary.mean_score is None else f"{summary.mean_score:.3f}"
    rows = [
        ("verdict", f"{summary.verdict} ({summary.verdict_rule})"),
        (
            "tissue",
            f"{summary.tissue_tiles} tiles, {summary.tissue_area_mm2 or 0:.2f} mm² at {summary.mpp or 0:.3g} µm/px",
        ),
        ("mean score", mean),
        ("below threshold or lost", f"{summary.share_below_threshold:.1%}"),
        ("most likely class", "share of tissue tiles"),
    ]
    rows += [
        (f"  {name}", f"{share:.1%}")
        for name, share in summary.share_per_class.items()
        if share or name not in FIXED_LABELS
    ]
    if cells := summary.cells:
        rows.append((f"{cells.cell_um:g} µm cells below threshold", f"{cells.share_below_threshold:.1%}"))
    if summary.tiles_per_s:
        rows.append(("speed", f"{summary.tiles_per_s:.0f} tiles/s, {summary.runtime_s or 0:.1f} s in all"))
    return rows
