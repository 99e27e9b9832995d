"""The ``slideiqa`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import SlideIQAError, run_cli

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
    from .models.checkpoint import load_card
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


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
