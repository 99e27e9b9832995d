"""Writing a file so that no reader ever sees half of it, and an output that one run writes at a time."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import SlideIQAError


class OutputInUse(SlideIQAError):
    """Another run is writing the same output; the message names it and its owner."""


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a hidden temporary file beside ``path`` and rename it into place: a run killed
    while writing (or a full disk) leaves the previous file, or none, never a truncated one that
    looks complete. The temporary name is unique, so two writers of one path do not clash. An error
    names ``path``, not the temporary file the user never asked for."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if isinstance(data, str):
            temporary.write_text(data, encoding="utf-8")
        else:
            temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive_output(path: Path) -> Iterator[None]:
    """Be the only slideiqa run writing ``path`` while the block runs, or fail at once with
    :class:`OutputInUse` naming the run that is. Without it, two ``--overwrite`` runs of one slide
    with different settings would interleave their blocks in one map, and the loser would report a
    verdict the map on disk does not hold.

    The lock is an ``flock`` on a hidden file beside the output (a symbolic link's target, so both
    names of one map share it), released by the kernel when its process dies, and removed when the
    block ends; one left by a killed run is taken over and removed by the next. Where no file can be
    created beside the output, nothing could be written there either: the block runs unlocked and
    the write reports the cause."""
    target = Path(path).resolve()
    lock = target.with_name(f".{target.name}.lock")
    while True:
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield
            return
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(descriptor, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(descriptor)
            raise OutputInUse(f"{path}: another slideiqa run ({owner}) is writing this map; let it finish, "
                              "then run again") from None
        try:  # the previous holder may have removed the file between our open and our lock
            if os.stat(lock).st_ino == os.fstat(descriptor).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(descriptor)
