"""Where the tests' real pixels lie: the examples, OpenSlide's fixtures and the held-out tiles."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "data"
FIELDS = EXAMPLES / "fields"
SMEARS = EXAMPLES / "smears"
CMU_SLIDE = EXAMPLES / "cmu_small_region.svs"
TEST_DATA = ROOT / "tests" / "data"
FIXTURES = TEST_DATA / "fixtures"
#: Real sharp tiles of files the shipped model never saw (tests/data/PROVENANCE.md).
HELDOUT = sorted((TEST_DATA / "heldout").glob("*.png"))
#: Where the phantom slide's defocused and noisy regions lie, in tiles (row0, col0, row1, col1).
DEFOCUS_BOX, NOISE_BOX = (1, 1, 4, 4), (5, 4, 8, 7)
