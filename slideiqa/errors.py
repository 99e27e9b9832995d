"""One-line errors for the command line: expected failures print ``error: <what>: <why>`` and exit 1.

Every anticipated failure (missing file, unreadable slide or image, bad checkpoint, unknown name) is
raised as a :class:`SlideIQAError` subclass whose message names the thing and the cause; the CLI prints
that line only. ``--debug`` (or ``SLIDEIQA_DEBUG=1``) shows the full traceback instead. This module
imports nothing heavy, so ``slideiqa --version`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING

import typer

from slideiqa.cli.terminal import one_line

if TYPE_CHECKING:
    import click


class SlideIQAError(Exception):
    """Base of slideiqa's user-facing errors: the message is the whole story, and one line whatever
    it quotes (a file name holding a newline cannot split it)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(one_line(arg) if isinstance(arg, str) else arg for arg in args))


def _aborts_and_usage_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[click.ClickException], ...]]:
    """click's Abort and ClickException, and those of the copy of click that newer typer releases
    bundle: a separate class hierarchy, so catching click's classes alone lets typer's usage errors
    (a bad option value) through as tracebacks. With older typer both pairs are the same classes."""
    import click

    bundled_click_exception = sys.modules[typer.BadParameter.__module__].ClickException
    return (click.exceptions.Abort, typer.Abort), (click.ClickException, bundled_click_exception)


def describe(error: BaseException) -> str:
    """One line: slideiqa's own message, or for a filesystem error (read-only folder, full disk, a
    path under a regular file, permissions) the path and the system's reason, or the first line of
    another library's message; control characters (a newline in a file name) are escaped."""
    if isinstance(error, OSError) and not isinstance(error, SlideIQAError) and error.filename:
        return one_line(f"{error.filename}: {error.strerror or type(error).__name__}")
    text = str(error).strip()
    if not text:
        return type(error).__name__
    return one_line(text if isinstance(error, SlideIQAError) else text.splitlines()[0])


#: Whether errors show their full traceback: ``--debug`` (read by the command line's own parser, see
#: :func:`debug_option`) or ``SLIDEIQA_DEBUG=1``.
_debug = {"on": False}


def debugging() -> bool:
    """Whether this run shows full tracebacks (``--debug``): a command that goes on past one item's
    error (``predict`` over many files) raises it instead."""
    return _debug["on"]


def _show_tracebacks(on: bool) -> None:
    """Turn full tracebacks (and the libraries' own log output) on for this run."""
    if on:
        _debug["on"] = True
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)


def debug_option(value: bool) -> None:
    """The ``--debug`` option's callback: the parser has seen it, before any command runs."""
    _show_tracebacks(value)


#: Libraries that log their own partial reports of a corrupt file (tifffile's warnings, zarr's abandoned
#: asyncio reads, Dask's) before slideiqa's one-line error; --debug shows them.
QUIET_LOGGERS = ("asyncio", "tifffile", "distributed")


def run_cli(app: typer.Typer, prog_name: str | None = None) -> None:
    """Run a typer app, turning expected errors into one line on stderr and exit status 1, and usage
    errors into click's message and exit status 2. ``prog_name`` is the command its help shows (also
    when started as ``python -m ...``)."""
    aborts, usage_errors = _aborts_and_usage_errors()
    _debug["on"] = False
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # zarr's event loop, stopped at exit with a read or write still queued, warns that a coroutine was
    # never awaited: noise after an error that has already been reported.
    warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited", category=RuntimeWarning)
    _show_tracebacks(os.environ.get("SLIDEIQA_DEBUG") == "1")
    try:
        code = app(standalone_mode=False, prog_name=prog_name)
    except (SlideIQAError, OSError) as error:
        if _debug["on"]:
            raise
        print(f"error: {describe(error)}", file=sys.stderr)
        sys.exit(1)
    except aborts:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except usage_errors as error:  # usage errors: click's own message and exit code 2
        error.show()
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
