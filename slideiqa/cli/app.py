"""The ``slideiqa`` command line: the app (:mod:`slideiqa.cli.base`) with every command registered,
one module each under :mod:`slideiqa.cli.commands`, in the order ``slideiqa --help`` lists them."""

from __future__ import annotations

from typing import Any

import typer

from slideiqa.cli.base import app
from slideiqa.cli.commands import batch, explain, info, map, models, predict, usable  # noqa: F401  (each registers its command)
from slideiqa.errors import run_cli


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
