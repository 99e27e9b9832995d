"""What slideiqa knows about file formats, in one place: which suffixes are slides and which are
fields, the magic bytes that give a file away whatever its name, and how maps are named.

The slide readers (:mod:`slideiqa.io.slide`), batch discovery (:mod:`slideiqa.batch.discovery`), the training
sources and the napari reader all ask this module, and ``napari_plugin/napari.yaml`` lists exactly
:func:`reader_patterns` (a test checks it), so a format added here is found everywhere.
"""

from __future__ import annotations

from pathlib import Path

#: Whole-slide formats OpenSlide or tifffile read (BigTIFF's ``.btf`` and QPTIFF included).
SLIDE_SUFFIXES = frozenset(
    {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide", ".dcm", ".qptiff", ".btf"}
)
#: Plain images: microscope fields, read whole with Pillow (a field is a one-level slide).
FIELD_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
#: Never worth opening to find out: text, tables, and the data files that belong to a slide's index file.
NOT_SLIDE_SUFFIXES = frozenset({".txt", ".csv", ".json", ".md", ".xml", ".dat", ".ini"})
#: Little- and big-endian TIFF and BigTIFF.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: DICOM's preamble is 128 bytes, then these four.
DICOM_MAGIC_OFFSET, DICOM_MAGIC = 128, b"DICM"
#: A quality map is ``<slide stem>.quality.zarr``; napari's reader also claims other Zarr folders, to
#: say clearly that they are not slideiqa maps.
MAP_SUFFIX = ".quality.zarr"
MAP_READER_SUFFIXES = (MAP_SUFFIX, ".zarr")
#: Two-part suffixes that are one format: the stem of ``a.ome.tiff`` is ``a``.
COMPOUND_SUFFIXES = (".ome.tiff", ".ome.tif")


def suffix(path: Path) -> str:
    return path.suffix.lower()


def is_slide_name(path: Path) -> bool:
    return suffix(path) in SLIDE_SUFFIXES


def is_field_name(path: Path) -> bool:
    return suffix(path) in FIELD_SUFFIXES


def _starts_with(path: Path, offset: int, magic: tuple[bytes, ...]) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(len(magic[0])) in magic
    except OSError:
        return False


def has_tiff_magic(path: Path) -> bool:
    return _starts_with(path, 0, TIFF_MAGIC)


def is_dicom(path: Path) -> bool:
    """DICOM by extension or by its ``DICM`` preamble (WSI series are often written without one)."""
    return suffix(path) == ".dcm" or _starts_with(path, DICOM_MAGIC_OFFSET, (DICOM_MAGIC,))


def slide_stem(path: Path) -> str:
    """A slide's file name without its format suffix (both parts of ``.ome.tiff``)."""
    for compound in COMPOUND_SUFFIXES:
        if path.name.lower().endswith(compound):
            return path.name[: -len(compound)]
    return path.stem


def reader_patterns() -> list[str]:
    """The file name patterns napari's reader contribution must list: maps, then slides and fields."""
    return [f"*{s}" for s in MAP_READER_SUFFIXES] + [f"*{s}" for s in sorted(SLIDE_SUFFIXES | FIELD_SUFFIXES)]
