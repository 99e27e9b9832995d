"""Writing a file so that no reader ever sees half of it, and an output that one run writes at a time."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from slideiqa.errors import SlideIQAError

log = logging.getLogger(__name__)


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
    verdict the map on disk does not hold. The lock is on a hidden file beside the output (a
    symbolic link's target, so both names of one map share it): see :func:`held_lock`."""
    target = Path(path).resolve()
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(held_lock(target.with_name(f".{target.name}.lock"), wait=False))
        except BlockingIOError as busy:
            raise OutputInUse(
                f"{path}: another slideiqa run ({busy.filename}) is writing this map; let it finish, then run again"
            ) from None
        yield


@contextlib.contextmanager
def held_lock(lock: Path, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` while the block runs: waiting for it, or
    (``wait`` False) raising :class:`BlockingIOError` whose ``filename`` names the holder.

    The kernel releases the lock when its process dies; the file is removed when the block ends, and
    one left by a killed run is taken over and removed by the next (an acquirer checks that the file
    it locked is still the one at ``lock``). Where the file cannot be created, nothing could be
    written beside it either: the block runs unlocked and the write reports the cause. On a
    filesystem that refuses locks (Lustre without ``-o flock``, some NFS or CIFS mounts) the block
    runs unlocked, with a warning."""
    descriptor = _locked_descriptor(lock, wait)
    if descriptor is None:
        yield
        return
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(descriptor)


def _locked_descriptor(lock: Path, wait: bool) -> int | None:
    """An open descriptor of ``lock`` holding its ``flock`` (see :func:`held_lock`), or None where
    the file cannot be created or the filesystem has no locks."""
    while True:
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = os.read(descriptor, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(descriptor)
            raise BlockingIOError(errno.EWOULDBLOCK, "locked", owner) from None
        except OSError as error:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                os.unlink(lock)
            log.warning(
                "%s: this filesystem does not lock files (%s); two slideiqa runs writing here at once "
                "would not be stopped",
                lock.parent,
                error.strerror or error,
            )
            return None
        try:  # the previous holder may have removed the file between our open and our lock
            if os.stat(lock).st_ino == os.fstat(descriptor).st_ino:
                return descriptor
        except FileNotFoundError:
            pass
        os.close(descriptor)
