"""One-line errors for the command line: expected failures print ``error: <what>: <why>`` and exit 1.

Every anticipated failure (missing file, unreadable image, bad checkpoint, unknown name) is raised as
one of the exception types below with a message that names the thing and the cause; the CLI prints
that line only. ``--debug`` (or ``SLIDEIQA_DEBUG=1``) shows the full traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

from .models.registry import ModelError


class SlideIQAError(Exception):
    """Base of slideiqa's own user-facing errors."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception types that carry a user-facing message (the training ones only if installed)."""
    types: list[type[BaseException]] = [SlideIQAError, ModelError, FileNotFoundError]
    try:
        from slideiqa_training.datasets import DatasetError
        from slideiqa_training.sources import SourceError

        types += [DatasetError, SourceError]
    except ImportError:
        pass
    return tuple(types)


def run_cli(app: typer.Typer) -> None:
    """Run a typer app, turning expected errors into one line on stderr and exit status 1."""
    debug = "--debug" in sys.argv or os.environ.get("SLIDEIQA_DEBUG") == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    try:
        app(standalone_mode=False)
    except expected_errors() as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # click usage errors and the like
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
