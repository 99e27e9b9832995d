"""The documentation's pictures: every one under docs/ is shown by some Markdown page, every picture a
page shows exists, and each is small enough to keep in the repository and wide enough to read."""

from __future__ import annotations

import os
import re
from pathlib import Path

from PIL import Image

from paths import ROOT

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


def _documented_settings(table_heading: str) -> dict[str, tuple[str, str]]:
    """``key -> (kind, default)`` from the table under ``table_heading`` in docs/configuration.md."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text.split(f"## {table_heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            for key in re.findall(r"`([a-z_]+)`", cells[0]):
                rows[key] = (cells[1], cells[2])
    return rows


def _as_toml(value) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{item}"' for item in value) + "]`"
    return f"`{value:g}`"


def test_every_setting_is_documented_with_its_default():
    """docs/configuration.md lists every key a settings file may hold, with the default the code has:
    a new option, or a changed default, fails here until the page says so."""
    from dataclasses import fields

    from slideiqa.execution.jobqueue import (
        DEFAULT_JOB,
        DEFAULT_JOBS,
        DEFAULT_WORKER_TIMEOUT_S,
        POSITIVE_SETTINGS,
        TEXT_SETTINGS,
        WHOLE_SETTINGS,
    )
    from slideiqa.settings.options import SETTINGS_KEYS, MapOptions

    documented = _documented_settings("Map settings")
    assert list(documented) == list(SETTINGS_KEYS)
    defaults = {field.name: field.default for field in fields(MapOptions)}
    for key in SETTINGS_KEYS:
        if defaults[key] is not None:
            assert documented[key][1] == _as_toml(defaults[key]), key
    cluster = _documented_settings("Cluster settings")
    assert set(cluster) == {*WHOLE_SETTINGS, *POSITIVE_SETTINGS, *TEXT_SETTINGS}
    cluster_defaults = DEFAULT_JOB | {"jobs": DEFAULT_JOBS, "worker_timeout_s": DEFAULT_WORKER_TIMEOUT_S}
    for key, value in cluster_defaults.items():
        assert cluster[key][1] == _as_toml(value), key


def test_the_quality_map_page_lists_every_label_value():
    """docs/quality-map.md's label table names every value slideiqa gives itself, as the map writes it:
    a new artefact, or a changed value, fails here until the page says so."""
    from slideiqa.outputs.store import FIXED_LABELS

    text = (ROOT / "docs" / "quality-map.md").read_text(encoding="utf-8")
    table = text.split("## Label values\n", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            rows[int(cells[0])] = cells[1].strip("`")
    assert rows == {0: "background"} | {value: name for name, value in FIXED_LABELS.items()}
