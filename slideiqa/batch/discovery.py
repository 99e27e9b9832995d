"""Finding the slides of a batch under folders, and giving each one a unique map name.

A file is a slide candidate by extension (the whole-slide formats OpenSlide and tifffile read) or, for
any other extension, by content (TIFF magic bytes, or a vendor format OpenSlide recognises), so scans
renamed without an extension are not missed. Whether a candidate really opens is decided later, when it
is mapped: a broken candidate then fails alone and is reported. Plain images (PNG, JPEG) are fields,
not slides, and are left out — so are the JPEG tiles beside a Hamamatsu VMS and the data files of a
MIRAX slide, which belong to their slide's index file.

Map names mirror each file's path from its input folder (``<folder name>/<sub-folders>/<stem>``), so
two folders holding the same file name get distinct maps, and a slide keeps its map name whichever
other inputs a later run is given (which is what resuming relies on). Slide files given directly are
named by their stem.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path

from slideiqa.errors import SlideIQAError
from slideiqa.io.formats import (
    FIELD_SUFFIXES,
    MAP_SUFFIX,
    NOT_SLIDE_SUFFIXES,
    has_tiff_magic,
    is_dicom,
    is_slide_name,
    slide_stem,
    suffix,
)


class DiscoveryError(SlideIQAError):
    """An input path of a batch does not exist or holds no slide."""


@dataclass(frozen=True)
class SlideJob:
    """One slide of a batch and where its map goes (relative to the batch's output folder)."""

    path: Path
    map_name: str


@dataclass
class Discovery:
    """The slides found, the files looked at and left out, and the paths that could not be looked at
    (a symbolic link loop, a dangling link, an unreadable folder), each as ``"<path>: <why>"``."""

    jobs: list[SlideJob]
    ignored: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def left_out(self) -> list[dict[str, str]]:
        """Each file looked at and not mapped, with why (as the batch report lists them)."""
        return [{"path": str(path), "why": _why_left_out(path)} for path in self.ignored]


def _looks_like_slide(path: Path) -> bool:
    """Content check for files whose extension says nothing: TIFF magic or an OpenSlide vendor format."""
    if is_dicom(path) or has_tiff_magic(path):
        return True
    try:
        import openslide

        return openslide.OpenSlide.detect_format(str(path)) is not None
    except Exception:  # unreadable or unrecognised files are simply not slides here
        return False


def _is_candidate(path: Path) -> bool:
    if is_slide_name(path):
        return True
    if suffix(path) in FIELD_SUFFIXES | NOT_SLIDE_SUFFIXES:
        return False
    return _looks_like_slide(path)


def _why_left_out(path: Path) -> str:
    """Why a file found in a batch's folders is not mapped, in words a lab can act on."""
    if path.is_dir():
        return "a folder that cannot be listed"
    if suffix(path) in FIELD_SUFFIXES:
        return "a field image, not a slide: score it with slideiqa predict"
    if suffix(path) in NOT_SLIDE_SUFFIXES:
        return "not an image (by its extension)"
    return "not a slide format slideiqa reads (neither its extension nor its first bytes say so)"


def _resolved(entry: Path, warnings: list[str]) -> Path | None:
    """Where ``entry`` really is, or None (with a warning) for a link that leads nowhere."""
    try:
        target = entry.resolve(strict=True)
    except RuntimeError:  # Python before 3.13 reports a symbolic link loop this way
        warnings.append(f"{entry}: symbolic link loop, skipped")
        return None
    except OSError as error:
        reason = (
            "symbolic link loop"
            if error.errno == errno.ELOOP
            else ("dangling symbolic link" if entry.is_symlink() else error.strerror or type(error).__name__)
        )
        warnings.append(f"{entry}: {reason}, skipped")
        return None
    return target


def _walk(
    folder: Path,
    recursive: bool,
    skip: set[Path],
    ignored: list[Path],
    warnings: list[str],
    seen: set[Path] | None = None,
) -> list[Path]:
    """Files under ``folder``; quality maps, hidden folders and the batch's own output are not entered,
    a folder reached twice (through a symbolic link) is read once, and a link loop, a dangling link or
    a folder that cannot be listed is skipped with a warning rather than ending the batch."""
    seen = set() if seen is None else seen
    if folder.resolve() in seen:
        return []
    seen.add(folder.resolve())
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        ignored.append(folder)
        warnings.append(f"{folder}: cannot be listed ({error.strerror or type(error).__name__}), skipped")
        return []
    files = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        target = _resolved(entry, warnings)
        if target is None or target in skip:
            continue
        if target.is_dir():
            if recursive and not entry.name.endswith(".zarr"):
                files.extend(_walk(entry, recursive, skip, ignored, warnings, seen))
        elif target.is_file():
            files.append(entry)
    return files


def _one_dicom_per_folder(files: list[Path]) -> list[Path]:
    """OpenSlide opens a DICOM slide from any of its files: keep the first DICOM file of each folder."""
    seen: set[Path] = set()
    kept = []
    for path in files:
        if is_dicom(path):
            if path.parent in seen:
                continue
            seen.add(path.parent)
        kept.append(path)
    return kept


def discover_slides(inputs: list[Path], recursive: bool = False, output: Path | None = None) -> Discovery:
    """The slides under ``inputs`` (files or folders), each with a unique, reproducible map name."""
    skip = {output.resolve()} if output else set()
    found: list[tuple[Path, Path]] = []  # (slide, its path relative to the output folder, without suffix)
    ignored: list[Path] = []
    warnings: list[str] = []
    for root in inputs:
        if not root.exists():
            raise DiscoveryError(f"{root}: no such file or folder")
        if root.is_file():
            found.append((root, Path(slide_stem(root))))
            continue
        candidates: list[Path] = []
        for path in _walk(root, recursive, skip, ignored, warnings):
            (candidates if _is_candidate(path) else ignored).append(path)
        for path in _one_dicom_per_folder(candidates):
            relative = path.relative_to(root).parent / slide_stem(path)
            found.append((path, Path(root.resolve().name) / relative))
    if not found:
        raise DiscoveryError(
            f"{', '.join(map(str, inputs))}: no slides found"
            + ("" if recursive else " (add --recursive to look into sub-folders)")
        )
    return Discovery(_unique_names(found), ignored, warnings)


def _unique_names(found: list[tuple[Path, Path]]) -> list[SlideJob]:
    """Map names from the slides alone: the full file name where two slides in one folder share a stem
    (``a.svs`` and ``a.tif``). Two different inputs that would share a name (folders of the same name
    given together) are an error rather than a numbered guess, since a later run given only one of
    them would then resume, or overwrite, the other's map."""
    unique: dict[Path, Path] = {}
    for path, relative in found:
        unique.setdefault(path.resolve(), relative)
    by_name: dict[str, list[Path]] = {}
    for path, relative in unique.items():
        by_name.setdefault(str(relative).lower(), []).append(path)
    jobs: list[SlideJob] = []
    taken: dict[str, Path] = {}
    for path, relative in unique.items():
        if len(by_name[str(relative).lower()]) > 1 and len({p.parent for p in by_name[str(relative).lower()]}) == 1:
            relative = relative.with_name(path.name)
        name = str(relative) + MAP_SUFFIX
        if name.lower() in taken:
            raise DiscoveryError(
                f"{taken[name.lower()]} and {path} would both be mapped to {name}; give folders "
                "with different names, or run them as separate batches with different outputs"
            )
        taken[name.lower()] = path
        jobs.append(SlideJob(path, name))
    return jobs
