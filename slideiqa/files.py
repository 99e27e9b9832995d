"""Writing a file so that no reader ever sees half of it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


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
