"""The ``slideiqa`` command line."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from slideiqa import __version__
from slideiqa.artefacts.registry import ARTEFACT_NAMES
from slideiqa.cli.terminal import Output
from slideiqa.errors import SlideIQAError, debug_option, debugging, describe, run_cli
from slideiqa.settings.defaults import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD, DEFAULT_USABLE_UM_PER_PX
from slideiqa.settings.options import DEFAULT_MIN_TISSUE

app = typer.Typer(
    help="Image-quality maps for microscope fields and whole-slide images.",
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
output = Output()


class ConventionalHelp(typer.core.TyperCommand):
    """Help in the usual Unix style: ``Usage: slideiqa map [OPTIONS] SLIDE``, arguments in capitals
    without a type (this typer writes ``{slide}`` and ``<list[Path]>``, which read as syntax)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]  # the help text says what it is

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, typer.core.TyperArgument):
                name = param.display_name_raw.upper() + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


def command(name: str | None = None, short: str | None = None):
    """``app.command`` with conventional help; ``short`` is its line in ``slideiqa --help``."""
    return app.command(name, cls=ConventionalHelp, short_help=short)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slideiqa {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", callback=debug_option, is_eager=True, help="show full tracebacks on errors")
    ] = False,
) -> None:
    """Image-quality maps for microscope fields and whole-slide images."""


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


def _map_options(context: typer.Context):
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


@command(short="List the shipped quality models and their classes")
def models() -> None:
    """List the shipped quality models and what they were trained for."""
    from slideiqa.models.card import load_card
    from slideiqa.models.zoo import PRETRAINED, available_pretrained

    rows = []
    found = available_pretrained()
    for name in PRETRAINED:
        if name in found:
            card = load_card(found[name])
            rows.append(
                (
                    name,
                    card.architecture,
                    ", ".join(card.classes),
                    f"{card.mpp:g}",
                    str(card.tile_size),
                    found[name].name,
                )
            )
        else:
            rows.append((name, "—", "not installed", "", "", ""))
    output.table(("name", "architecture", "classes", "µm/px", "tile", "checkpoint"), rows)


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@command(short="Score single field images")
def predict(
    images: Annotated[list[Path], typer.Argument(help="microscope field images (PNG, JPEG, TIFF)", metavar="IMAGE")],
    model: ModelOption = "default",
    mpp: Annotated[
        float | None, typer.Option(help="µm/px of the fields, overriding (or supplying) their metadata")
    ] = None,
    device: DeviceOption = "auto",
    format: Annotated[
        Format, typer.Option("--format", help="table (terminal), csv or json (for scripts)")
    ] = Format.table,
) -> int:
    """Score whole fields: each is cut into the model's tiles at its µm/px, and the scores pooled.

    A file that cannot be scored gets one error line; the others are still scored and printed, and
    the exit status is 1.

    A field finer than the model is shrunk to the model's µm/px (slideiqa models shows it), or, if it
    would then be smaller than one tile (a camera field at 1000×), only as far as a tile allows and
    never more than 2.5× finer than the model's, with a note; a field still smaller than a tile is
    mirrored out to one, with a note; one coarser is refused. A field whose file does not give its
    µm/px is taken to be at the model's, with a note: pass --mpp to say what it is. A slide file (a
    scanner's format or a pyramid) is refused: slideiqa map judges its tissue tile by tile.
    """
    import csv
    import json
    import sys

    from slideiqa.models.predictor import Predictor
    from slideiqa.pipeline.fields import SAME_SCALE, score_field

    predictor = Predictor(model, device=device)
    results, failed = [], 0
    for path in images:
        try:
            result = score_field(path, predictor, mpp)
        except (SlideIQAError, OSError) as error:  # one bad file costs its own row only
            if debugging():
                raise
            output.error(describe(error))
            failed += 1
            continue
        if result.assumed_mpp:
            output.note(
                f"{path}: µm/px unknown; scored as if at the model's {predictor.card.mpp:g} µm/px "
                "(pass --mpp if it is not)"
            )
        elif result.mirrored:
            output.note(
                f"{path}: smaller than one tile at {result.judged_mpp:.3g} µm/px "
                f"({predictor.card.mpp / result.judged_mpp:.1f}× the model's scale); mirrored out to a tile"
            )
        elif result.judged_mpp < predictor.card.mpp / SAME_SCALE:
            output.note(
                f"{path}: smaller than one tile at the model's {predictor.card.mpp:g} µm/px; judged "
                f"{predictor.card.mpp / result.judged_mpp:.1f}× magnified, at {result.judged_mpp:.3g} µm/px"
            )
        results.append((path, result))
    if not results:  # every file failed: its error lines say all there is
        return 1
    # New columns go last, so that scripts reading the columns by position keep working.
    header = ["image", "mpp", "tiles", "score", "verdict class", *predictor.classes, "judged at mpp"]
    rows = [
        [
            str(path),
            f"{r.mpp:.4g}",
            str(r.tiles),
            f"{r.score:.4f}",
            r.label,
            *(f"{p:.4f}" for p in r.probabilities),
            f"{r.judged_mpp:.4g}",
        ]
        for path, r in results
    ]
    if format is Format.csv:
        writer = csv.writer(sys.stdout)
        writer.writerows([header, *rows])
    elif format is Format.json:
        print(
            json.dumps(
                [
                    {
                        "image": str(path),
                        "mpp": r.mpp,
                        "mpp_assumed": r.assumed_mpp,
                        "judged_mpp": r.judged_mpp,
                        "mirrored": r.mirrored,
                        "tiles": r.tiles,
                        "score": r.score,
                        "class": r.label,
                        "probabilities": dict(zip(predictor.classes, map(float, r.probabilities))),
                    }
                    for path, r in results
                ],
                indent=2,
            )
        )
    else:
        output.table(header, rows)
    return 1 if failed else 0


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
    options = _map_options(context)
    from slideiqa.pipeline.mapping import map_slide

    with output.progress(slide.name) as update:
        result = map_slide(
            slide, out, options, workers=workers, scheduler=scheduler, progress=update, notice=output.note
        )
    output.fields(f"{result.path}" + (" (already complete)" if result.skipped else ""), summary_rows(result.summary))
    for warning in result.warnings:
        output.warning(warning)


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


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    """A map's summary as the lines a person reads: verdict, tissue, then where the tissue went.

    *below threshold or lost* is the verdict's figure: tiles scoring below the threshold, plus tissue
    under ink or unreadable. The shares per class say what the model thought most likely of each
    tile (a tile can be most likely ``good`` and still score below a strict threshold)."""
    from slideiqa.outputs.store import FIXED_LABELS

    mean = "–" if summary["mean_score"] is None else f"{summary['mean_score']:.3f}"
    rows = [
        ("verdict", f"{summary['verdict']} ({summary['verdict_rule']})"),
        (
            "tissue",
            f"{summary['tissue_tiles']} tiles, {summary.get('tissue_area_mm2', 0):.2f} mm² at "
            f"{summary.get('mpp', 0):.3g} µm/px",
        ),
        ("mean score", mean),
        ("below threshold or lost", f"{summary['share_below_threshold']:.1%}"),
        ("most likely class", "share of tissue tiles"),
    ]
    rows += [
        (f"  {name}", f"{share:.1%}")
        for name, share in summary["share_per_class"].items()
        if share or name not in FIXED_LABELS
    ]
    if summary.get("cells"):
        cells = summary["cells"]
        rows.append((f"{cells['cell_um']:g} µm cells below threshold", f"{cells['share_below_threshold']:.1%}"))
    if summary.get("tiles_per_s"):
        rows.append(("speed", f"{summary['tiles_per_s']:.0f} tiles/s, {summary['runtime_s']:.1f} s in all"))
    return rows


@command(short="Map folders of slides on a Dask cluster, with a report")
def batch(
    context: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="slide files and folders of slides", metavar="PATH")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder: one map per slide and the batch report")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="look for slides in sub-folders too")] = False,
    settings: SettingsOption = None,
    model: ModelOption = "default",
    mpp: Annotated[
        float | None, typer.Option(help="µm/px of every slide, overriding (or supplying) the metadata")
    ] = None,
    mpp_table: Annotated[
        Path | None,
        typer.Option(help="CSV with columns slide,mpp: µm/px of the slides it names (path or file name)"),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="worker processes of the local cluster (default: one per core)")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="address of a running Dask scheduler (e.g. tcp://head:8786)")
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="start the workers as jobs of this scheduler: slurm, pbs, sge, lsf or htcondor (job settings: [cluster] of --settings)"
        ),
    ] = None,
    batch_size: BatchSizeOption = 32,
    device: DeviceOption = "auto",
    threshold: ThresholdOption = DEFAULT_THRESHOLD,
    max_bad_share: MaxBadShareOption = DEFAULT_MAX_BAD_SHARE,
    overwrite: Annotated[
        bool, typer.Option("--overwrite/--resume", help="replace existing maps / resume them and skip complete ones")
    ] = False,
    no_tissue_mask: NoTissueMaskOption = False,
    no_artefacts: NoArtefactsOption = False,
    artefacts: ArtefactsOption = None,
    no_cells: NoCellsOption = False,
    min_tissue: MinTissueOption = DEFAULT_MIN_TISSUE,
    geojson: GeoJSONOption = GeoJSON.regions,
    slides_in_flight: Annotated[
        int | None,
        typer.Option(min=1, help="slides mapped at once (default: one per cluster thread, whole on its worker)"),
    ] = None,
) -> int:
    """Map every slide under folders on a Dask cluster; write report.csv, report.json and report.html.

    Exit status: 0 when every slide has a complete map, 1 when any slide failed (its error is in the
    report; the other slides are mapped), 2 on a usage error.
    """
    import click

    from slideiqa.batch.discovery import DiscoveryError
    from slideiqa.batch.run import run_batch
    from slideiqa.settings.options import load_mpp_table

    if sum(bool(choice) for choice in (workers, scheduler, cluster)) > 1:
        raise typer.BadParameter("give one of --workers, --scheduler and --cluster")
    options = _map_options(context)
    per_slide_mpp = load_mpp_table(mpp_table) if mpp_table else None

    def started(jobs, dashboard) -> None:
        output.line(f"{len(jobs)} slides → {out}{_dashboard_note(dashboard)}")

    def finished(record) -> None:
        mean = "–" if record.mean_score is None else f"{record.mean_score:.3f}"
        unreadable = f", {record.unreadable_tiles} unreadable" if record.unreadable_tiles else ""
        figures = (
            record.error
            if record.failed
            else (
                f"{record.verdict}, mean score {mean}, {record.share_below_threshold:.0%} below "
                f"{options.threshold}, {record.tissue_tiles} tissue tiles{unreadable}"
            )
        )
        output.line(f"{record.status:>8} {record.slide}: {figures}", "red" if record.failed else "green")

    client = jobs = threads = None
    if cluster:
        from slideiqa.execution.jobqueue import cluster_settings, start_jobqueue

        output.line(f"starting {cluster} jobs for the workers…")
        client, jobs, threads = start_jobqueue(cluster, cluster_settings(settings))
    try:
        result = run_batch(
            paths,
            out,
            recursive=recursive,
            workers=workers,
            scheduler=scheduler,
            options=options,
            slides_in_flight=slides_in_flight,
            mpp_table=per_slide_mpp,
            client=client,
            inference_threads=threads,
            on_start=started,
            on_slide=finished,
        )
    except DiscoveryError as error:  # what was asked for makes no batch: a usage error, exit status 2
        raise click.UsageError(str(error)) from error
    finally:
        if client is not None and jobs is not None:
            client.close()
            jobs.close()
    for warning in [*result.warnings, *result.tone_warnings]:
        output.warning(warning)
    if result.ignored:
        count = len(result.ignored)
        output.line(
            f"{count} file{'s' if count > 1 else ''} in the folders not mapped (not slides); the report "
            "lists each with why"
        )
    mapped_now = sum(record.status in ("mapped", "resumed") for record in result.records)
    output.line(
        f"{len(result.records) - len(result.failed)} of {len(result.records)} slides have complete maps "
        f"({mapped_now} mapped now) in {result.runtime_s:.0f} s; report: {out / 'report.html'}"
    )
    return result.exit_code


def _dashboard_note(link: str | None) -> str:
    """Where the batch's Dask dashboard is, or how to get one where bokeh is not installed."""
    from slideiqa.extras import DASHBOARD_INSTALL, dashboard_installed

    if link:
        return f"; Dask dashboard: {link}"
    return "" if dashboard_installed() else f"; no Dask dashboard here: {DASHBOARD_INSTALL}"


def main() -> None:
    run_cli(app, "slideiqa")


def __getattr__(name: str) -> Any:
    """``click_command``: the command line as a click command, made on first use, for the documentation's
    generated reference (mkdocs-click)."""
    if name == "click_command":
        return typer.main.get_command(app)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
