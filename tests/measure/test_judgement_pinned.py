"""Work on speed must not move a judgement: the bundled sample's map and the held-out tiles'
probabilities, as the last deliberate change of judgement left them, pinned in
``tests/data/regression/judgement.npz``.

A change that is meant to judge differently (and raises ``pipeline.plan.JUDGEMENT``) writes the file
again: ``PYTHONPATH=tests python tests/measure/test_judgement_pinned.py --write``, and says so in its commit.
"""

import sys
from pathlib import Path

import numpy as np

from slideiqa import map_slide, open_map
from slideiqa.artefacts.debris import debris_tiles
from slideiqa.models.predictor import Predictor
from slideiqa.pipeline.plan import JUDGEMENT

from paths import TEST_DATA

PINNED = TEST_DATA / "regression" / "judgement.npz"
#: ONNX Runtime and NumPy builds differ in their last float bits between machines; a judgement that
#: moved would move by far more.
TOLERANCE = 1e-4


def judged(out: Path) -> dict[str, np.ndarray]:
    """The sample's map arrays and the held-out tiles' probabilities and debris, as slideiqa makes them now."""
    from PIL import Image

    from paths import CMU_SLIDE, HELDOUT

    stored = open_map(map_slide(CMU_SLIDE, out).path)
    tiles = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in HELDOUT])
    predictor = Predictor("default")
    probabilities, cells = predictor.predict_with_cells(tiles)
    return {
        "judgement": np.array(JUDGEMENT),
        **{f"sample_{name}": stored.array(name) for name in ("probs", "label", "tone", "tissue")},
        "heldout_probabilities": probabilities,
        "heldout_cells": cells,
        "heldout_debris": debris_tiles(tiles, predictor.card.mpp, probabilities, predictor.classes),
    }


def test_the_sample_map_and_the_heldout_tiles_are_judged_as_pinned(tmp_path):
    pinned, now = dict(np.load(PINNED)), judged(tmp_path / "sample.quality.zarr")
    assert int(pinned.pop("judgement")) == JUDGEMENT, "the judgement changed: write the pinned file again"
    assert pinned.keys() == now.keys() - {"judgement"}
    for name, expected in pinned.items():
        actual = now[name]
        if expected.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=name)
            np.testing.assert_allclose(actual, expected, atol=TOLERANCE, rtol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=name)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        np.savez_compressed(PINNED, **judged(Path(folder) / "sample.quality.zarr"))
    print(f"wrote {PINNED}")
