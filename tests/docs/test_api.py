"""The declared Python API: every public name resolves, costs nothing until used, and is documented."""

from __future__ import annotations

import subprocess
import sys

import slideiqa

from paths import ROOT


def test_every_public_name_resolves_to_what_its_module_defines():
    import importlib

    for name, module in slideiqa._WHERE.items():
        assert getattr(slideiqa, name) is getattr(importlib.import_module(module), name), name
    assert sorted(dir(slideiqa)) == sorted(slideiqa.__all__)


def test_importing_slideiqa_loads_none_of_its_modules():
    """The API is imported on first use: `import slideiqa` (and so `slideiqa --version`) stays instant."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import slideiqa, sys; print(sorted(m for m in sys.modules if m.startswith('slideiqa.')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "[]"


def test_the_api_page_documents_every_public_name():
    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    for name, module in slideiqa._WHERE.items():
        assert f"::: {module}.{name}\n" in page, name


def test_every_subpackage_is_installed():
    """pyproject.toml lists the packages a wheel holds: a new subpackage missing there would work from a
    clone (an editable install) and be absent from every real install."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "slideiqa").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
