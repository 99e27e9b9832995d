"""Shared fixtures: real microscopy pixels from examples/data and OpenSlide's own test files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paths import CMU_SLIDE, DEFOCUS_BOX, FIELDS, HELDOUT, NOISE_BOX, ROOT
from support import skip_unless_available


@pytest.fixture(scope="session")
def tumour_field() -> np.ndarray:
    """A sharp 1000×1000 H&E field."""
    return np.asarray(Image.open(FIELDS / "he_tumour_target.png").convert("RGB"))


@pytest.fixture(scope="session")
def tissue_crop(tumour_field: np.ndarray) -> np.ndarray:
    """A 224 px crop full of tissue detail."""
    return np.ascontiguousarray(tumour_field[300:524, 300:524])


@pytest.fixture(scope="session")
def heldout_tiles() -> np.ndarray:
    """The held-out tiles, (15, 224, 224, 3) uint8 (tests/data/PROVENANCE.md)."""
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in HELDOUT])


#: Defocused and noisy rectangles of the phantom slide, in tile units (row0, col0, row1, col1) on its 8×8 grid.


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    """An 8×8-tile slide of real tissue (224 px tiles at 0.5 µm/px) with a defocused and a noisy rectangle."""
    from slideiqa.io.slide import open_slide

    from slides import phantom_slide

    tumour = np.asarray(Image.open(FIELDS / "he_tumour_target.png").convert("RGB"))
    with open_slide(CMU_SLIDE) as cmu:
        region = cmu.read_region((650, 250), 0, (896, 1792))
    path = tmp_path_factory.mktemp("phantom") / "phantom.tif"
    return phantom_slide(path, tumour, region, 224, DEFOCUS_BOX, NOISE_BOX)


@pytest.fixture(scope="session")
def phantom_map(phantom, tmp_path_factory):
    """The phantom's map through the Python API (blocks of 4 × 4 tiles)."""
    from slideiqa import map_slide

    return map_slide(phantom, tmp_path_factory.mktemp("maps") / "phantom.quality.zarr", block=4)


@pytest.fixture(scope="session")
def unseen_phantom_map(tmp_path_factory):
    """The phantom's twin made of a source no model here saw: an 8×8-tile mosaic of crops of the two
    whole HistoQC H&E templates (oriented stroma, dense tumour; tests/data/PROVENANCE.md) with the
    same defocused and noisy rectangles, mapped."""
    from slideiqa import map_slide

    from slides import mosaic_pixels, slide_with_defects

    templates = [
        np.asarray(Image.open(path).convert("RGB"))
        for path in sorted((ROOT / "tests" / "data" / "clean_looks").glob("histoqc_templates__*.png"))
    ]
    folder = tmp_path_factory.mktemp("unseen_phantom")
    slide = slide_with_defects(
        folder / "unseen.tif", mosaic_pixels(templates, 8, 224, seed=0), 224, DEFOCUS_BOX, NOISE_BOX
    )
    return map_slide(slide, folder / "unseen.quality.zarr", block=4)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Exported ONNX graphs go to a per-session temporary cache, never the user's home."""
    monkeypatch.setenv("SLIDEIQA_CACHE", str(tmp_path_factory.getbasetemp() / "slideiqa-cache"))


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's package) driven through its own chromedriver."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        skip_unless_available(
            "chromium", "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()
