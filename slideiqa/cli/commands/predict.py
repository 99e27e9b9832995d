"""``slideiqa predict``: single field images scored at their µm/px."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from slideiqa.cli.base import command, output
from slideiqa.cli.shared_options import DeviceOption, ModelOption
from slideiqa.errors import SlideIQAError, debugging, describe


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
