"""Remake the pictures the documentation shows, from the bundled sample slide, with this checkout.

Each picture is what a user gets from the command it illustrates: the sample's `overview.png`, the
picture of `slideiqa explain` on a region of it, the batch report page at 1400 × 900 in headless
Chromium, and the map over the slide in napari. Run under a display (napari draws only there):

    xvfb-run -a python docs/screenshots.py

Needs the `dev` extra, and Debian's chromium and chromium-driver for the report page.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SAMPLE = ROOT / "examples" / "data" / "cmu_small_region.svs"
#: Pictures are kept under this width (the explain picture is drawn for a screen, 2500 px).
DOCS_WIDTH = 1400


def save(image: Image.Image, name: str) -> None:
    if image.width > DOCS_WIDTH:
        image = image.resize((DOCS_WIDTH, round(image.height * DOCS_WIDTH / image.width)), Image.Resampling.LANCZOS)
    image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(DOCS / name, optimize=True)
    print(f"wrote {DOCS / name} ({(DOCS / name).stat().st_size // 1024} KB)")


def overview_and_explain(work: Path) -> Path:
    from slideiqa.explain.heatmaps import explain_slide_region, explanation_picture
    from slideiqa.pipeline.mapping import map_slide

    quality = map_slide(SAMPLE, work / "cmu_small_region.quality.zarr").path
    save(Image.open(quality / "overview.png"), "overview.png")
    explanation, _ = explain_slide_region(SAMPLE, (500, 800, 1200, 1000))
    save(
        explanation_picture(
            explanation,
            f"{SAMPLE.name}, region 500,800,1200,1000: where the model sees each defect ({explanation.method})",
        ),
        "explain.png",
    )
    return quality


def report_page(work: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    cohort = work / "cohort"
    cohort.mkdir()
    shutil.copy(SAMPLE, cohort / "cmu.svs")
    (cohort / "broken.svs").write_bytes(SAMPLE.read_bytes()[:40_000])
    subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "batch", str(cohort), "-o", str(work / "batch"), "--workers", "1"],
        capture_output=True,
        check=False,
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.set_window_size(1400, 900)
        browser.get((work / "batch" / "report.html").as_uri())
        shot = work / "report.png"
        browser.save_screenshot(str(shot))
    finally:
        browser.quit()
    save(Image.open(shot), "report.png")


def napari_overlay(quality: Path) -> None:
    import napari

    viewer = napari.Viewer(show=True)
    try:
        viewer.open(str(quality), plugin="slideiqa")
        viewer.reset_view()
        save(Image.fromarray(viewer.screenshot(canvas_only=True, flash=False)), "napari_overlay.png")
    finally:
        viewer.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        quality = overview_and_explain(work)
        report_page(work)
        napari_overlay(quality)


if __name__ == "__main__":
    main()
