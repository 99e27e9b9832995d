"""Where the command line's messages go: rich output on a terminal, plain timestamped lines elsewhere.

A cluster job or ``slideiqa batch ... > run.log`` writes to a file that people grep, tail and read
in editors: there every message is one line, never wrapped, with an ISO timestamp in UTC, tables are
``key: value`` lines or tab-separated rows, and progress is a line every :data:`PROGRESS_EVERY_S`
seconds. On a terminal the same calls give rich tables, colours and a live progress bar.
``SLIDEIQA_PLAIN=1`` asks for plain lines on a terminal too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

#: Plain progress: one line at most this often (and always at the end).
PROGRESS_EVERY_S = 10.0

#: Escapes for the control characters people recognise; any other is written as its code.
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with every control character and line separator escaped (``\\n``, ``\\x1b``…), so
    that a file name holding a newline or a terminal escape cannot split a message, forge a log line
    ("mapped … pass") or restyle the terminal: one event is one line."""
    return "".join(
        _NAMED_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        if unicodedata.category(char) in ("Cc", "Zl", "Zp")
        else char
        for char in text
    )


def timestamp() -> str:
    """Now, in UTC, to the second (ISO 8601): log lines, maps and reports all write time this way."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Output:
    """The CLI's messages. ``interactive`` defaults to whether ``stream`` is a terminal."""

    def __init__(
        self, stream: TextIO | None = None, interactive: bool | None = None, messages: TextIO | None = None
    ) -> None:
        # Streams are looked up when used (sys.stdout as it is then), so that output redirected after
        # import — by a caller capturing it, by a test — goes where it is sent.
        self._stream, self._messages, self._interactive = stream, messages, interactive
        self._consoles: dict[int, Any] = {}

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    @property
    def messages(self) -> TextIO:
        """Notes and warnings go here (stderr), so that results on stdout (CSV, JSON) stay parseable."""
        return self._messages or sys.stderr

    @property
    def interactive(self) -> bool:
        if self._interactive is not None:
            return self._interactive
        return self.stream.isatty() and os.environ.get("SLIDEIQA_PLAIN") != "1"

    def _console_for(self, stream: TextIO):
        console = self._consoles.get(id(stream))
        if console is None or console.file is not stream:  # an id can be reused by a newer stream
            from rich.console import Console

            console = self._consoles[id(stream)] = Console(file=stream)
        return console

    @property
    def console(self):
        return self._console_for(self.stream)

    def line(self, text: str, style: str | None = None, stream: TextIO | None = None) -> None:
        """One event. ``style`` is a rich style for the terminal (e.g. ``"red"``)."""
        text = one_line(text)
        if self.interactive:
            from rich.text import Text

            self._console_for(stream or self.stream).print(Text(text, style=style or ""), highlight=False)
        else:
            print(f"{timestamp()} {text}", file=stream or self.stream, flush=True)

    def note(self, text: str) -> None:
        self._labelled("note", "yellow", text)

    def warning(self, text: str) -> None:
        self._labelled("warning", "yellow", text)

    def error(self, text: str) -> None:
        """An error that ends one item's work, not the command's: ``error: …`` on stderr, as the
        command's own last error is written (``errors.run_cli``), so scripts find both alike."""
        text = one_line(text)
        if self.interactive:
            from rich.markup import escape

            self._console_for(self.messages).print(f"[red]error:[/] {escape(text)}", highlight=False)
        else:
            print(f"error: {text}", file=self.messages, flush=True)

    def _labelled(self, label: str, style: str, text: str) -> None:
        text = one_line(text)
        if self.interactive:
            from rich.markup import escape

            self._console_for(self.messages).print(f"[{style}]{label}:[/] {escape(text)}", highlight=False)
        else:
            self.line(f"{label}: {text}", stream=self.messages)

    def fields(self, title: str, rows: Sequence[tuple[str, str]], event: bool = True) -> None:
        """A titled list of name → value: a two-column table without a header row on a terminal;
        elsewhere, for an ``event`` in a log (a map's summary), one timestamped ``title: name: value``
        line per row, each whole for grep, and for a record read by itself (``slideiqa info``), one
        timestamped title line and plain ``name: value`` lines."""
        if self.interactive:
            from rich.table import Table

            table = Table(show_header=False, title=title)
            for name, value in rows:
                table.add_row(name, value)
            self.console.print(table)
        elif event:
            for name, value in rows:
                self.line(f"{title}: {name.strip()}: {value}")
        else:
            self.line(title)
            for name, value in rows:
                print(one_line(f"{name.strip()}: {value}"), file=self.stream, flush=True)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A table with a header: rich on a terminal, tab-separated lines (never cut short) elsewhere."""
        header, rows = [one_line(cell) for cell in header], [[one_line(cell) for cell in row] for row in rows]
        if self.interactive:
            from rich.table import Table

            table = Table(*header)
            for row in rows:
                table.add_row(*row)
            self.console.print(table)
        else:
            for row in (header, *rows):
                print("\t".join(row), file=self.stream, flush=True)

    @contextlib.contextmanager
    def progress(self, name: str) -> Iterator[Callable[[int, int], None]]:
        """A callback ``update(done, total)`` for the duration of the block: a live bar with the rate
        on a terminal; elsewhere a line every :data:`PROGRESS_EVERY_S` seconds and one at the end."""
        rate = _Rate()
        if self.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} tiles/s"),
                TimeRemainingColumn(),
            ]
            with Progress(*columns, console=self.console, transient=False) as bar:
                task = bar.add_task(name, total=None, rate="–")

                def advance_bar(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total, rate=rate.text(done))

                yield advance_bar
            return
        last = {"at": 0.0}

        def update(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last["at"] >= PROGRESS_EVERY_S or done >= total:
                last["at"] = now
                self.line(f"{name}: {done}/{total} tiles, {rate.text(done)} tiles/s")

        yield update


class _Rate:
    """Tiles per second since the first report (earlier work, e.g. resumed blocks, not counted)."""

    def __init__(self) -> None:
        self.start: tuple[float, int] | None = None

    def text(self, done: int) -> str:
        now = time.perf_counter()
        if self.start is None:
            self.start = (now, done)
        t0, d0 = self.start
        return f"{(done - d0) / (now - t0):.0f}" if now > t0 and done > d0 else "–"
