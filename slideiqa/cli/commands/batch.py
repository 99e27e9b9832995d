"""``slideiqa batch``: folders of slides on a Dask cluster, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
from slideiqa.settings.defaults import DEFAULT_MAX_BAD_SHARE, DEFAULT_THRESHOLD
from slideiqa.settings.options import DEFAULT_MIN_TISSUE


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
    options = map_options(context)
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
