"""The ``slideiqa`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import SlideIQAError, run_cli
from .rules import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD

app = typer.Typer(help="Image-quality maps for microscope fields and whole-slide images.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"slideiqa {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="print the version and exit")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="show full tracebacks on errors")] = False,
) -> None:
    """Image-quality maps for microscope fields and whole-slide images."""


@app.command()
def models() -> None:
    """List the shipped quality models and what they were trained for."""
    from .models.card import load_card
    from .models.zoo import PRETRAINED, available_pretrained

    table = Table("name", "architecture", "classes", "µm/px", "tile", "checkpoint")
    found = available_pretrained()
    for name in PRETRAINED:
        if name in found:
            card = load_card(found[name])
            table.add_row(name, card.architecture, ", ".join(card.classes), f"{card.mpp:g}", str(card.tile_size),
                          found[name].name)
        else:
            table.add_row(name, "—", "not installed", "", "", "")
    console.print(table)


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="microscope field images (PNG, JPEG, TIFF)")],
    model: Annotated[str, typer.Option(help="shipped model name or checkpoint path")] = "default",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Score whole fields: each image is cut into the model's tiles and the tile scores are summarised.

    Fields must already be at the model's µm/px (shown by ``slideiqa models``).
    """
    from .fields import score_field
    from .inference import Predictor

    predictor = Predictor(model, device=device)
    table = Table("image", "tiles", "score", "verdict class", *predictor.classes)
    for path in images:
        result = score_field(path, predictor)
        table.add_row(path.name, str(result.tiles), f"{result.score:.3f}", result.label,
                      *(f"{p:.3f}" for p in result.probabilities))
    console.print(table)


@app.command()
def info(slide: Annotated[Path, typer.Argument(help="slide or field image")]) -> None:
    """Format, vendor, pyramid levels, pixel size, objective power and associated images of a slide."""
    from .slide import open_slide

    with open_slide(slide) as opened:
        meta = opened.info
    table = Table(show_header=False, box=None)
    table.add_row("file", str(slide))
    table.add_row("reader / vendor", f"{meta.reader} / {meta.vendor}")
    table.add_row("µm/px", "unknown (pass --mpp to map it)" if meta.mpp is None else f"{meta.mpp[0]:.4g} × {meta.mpp[1]:.4g}")
    table.add_row("objective power", "unknown" if meta.objective_power is None else f"{meta.objective_power:g}×")
    for level, ((w, h), d) in enumerate(zip(meta.level_dimensions, meta.level_downsamples)):
        table.add_row(f"level {level}", f"{w} × {h} px, downsample {d:.4g}")
    table.add_row("associated images", ", ".join(meta.associated_images) or "none")
    console.print(table)


@app.command("map")
def map_command(
    slide: Annotated[Path, typer.Argument(help="whole-slide image or field image")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="output map (default: <slide>.quality.zarr)")] = None,
    model: Annotated[str, typer.Option(help="shipped model name or checkpoint path")] = "default",
    mpp: Annotated[Optional[float], typer.Option(help="slide µm/px, overriding (or supplying) the metadata")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="tiles per inference batch")] = 32,
    workers: Annotated[Optional[int], typer.Option(min=1, help="worker processes (default: threads in this process)")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="address of a running Dask scheduler")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    threshold: Annotated[float, typer.Option(min=0, max=1, help="tiles scoring below this are low quality")] = DEFAULT_THRESHOLD,
    max_bad_share: Annotated[float, typer.Option(min=0, max=1, help="a slide fails when more tissue than this is low quality")] = DEFAULT_MAX_BAD_SHARE,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing map instead of resuming it")] = False,
    no_tissue_mask: Annotated[bool, typer.Option("--no-tissue-mask", help="assess every tile, background too")] = False,
    no_artefacts: Annotated[bool, typer.Option("--no-artefacts", help="do not look for pen ink on the thumbnail")] = False,
) -> None:
    """Map the image quality of every tissue tile of a slide into a Zarr quality map."""
    if not slide.exists():  # before the heavy imports below, so that a mistyped path answers at once
        raise SlideIQAError(f"{slide}: no such file")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .mapping import map_slide
    from .store import FIXED_LABELS

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} tiles/s"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(slide.name, total=None, rate="–")
        started = {}

        def update(done: int, total: int) -> None:
            import time

            now = time.perf_counter()
            started.setdefault("t", (now, done))
            t0, d0 = started["t"]
            rate = f"{(done - d0) / (now - t0):.0f}" if now > t0 and done > d0 else "–"
            bar.update(task, completed=done, total=total, rate=rate)

        result = map_slide(slide, out, model=model, mpp=mpp, batch_size=batch_size, workers=workers,
                           scheduler=scheduler, device=device, threshold=threshold, max_bad_share=max_bad_share,
                           overwrite=overwrite, use_tissue_mask=not no_tissue_mask, find_artefacts=not no_artefacts,
                           progress=update,
                           notice=lambda message: bar.console.print(f"[yellow]note:[/] {message}", highlight=False))
    summary = result.summary
    table = Table("", "", title=f"{result.path}" + (" (already complete)" if result.skipped else ""))
    table.add_row("verdict", f"[bold]{summary['verdict']}[/] ({summary['verdict_rule']})")
    table.add_row("tissue tiles", str(summary["tissue_tiles"]))
    table.add_row("mean score", "–" if summary["mean_score"] is None else f"{summary['mean_score']:.3f}")
    table.add_row("below threshold or lost",
                  f"{summary['share_below_threshold']:.1%}")
    for name, share in summary["share_per_class"].items():
        if share or name not in FIXED_LABELS:
            table.add_row(f"  {name}", f"{share:.1%}")
    if summary.get("tiles_per_s"):
        table.add_row("speed", f"{summary['tiles_per_s']:.0f} tiles/s, {summary['runtime_s']:.1f} s in all")
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@app.command()
def batch(
    paths: Annotated[list[Path], typer.Argument(help="slide files and folders of slides")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder: one map per slide and the batch report")],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="look for slides in sub-folders too")] = False,
    model: Annotated[str, typer.Option(help="shipped model name or checkpoint path")] = "default",
    workers: Annotated[Optional[int], typer.Option(min=1, help="worker processes of the local cluster (default: one per core)")] = None,
    scheduler: Annotated[Optional[str], typer.Option(help="address of a running Dask scheduler (e.g. tcp://head:8786)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="tiles per inference batch")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    threshold: Annotated[float, typer.Option(min=0, max=1, help="tiles scoring below this are low quality")] = DEFAULT_THRESHOLD,
    max_bad_share: Annotated[float, typer.Option(min=0, max=1, help="a slide fails when more tissue than this is low quality")] = DEFAULT_MAX_BAD_SHARE,
    overwrite: Annotated[bool, typer.Option("--overwrite/--resume", help="replace existing maps / resume them and skip complete ones")] = False,
    no_tissue_mask: Annotated[bool, typer.Option("--no-tissue-mask", help="assess every tile, background too")] = False,
    no_artefacts: Annotated[bool, typer.Option("--no-artefacts", help="do not look for pen ink on the thumbnail")] = False,
    slides_in_flight: Annotated[Optional[int], typer.Option(min=1, help="slides prepared and mapped at once (default: 2 per cluster thread, at most 8)")] = None,
) -> int:
    """Map every slide under folders on a Dask cluster; write report.csv, report.json and report.html.

    Exit status: 0 when every slide has a complete map, 1 when any slide failed (its error is in the
    report; the other slides are mapped), 2 on a usage error.
    """
    import click

    from .batch import MapOptions, run_batch
    from .discovery import DiscoveryError

    if workers and scheduler:
        raise typer.BadParameter("give either --workers or --scheduler, not both")
    options = MapOptions(model=model, threshold=threshold, max_bad_share=max_bad_share, overwrite=overwrite,
                         batch_size=batch_size, device=device, use_tissue_mask=not no_tissue_mask,
                         find_artefacts=not no_artefacts)

    def started(jobs, dashboard) -> None:
        console.print(f"{len(jobs)} slides → {out}" + (f"; Dask dashboard: {dashboard}" if dashboard else ""))

    def finished(record) -> None:
        mean = "–" if record.mean_score is None else f"{record.mean_score:.3f}"
        unreadable = f", {record.unreadable_tiles} unreadable" if record.unreadable_tiles else ""
        figures = record.error if record.failed else (
            f"{record.verdict}, mean score {mean}, {record.share_below_threshold:.0%} below "
            f"{threshold}, {record.tissue_tiles} tissue tiles{unreadable}")
        console.print(f"[{'red' if record.failed else 'green'}]{record.status:>8}[/] {record.slide}: {figures}",
                      highlight=False)

    try:
        result = run_batch(paths, out, recursive=recursive, workers=workers, scheduler=scheduler, options=options,
                           slides_in_flight=slides_in_flight, on_start=started, on_slide=finished)
    except DiscoveryError as error:  # what was asked for makes no batch: a usage error, exit status 2
        raise click.UsageError(str(error)) from error
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    mapped_now = sum(record.status in ("mapped", "resumed") for record in result.records)
    console.print(f"{len(result.records) - len(result.failed)} of {len(result.records)} slides have complete maps "
                  f"({mapped_now} mapped now) in {result.runtime_s:.0f} s; report: {out / 'report.html'}")
    return result.exit_code


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
