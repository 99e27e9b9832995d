"""Finishing a map: each tile's tone judged against its slide's, the status set complete with the
summary, then the reports (overview, regions, ``summary.json``) written from the arrays; and a
complete map reported again under this run's verdict rule."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slideiqa import __version__
from slideiqa.artefacts.registry import ARTEFACTS
from slideiqa.cli.terminal import timestamp
from slideiqa.measure.slide_tone import glass_warning, judge_slide_tone
from slideiqa.outputs.report import summarize, summarize_cells
from slideiqa.outputs.store import (
    FIXED_LABELS,
    STATUS_COMPLETE,
    UNREADABLE_CLASS,
    QualityMap,
    block_notes,
    cell_bands,
    open_for_update,
    read_array,
    read_cell_band,
    update_attributes,
    write_cell_probabilities,
    write_probabilities,
)
from slideiqa.outputs.summary import CellSummary, MapSummary, MapWarning, ToneSummary, VerdictRecord
from slideiqa.outputs.writers import FinishedMap, writers_for
from slideiqa.pipeline.plan import MapPlan


@dataclass
class MapResult:
    path: Path
    summary: MapSummary
    resumed_blocks: int = 0
    skipped: bool = False
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """What a person must know beyond the figures (:func:`map_warnings`), one sentence each: the
        summary holds them, also a re-reported map's made before summaries kept them (:func:`report_complete`)."""
        return [warning.message for warning in self.summary.warnings]


def map_warnings(summary: MapSummary, first_unreadable_error: str = "") -> list[MapWarning]:
    """What a person must know beyond the figures (:class:`MapWarning`): tissue under preparation
    artefacts, tissue the file could not give (the first decoder error, ``first_unreadable_error``),
    tissue whose tone is unlike the rest of the slide's, specks of marking dye, glass that says the
    whole slide is exposed wrongly. Kept in ``summary.json`` and the batch's report, not only on the
    terminal, so that a lab reading the files later sees them too."""
    artefacts = summary.artefact_tiles
    found = [
        MapWarning(
            artefact.name,
            artefacts[artefact.name],
            f"{artefacts[artefact.name]} tissue tiles {artefact.finds}; they are labelled {artefact.name} in the "
            f"map and count against the verdict ({artefact.advice})",
        )
        for artefact in ARTEFACTS
        if artefacts.get(artefact.name)
    ]
    if count := summary.unreadable_tiles:
        found.append(
            MapWarning(
                UNREADABLE_CLASS,
                count,
                f"{count} tissue tiles cannot be decoded (corrupt data in the slide file); they are "
                f"labelled unreadable in the map and count against the verdict. First: {first_unreadable_error}",
            )
        )
    if departing := (summary.tone.tiles_departing if summary.tone else 0):
        found.append(
            MapWarning(
                "tone",
                departing,
                f"{departing} tissue tiles' tone (glass level, stain density or white point) departs "
                "from the rest of the slide's; they are judged exposure unless they have a worse "
                "defect (uneven illumination or staining across the slide: check them by eye)",
            )
        )
    if dye := summary.dye_tiles:
        found.append(
            MapWarning(
                "dye",
                dye,
                f"{dye} tissue tiles hold specks of a green or teal marking dye (grossing ink, not a "
                "scanning defect); they are judged as usual and do not count against the verdict",
            )
        )
    if glass := glass_warning(summary.tone.glass_median if summary.tone else None):
        found.append(
            MapWarning(
                "glass",
                1,
                f"the slide's {glass}, which its tiles, judged against each other, cannot show "
                "(compare it with the lab's other slides: slideiqa batch)",
            )
        )
    return found


def report_complete(plan: MapPlan) -> MapResult:
    """A complete map with the same settings: its numbers stand; the verdict is recomputed, since
    threshold and rule may differ from last time, and every change of verdict rule is kept."""
    existing, options = plan.existing, plan.options
    assert existing is not None  # only a complete map found on disk is reported again
    score, label = existing.array("score"), existing.array("label")
    figures = summarize(score, label, plan.card.classes, options.threshold, options.max_bad_share)
    earlier = existing.summary or MapSummary.from_dict({})
    summary = replace(
        earlier,
        **figures.figures(),
        **_slide_facts(plan, existing.array("tissue")),
        cells=_cell_summary(plan, existing.group) or earlier.cells,
    )
    if not summary.warnings:  # a map made before its summary kept them
        summary = replace(summary, warnings=map_warnings(summary, existing.notes.first_unreadable_error))
    _write_reports(plan, existing.group, summary, score, label)
    if existing.saved_summary != summary:  # readers of the attributes see the new rule too
        update_attributes(
            open_for_update(plan.out),
            summary=summary.to_dict(),
            options=options.to_dict(),
            verdicts=_verdict_history(existing.verdicts, summary),
        )
    return MapResult(plan.out, summary, skipped=True)


def _cell_summary(plan: MapPlan, root) -> CellSummary | None:
    """The cell figures (``report.summarize_cells``) of a map with cell arrays, at this run's threshold."""
    if not plan.layout.cells_per_side:
        return None
    return summarize_cells(
        read_array(root, "cell_score"),
        read_array(root, "cell_label"),
        plan.card.classes,
        plan.options.threshold,
        plan.grid.tile_um / plan.layout.cells_per_side,
    )


def _verdict_history(earlier: list[VerdictRecord], summary: MapSummary) -> list[dict[str, Any]]:
    """The map's earlier verdicts, newest last, with this one added: a rerun under another threshold
    changes the verdict openly, never by silently rewriting it."""
    history = list(earlier)
    if not history or not history[-1].same_verdict(VerdictRecord.of(summary)):
        history.append(VerdictRecord.of(summary, timestamp()))
    return [verdict.to_dict() for verdict in history]


def finish_map(plan: MapPlan, root, started: float, compute_s: float, assessed_now: int, resumed: int) -> MapResult:
    """Each tile's tone judged against its slide's, then status "complete" with the summary in the
    map's attributes, then overview, regions and ``summary.json`` from the written arrays. The files
    come last so that no verdict is ever on disk beside a map that is not complete: a process killed
    before the status has written none (a rerun finishes the map), one killed after it leaves a
    complete map whose files a rerun writes again (``report_complete``)."""
    tone = (
        judge_map_tone(root, plan.card.classes, plan.card.good_index, plan.settings.cells_against_slide)
        if plan.settings.tone_against_slide
        else None
    )
    score, label = read_array(root, "score"), read_array(root, "label")
    options, card, notes = plan.options, plan.card, block_notes(root)
    figures = summarize(score, label, card.classes, options.threshold, options.max_bad_share)
    runtime = time.perf_counter() - started
    summary = MapSummary(
        **figures.figures(),
        slide=str(plan.slide_path),
        model=card.name or str(plan.checkpoint),
        **_slide_facts(plan, read_array(root, "tissue")),
        created=timestamp(),
        runtime_s=runtime,
        tiles_per_s=assessed_now / compute_s if compute_s > 0 and assessed_now else None,
        resumed_blocks=resumed,
        dye_tiles=notes.dye_tiles,
        reading=plan.slide_attributes["reading"] | {"fallback_tiles": notes.decode_fallback_tiles},
        cells=_cell_summary(plan, root),
        tone=None if tone is None else ToneSummary.from_dict(tone),
    )
    summary = replace(summary, warnings=map_warnings(summary, notes.first_unreadable_error))
    update_attributes(
        root,
        remove=("error",),
        status=STATUS_COMPLETE,
        summary=summary.to_dict(),
        verdicts=_verdict_history(QualityMap(plan.out, root).verdicts, summary),
        timing={"runtime_s": runtime, "compute_s": compute_s},
    )
    _write_reports(plan, root, summary, score, label)
    return MapResult(plan.out, summary, resumed, timing={"runtime_s": runtime, "compute_s": compute_s})


def judge_map_tone(root, classes: list[str], good_index: int, with_cells: bool = False) -> dict[str, Any]:
    """Every assessed tile's probabilities, and ``with_cells`` its cells', judged by the tile's tone
    against the whole slide's (``slide_tone.judge_slide_tone``), written back; what was found is kept
    in the map's attributes and returned. The cells go a band of blocks at a time (whole chunks), so
    that a large slide's cells are never all in memory. Judging is idempotent, so a finish
    interrupted half-way is simply done again."""
    probabilities, tone, label = read_array(root, "probs"), read_array(root, "tone"), read_array(root, "label")
    judged, slide = judge_slide_tone(probabilities, tone, classes)
    fixed = np.where(label >= min(FIXED_LABELS.values()), label, 0).astype(np.uint8)
    write_probabilities(root, slice(None), slice(None), judged.astype(np.float32), good_index, fixed)
    if with_cells:
        for tile_rows, cell_rows in cell_bands(root):
            cells = slide.judge_cells(read_cell_band(root, cell_rows), classes, tile_rows.start)
            write_cell_probabilities(root, cell_rows, slice(None), cells, good_index, fixed[tile_rows])
    update_attributes(root, tone_context=slide.found)
    return slide.found


def _slide_facts(plan: MapPlan, tissue: np.ndarray) -> dict[str, Any]:
    """What a lab records of a mapped slide beside the verdict: size, µm/px, tissue area, provenance."""
    mpp, (width, height) = plan.grid.slide_mpp, plan.slide_attributes["dimensions"]
    tile_mm2 = (plan.grid.tile_um / 1000) ** 2
    return {
        "mpp": mpp,
        "mpp_from": plan.slide_attributes["mpp_from"],
        "dimensions_px": [width, height],
        "size_mm": [round(width * mpp / 1000, 3), round(height * mpp / 1000, 3)],
        "tissue_area_mm2": round(float(np.nansum(tissue)) * tile_mm2, 4),
        "tile_um": plan.grid.tile_um,
        "slideiqa_version": __version__,
    }


def _write_reports(plan: MapPlan, root, summary: MapSummary, score: np.ndarray, label: np.ndarray) -> None:
    """The files the map's options ask for (``outputs.writers``: overview.png, regions.geojson,
    tiles.geojson when asked for, and summary.json last) from the ``score`` and ``label`` arrays the
    caller has read already."""
    finished = FinishedMap(
        plan.out, root, plan.grid, plan.card.classes, plan.options, plan.found.thumbnail, summary, score, label
    )
    for write in writers_for(plan.options):
        write(finished)
