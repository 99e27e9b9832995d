"""The ``slideiqa`` Typer app that every command registers with, its global options (``--version``,
``--debug``), and the one terminal output the commands write to."""

from __future__ import annotations

from typing import Annotated

import typer

from slideiqa import __version__
from slideiqa.cli.terminal import Output
from slideiqa.errors import debug_option

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
