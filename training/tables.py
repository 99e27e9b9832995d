"""Result tables in the paper's layout, with the paper's own numbers beside ours.

The paper reports test metrics as ``mean ± std`` percentages over five folds, one row per base, in
the column order accuracy, precision, recall, AUC. Keeping that layout lets a reader compare a row of
ours with the paper's at a glance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from .metrics import METRICS, format_mean_std

HEADERS = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "auc": "AUC"}
#: How the paper names each base.
BASE_NAMES = {
    "vgg16": "VGG16",
    "mobilenet_v2": "MobileNet",
    "resnet50": "ResNet50",
    "iqanet": "IQANet",
    "mobilenet_v3_small": "MobileNetV3-S",
}
#: Table order of the paper (Table 1 lists MobileNet, VGG16, ResNet50).
PAPER_BASE_ORDER = ("mobilenet_v2", "vgg16", "resnet50")

Summary = Mapping[str, tuple[float, float]]


def _pct(mean: float, std: float) -> tuple[float, float]:
    return (mean / 100, std / 100)


#: Table 1 of the paper: model 1, blood, 4 classes (test folds, mean ± std over 5 folds).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "mobilenet_v2": {
        "accuracy": _pct(76.05, 1.74),
        "precision": _pct(76.34, 2.75),
        "recall": _pct(76.05, 1.74),
        "auc": _pct(86.85, 1.39),
    },
    "vgg16": {
        "accuracy": _pct(78.91, 1.97),
        "precision": _pct(79.16, 2.17),
        "recall": _pct(78.91, 1.97),
        "auc": _pct(87.64, 1.82),
    },
    "resnet50": {
        "accuracy": _pct(76.97, 2.39),
        "precision": _pct(77.29, 2.67),
        "recall": _pct(76.97, 2.39),
        "auc": _pct(83.06, 3.38),
    },
}
#: The paper's best model-1 setting (the same for its reported bases).
PAPER_BEST_SETTING = {"lr": 0.0001, "batch_size": 32, "dropout": 0.2}
#: Table 2 of the paper: model 2, cytology, binary, VGG16 initialised from model 1.
PAPER_TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "vgg16": {
        "accuracy": _pct(99.49, 0.72),
        "precision": _pct(99.50, 0.70),
        "recall": _pct(99.49, 0.72),
        "auc": _pct(99.96, 0.07),
    },
}


def metric_cells(summary: Summary) -> list[str]:
    """``mean ± std`` cells in the paper's column order; a metric that could not be computed says so."""
    cells = []
    for metric in METRICS:
        mean, std = summary[metric]
        cells.append("undefined" if math.isnan(mean) else format_mean_std(mean, std))
    return cells


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def paper_layout(summaries: Mapping[str, Summary], order: Sequence[str] = PAPER_BASE_ORDER) -> str:
    """One row per base, columns base | accuracy | precision | recall | AUC — the paper's tables."""
    bases = [b for b in order if b in summaries] + [b for b in summaries if b not in order]
    return markdown_table(
        ["base", *(HEADERS[m] for m in METRICS)], [[BASE_NAMES.get(b, b), *metric_cells(summaries[b])] for b in bases]
    )


def side_by_side(rows: Sequence[Mapping], paper: Mapping[str, Summary], extra_columns: Sequence[str] = ()) -> str:
    """Each of our rows preceded by the paper's row for the same base (when the paper has one).

    ``rows`` are mappings with ``base``, ``label`` (e.g. the initialisation actually used), the
    ``extra_columns`` and ``summary``; the paper's row fills the extra columns it knows
    (``paper_extra``) and leaves the rest as "—" (not reported).
    """
    header = ["base", "run", *extra_columns, *(HEADERS[m] for m in METRICS)]
    table, shown = [], set()
    for row in rows:
        base = row["base"]
        if base in paper and base not in shown:
            known = row.get("paper_extra", {})
            table.append(
                [
                    BASE_NAMES.get(base, base),
                    "paper",
                    *(known.get(c, "—") for c in extra_columns),
                    *metric_cells(paper[base]),
                ]
            )
            shown.add(base)
        table.append(
            [
                BASE_NAMES.get(base, base),
                row["label"],
                *(str(row[c]) for c in extra_columns),
                *metric_cells(row["summary"]),
            ]
        )
    return markdown_table(header, table)


def empty_cells(markdown: str) -> list[str]:
    """Rows of a Markdown table with an empty or NaN cell (a table must be complete to be reported)."""
    bad = []
    for line in markdown.splitlines():
        if not line.startswith("|") or set(line) <= {"|", "-"}:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if any(not c or "nan" in c.lower().split() for c in cells):
            bad.append(line)
    return bad
