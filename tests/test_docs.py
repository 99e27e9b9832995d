"""The documentation's pictures: every one under docs/ is shown by some Markdown page, every picture a
page shows exists, and each is small enough to keep in the repository and wide enough to read."""

from __future__ import annotations

import os
import re
from pathlib import Path

from conftest import ROOT
from PIL import Image

IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
#: Folders that hold no page of the repository's own (virtual environments, builds, caches).
SKIPPED = {".git", ".venv", ".ci-venv", "build", "node_modules", "cache", "__pycache__"}


def markdown_pages() -> list[Path]:
    pages = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED and not name.endswith(".zarr")]
        pages += [Path(folder) / name for name in files if name.endswith(".md")]
    return pages


def shown_pictures() -> dict:
    """Every local picture a page shows, resolved, with the page that shows it."""
    shown = {}
    for page in markdown_pages():
        for target in IMAGE_LINK.findall(page.read_text(encoding="utf-8")):
            if not target.startswith(("http://", "https://", "data:")):
                shown[(page.parent / target).resolve()] = page
    return shown


def test_every_picture_a_page_shows_exists():
    missing = {str(picture): str(page) for picture, page in shown_pictures().items() if not picture.exists()}
    assert not missing


def test_every_picture_under_docs_is_shown_and_fits_the_repository():
    shown = shown_pictures()
    pictures = sorted((ROOT / "docs").glob("*.png"))
    assert {"overview.png", "explain.png", "report.png", "napari_overlay.png"} <= {p.name for p in pictures}
    for picture in pictures:
        assert picture.resolve() in shown, f"{picture.name} is shown by no page"
        assert picture.stat().st_size < 700_000, picture.name
        assert 600 <= Image.open(picture).width <= 1400, picture.name
