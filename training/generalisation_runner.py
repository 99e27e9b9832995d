"""The generalisation benchmark end to end: tile sets, leave-one-source-out, the shipped model, a table.

Results go to ``OUT/results.jsonl`` one held-out group per line, as each fold finishes, so an
interrupted run resumes where it stopped; ``OUT/results.md`` is the table the READMEs quote.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from slideiqa.measure.judgement import judge_measured, measured_families
from slideiqa.measure.slide_tone import judge_against_slide, tone_features
from slideiqa.models.card import load_card, write_card
from slideiqa.models.checkpoint import ModelCard, save_checkpoint
from slideiqa.models.export import write_graph
from slideiqa.synthetic.distortions import FAMILIES

from .catalogue import SourceGroup
from .generalisation import (
    CLASSES,
    COPIES,
    DEFAULT_RECIPE,
    FLOORS,
    GOOD_LOOKS,
    TRAIN_FLOOR_SHARE,
    CropPlan,
    GroupMeasurement,
    ModelRecipe,
    TileSet,
    build_tile_sets,
    fit,
    load_tile_set,
    measure,
    meets_targets,
    predict_tiles,
    save_tile_set,
)
from .trainer import TrainConfig

Log = Callable[[str], None]


def tile_sets(groups: list[SourceGroup], data: Path, plan: CropPlan, out: Path, log: Log) -> tuple[TileSet, TileSet]:
    """The tile sets of ``plan``, built once and kept in ``out`` (a rerun reads them back)."""
    train_path, test_path = out / "train_tiles.npz", out / "test_tiles.npz"
    if train_path.exists() and test_path.exists():
        return load_tile_set(train_path), load_tile_set(test_path)
    started = time.perf_counter()
    train, test = build_tile_sets(groups, data, plan)
    out.mkdir(parents=True, exist_ok=True)
    save_tile_set(train, train_path)
    save_tile_set(test, test_path)
    log(f"built {len(train)} training and {len(test)} test tiles in {time.perf_counter() - started:.0f} s")
    return train, test


def _record(m: GroupMeasurement, **extra) -> dict:
    return {**asdict(m), "meets": meets_targets(m), **extra}


def measure_fold(
    group: str, held: TileSet, probabilities: np.ndarray, recipe: ModelRecipe, plan_mpp: float = 0.5, **extra
) -> dict:
    """A held-out group's record as slideiqa would judge its tiles in a map: the network's
    probabilities with noise and motion measured where the recipe's scale allows it and exposure
    capped by its evidence (``slideiqa.measure.judgement``), then each tile's tone against its slide's (``slideiqa.measure.slide_tone``: exposure added where
    it departs, cleared where it fits).

    The group's sharp tiles stand for the rest of the slide (a good scan of that lab, on which a tile
    has gone wrong): the headline. Beside it, under ``context_all_tiles``, the slide is the group's
    whole test set, ten defective tiles to one sharp one; under ``tile_only`` no slide at all; under
    ``model_only`` the network's own judgement."""
    model_mpp = plan_mpp * held.images.shape[1] / recipe.input_size
    # Judged as resampled tiles (native=False): the network's JPEG call stands beside the measured step,
    # as when the recorded tables were made; a map of a file's own pixels lets the step decide.
    judged = judge_measured(probabilities, list(CLASSES), held.images, measured_families(list(CLASSES), model_mpp))
    tone = tone_features(held.images)
    in_good_slide = judge_against_slide(judged, list(CLASSES), tone, tone[held.families == "none"])
    in_defective_slide = judge_against_slide(judged, list(CLASSES), tone)
    return _record(
        measure(group, held, in_good_slide),
        context_all_tiles=_record(measure(group, held, in_defective_slide)),
        tile_only=_record(measure(group, held, judged)),
        model_only=_record(measure(group, held, probabilities)),
        **extra,
    )


def remeasure(test: TileSet, out: Path, recipe: ModelRecipe = DEFAULT_RECIPE) -> list[dict]:
    """Every finished fold measured again from its saved test probabilities (the models are not
    retrained): for when the measurement, not the model, has changed."""
    results_path = out / "results.jsonl"
    rows = [json.loads(line) for line in results_path.read_text().splitlines() if line]
    measured = []
    for row in rows:
        group = row["group"]
        probabilities = np.load(out / f"probabilities-{group}.npy")
        measured.append(
            measure_fold(
                group,
                test.subset(test.groups == group),
                probabilities,
                recipe,
                best_epoch=row.get("best_epoch"),
                runtime_s=row.get("runtime_s"),
            )
        )
    results_path.write_text("".join(json.dumps(row) + "\n" for row in measured))
    return measured


def leave_one_group_out(
    train: TileSet,
    test: TileSet,
    config: TrainConfig,
    out: Path,
    log: Log,
    recipe: ModelRecipe = DEFAULT_RECIPE,
    only: list[str] | None = None,
    keep: Callable[[Any, str, int, int | None], None] | None = None,
) -> list[dict]:
    """Train without each group in turn (or each of ``only``) and measure on its test tiles; finished
    groups are skipped. ``keep(model, group, tiles, best_epoch)`` hears each fold's network (to save
    it: ``benchmarks/clean_tissue.py`` maps a group's fields with the model that never saw them)."""
    results_path = out / "results.jsonl"
    done = {}
    if results_path.exists():
        done = {row["group"]: row for row in map(json.loads, results_path.read_text().splitlines()) if row}
    for group in dict.fromkeys(train.groups.tolist()):
        if group in done or (only and group not in only):
            continue
        started = time.perf_counter()
        fold_train = train.subset(train.groups != group)
        model, result = fit(fold_train, config, recipe)
        if keep:
            keep(model, group, len(fold_train), result.best_epoch)
        held = test.subset(test.groups == group)
        probabilities = predict_tiles(model, held, recipe, device=config.device)
        np.save(out / f"probabilities-{group}.npy", probabilities)  # for analyses beyond the summary
        row = measure_fold(
            group,
            held,
            probabilities,
            recipe,
            best_epoch=result.best_epoch,
            runtime_s=round(time.perf_counter() - started),
        )
        with open(results_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        done[group] = row
        log(summary_line(row))
    return [row for group, row in done.items() if not only or group in only]


def summary_line(row: dict) -> str:
    return (
        f"{row['group']:>15}: sharp pass {row['sharp_pass']:.3f}, AUC {row['auc']:.3f} / other code "
        f"{row['auc_other']:.3f}, worst flagged {min(row['flagged'].values()):.3f} / "
        f"{min(row['flagged_other'].values()):.3f}, worst right family {min(row['right_family'].values()):.3f}"
    )


def evaluate_checkpoint(stem: Path, test: TileSet, device: str = "auto") -> list[dict]:
    """An existing model on every group's test tiles, through slideiqa's own inference (what a map
    uses); for a model shipped before, which saw some of the groups, only the others are held out."""
    from slideiqa.models.predictor import Predictor

    predictor = Predictor(stem, device=device)
    order = [predictor.classes.index(name) for name in CLASSES]
    probabilities = np.concatenate(
        [predictor.predict(test.images[start : start + 256]) for start in range(0, len(test), 256)]
    )[:, order]
    return [
        _record(measure(group, test.subset(test.groups == group), probabilities[test.groups == group]))
        for group in dict.fromkeys(test.groups.tolist())
    ]


def fit_shipped(
    train: TileSet,
    config: TrainConfig,
    out_stem: Path,
    plan: CropPlan,
    groups: list[SourceGroup],
    loso: list[dict],
    recipe: ModelRecipe = DEFAULT_RECIPE,
) -> None:
    """The model to ship: trained on every group's training tiles, its card holding the measurement.
    Its grid is the plan's 112 µm field; a smaller input size makes its µm/px coarser."""
    model, result = fit(train, config, recipe)
    save_model(model, out_stem, plan, groups, recipe, tiles=len(train), best_epoch=result.best_epoch, loso=loso)


def save_model(
    model: Any,
    out_stem: Path,
    plan: CropPlan,
    groups: list[SourceGroup],
    recipe: ModelRecipe,
    tiles: int,
    best_epoch: int | None,
    loso: list[dict] | None = None,
) -> None:
    """A trained network as a checkpoint slideiqa maps with (safetensors, card, ONNX graph), its card
    naming the ``groups`` it was trained on: the shipped model, or a fold's, trained without one."""
    mpp = plan.mpp * plan.size / recipe.input_size
    card = ModelCard(
        architecture=recipe.architecture,
        classes=list(CLASSES),
        input_size=recipe.input_size,
        mpp=mpp,
        tile_size=recipe.input_size,
        mean=list(recipe.mean),
        std=list(recipe.std),
        dropout=recipe.dropout,
        name=out_stem.name,
        good_class="good",
        description="Tile quality: good, or the defect family that makes it bad. Score = P(good).",
        training_data={
            "groups": {g.name: {"modality": g.modality, "origin": g.origin, "licence": g.licence} for g in groups},
            "tiles": tiles,
            "references_per_group": plan.train_references,
            "best_epoch": best_epoch,
            "init": recipe.init,
            "recipe": {
                "good_looks": GOOD_LOOKS,
                "copies": COPIES,
                "severity_floors": FLOORS,
                "train_from_share_of_floor": TRAIN_FLOOR_SHARE,
                "kinds": "every kind, drawn uniformly",
                "loss": "good weighted as all defects together",
                "max_magnification": plan.max_magnification,
                "smaller_than_a_tile": "mirrored out to one; good looks never compressed",
            },
            "command": " ".join(["slideiqa-train", *sys.argv[1:]]),
        },
        metrics={
            "leave_one_source_out": loso or [],
            "severity_floors": FLOORS,
            **judgement_metrics(list(CLASSES), mpp),
        },
    )
    save_checkpoint(model, card, out_stem)
    write_graph(out_stem)


def judgement_metrics(classes: list[str], mpp: float) -> dict:
    """How the card's figures were judged beyond the network: the families measured per tile, and the
    tile's tone against its slide's (the leave-one-group-out headline; ``measure_fold``)."""
    return {"measured_families": measured_families(classes, mpp), "judged_against_the_slide": ["tone"]}


def record_in_card(stem: Path, loso: list[dict]) -> None:
    """Write ``loso`` into the card of the checkpoint ``stem`` without touching its tensors: for when
    the judgement (what is measured rather than learnt), not the network, has changed."""
    card = load_card(stem)
    card.metrics = {**card.metrics, "leave_one_source_out": loso, **judgement_metrics(card.classes, card.mpp)}
    write_card(card, stem)


def table(rows: list[dict], title: str) -> str:
    """The measurement as a markdown table: one row per held-out group."""
    lines = [
        f"### {title}",
        "",
        "| held-out group | sharp tiles | sharp pass | AUC (ours / other code) | flagged, worst family (ours / other) "
        "| right family, worst | meets |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        worst = min(row["flagged"], key=row["flagged"].get)
        worst_other = min(row["flagged_other"], key=row["flagged_other"].get)
        worst_right = min(row["right_family"], key=row["right_family"].get)
        met = sum(row["meets"].values())
        lines.append(
            f"| {row['group']} | {row['sharp_tiles']} | {row['sharp_pass']:.2f} | {row['auc']:.3f} / "
            f"{row['auc_other']:.3f} | {row['flagged'][worst]:.2f} {worst} / {row['flagged_other'][worst_other]:.2f} "
            f"{worst_other} | {row['right_family'][worst_right]:.2f} {worst_right} | {met}/4 |"
        )
    means = {key: np.mean([row[key] for row in rows]) for key in ("sharp_pass", "auc", "auc_other")}
    flagged = {f: np.mean([row["flagged"][f] for row in rows]) for f in FAMILIES}
    lines += [
        "",
        f"Mean over groups: sharp pass {means['sharp_pass']:.3f}, AUC {means['auc']:.3f} / "
        f"{means['auc_other']:.3f}; flagged " + ", ".join(f"{f} {v:.2f}" for f, v in flagged.items()),
        "",
    ]
    return "\n".join(lines)
