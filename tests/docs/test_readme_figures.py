"""The README's quick start states what the bundled sample's map gives; this test is the script
those figures come from. A change of judgement that moves them fails here until the README says
what a user now sees."""

import json
import re
import subprocess
import sys

from paths import CMU_SLIDE, ROOT

#: The quick start's sentence, e.g. "**pass**: 57 tissue tiles, mean score 0.975, 1.8 % (one tile,
#: `motion`) below 0.5 where the rule allows 10 %".
QUICK_START = re.compile(
    r"\*\*(?P<verdict>pass|fail)\*\*: (?P<tiles>\d+) tissue tiles, mean score (?P<mean>[0-9.]+), "
    r"(?P<share>[0-9.]+) % \((?P<count>\w+) tiles?, `(?P<family>\w+)`\)\s+below (?P<threshold>[0-9.]+) "
    r"where the rule allows (?P<allowed>\d+) %"
)
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
#: And its warning: "green marking dye in 9 tiles".
DYE = re.compile(r"green marking dye in (?P<tiles>\d+) tiles")


def test_the_quick_start_says_what_slideiqa_map_prints_for_the_sample(tmp_path):
    pages = [ROOT / "README.md", ROOT / "docs" / "getting-started.md"]  # the quick start, and the site's
    claims = [QUICK_START.search(page.read_text()) for page in pages]
    assert all(claims), "a quick start no longer states the sample's verdict in the expected words"
    assert len({claim.group(0) for claim in claims}) == 1, "the README and the site's quick start disagree"
    claim = claims[0]
    out = tmp_path / "cmu_small_region.quality.zarr"
    done = subprocess.run(
        [sys.executable, "-m", "slideiqa.cli.app", "map", str(CMU_SLIDE), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    below = round(summary["share_below_threshold"] * summary["tissue_tiles"])
    flagged = {name for name, share in summary["share_per_class"].items() if name != "good" and share > 0}
    assert claim["verdict"] == summary["verdict"] and claim["verdict"] in done.stdout
    assert int(claim["tiles"]) == summary["tissue_tiles"]
    assert claim["mean"] == f"{summary['mean_score']:.3f}"
    assert claim["share"] == f"{100 * summary['share_below_threshold']:.1f}"
    assert NUMBERS[claim["count"]] == below and flagged == {claim["family"]}
    assert float(claim["threshold"]) == summary["threshold"]
    assert int(claim["allowed"]) == round(100 * summary["max_bad_share"])
    for page in pages:
        dye = DYE.search(page.read_text())
        assert dye and int(dye["tiles"]) == summary["dye_tiles"], page.name
    assert [warning["code"] for warning in summary["warnings"]] == ["dye"]
