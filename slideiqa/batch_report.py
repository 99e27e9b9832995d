"""The batch report: one row per slide as ``report.csv`` and ``report.json``, and ``report.html``.

The HTML page is self-contained (thumbnails are embedded), so it can be mailed or archived with the
maps, and it lists the slides worst first: failures, then failing verdicts by their share of
low-quality tissue, then passes. Every file is written to a temporary name and renamed, so a batch
interrupted while writing never leaves a half report; it is rewritten after every slide, so an
interrupted batch still reports what it finished.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

STATUS_MAPPED, STATUS_RESUMED, STATUS_SKIPPED, STATUS_FAILED = "mapped", "resumed", "skipped", "failed"
#: A slide the batch was stopped before finishing (Ctrl-C): its map, if begun, resumes on the next run.
STATUS_INTERRUPTED = "interrupted"
THUMBNAIL_WIDTH = 420


@dataclass
class SlideRecord:
    """What the batch did with one slide. ``status``: mapped, resumed (finished a partial map),
    skipped (its map was already complete), failed (``error`` says why) or interrupted."""

    slide: str
    map: str
    status: str
    tissue_tiles: int | None = None
    unreadable_tiles: int | None = None
    mean_score: float | None = None
    share_below_threshold: float | None = None
    share_per_class: dict[str, float] = field(default_factory=dict)
    verdict: str | None = None
    runtime_s: float | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == STATUS_FAILED

    def severity(self) -> tuple:
        """Sort key, worst first: failures, interrupted slides, failing verdicts, passes."""
        if self.failed:
            return (0, 0.0, self.slide)
        if self.status == STATUS_INTERRUPTED:
            return (0.5, 0.0, self.slide)
        return (1 if self.verdict == "fail" else 2, -(self.share_below_threshold or 0.0), self.slide)


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_reports(records: list[SlideRecord], out: Path, header: dict[str, Any]) -> None:
    """``report.json``, ``report.csv`` and ``report.html`` under ``out``."""
    ordered = sorted(records, key=SlideRecord.severity)
    _atomic_write(out / "report.json", json.dumps({**header, "slides": [asdict(r) for r in ordered]}, indent=2) + "\n")
    _atomic_write(out / "report.csv", _csv(ordered))
    _atomic_write(out / "report.html", _html(ordered, header))


def _csv(records: list[SlideRecord]) -> str:
    classes = sorted({name for record in records for name in record.share_per_class})
    columns = ["slide", "map", "status", "tissue_tiles", "unreadable_tiles", "mean_score", "share_below_threshold",
               *(f"share_{name}" for name in classes), "verdict", "runtime_s", "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {key: value for key, value in asdict(record).items() if key != "share_per_class"}
        row |= {f"share_{name}": record.share_per_class.get(name) for name in classes}
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def _thumbnail(map_path: Path) -> str | None:
    """The map's overview (slide thumbnail with the score overlaid) as an inline JPEG data URL, or
    None when there is none or it cannot be read (a report must not fail for a picture)."""
    overview = map_path / "overview.png"
    try:
        return _encoded(str(overview), overview.stat().st_mtime_ns)
    except (OSError, ValueError):  # missing, truncated or not an image
        return None


@lru_cache(maxsize=4096)
def _encoded(path: str, mtime_ns: int) -> str:
    """Encoded once per overview version: the report is rewritten many times during a batch."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH * 4))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(value: float | None, as_share: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if as_share else f"{value:.3f}"


def _card(record: SlideRecord) -> str:
    name = html.escape(Path(record.slide).name)
    badge = "failed" if record.failed else (record.verdict or "?")
    rows = [("status", record.status), ("tissue tiles", record.tissue_tiles if record.tissue_tiles is not None else "–"),
            ("mean score", _figure(record.mean_score)),
            ("below threshold or lost", _figure(record.share_below_threshold, as_share=True))]
    rows += [(f"· {k}", _figure(v, as_share=True)) for k, v in record.share_per_class.items()]
    rows += [("runtime", f"{record.runtime_s:.1f} s" if record.runtime_s is not None else "–")]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    thumbnail = None if record.failed else _thumbnail(Path(record.map))
    picture = f'<img src="{thumbnail}" alt="quality overview of {name}">' if thumbnail else ""
    error = f'<p class="error">{html.escape(record.error)}</p>' if record.error else ""
    return (f'<section class="card {badge}"><h2>{name} <span class="badge">{badge}</span></h2>'
            f'<p class="path">{html.escape(record.slide)}</p>{picture}{error}<table>{table}</table></section>')


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;background:#f6f6f6;color:#222}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{background:#fff;border-radius:6px;padding:1em;width:460px;box-shadow:0 1px 3px #0003;border-top:6px solid #999}
.card.pass{border-top-color:#1a9850}.card.fail{border-top-color:#fdae61}.card.failed{border-top-color:#d73027}
.badge{font-size:.7em;padding:.15em .5em;border-radius:3px;background:#eee;text-transform:uppercase}
.path{font-size:.8em;color:#666;word-break:break-all}.error{color:#d73027;font-family:monospace}
img{max-width:100%}th{text-align:left;font-weight:normal;color:#555;padding-right:1em}
"""


def _html(records: list[SlideRecord], header: dict[str, Any]) -> str:
    failed = sum(r.failed for r in records)
    failing = sum(r.verdict == "fail" for r in records if not r.failed)
    passing = sum(r.verdict == "pass" for r in records if not r.failed)
    facts = (f"{len(records)} slides: {passing} pass, {failing} fail the quality rule, {failed} could not be mapped. "
             f"Model {html.escape(str(header.get('model')))}; rule: {html.escape(str(header.get('verdict_rule', '')))}.")
    cards = "".join(_card(record) for record in records)
    warnings = "".join(f"<li>{html.escape(text)}</li>" for text in header.get("warnings", []))
    skipped = f"<p>Not looked at:</p><ul class='error'>{warnings}</ul>" if warnings else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>slideiqa batch report</title>"
            f"<style>{STYLE}</style></head><body><h1>slideiqa batch report</h1><p>{facts}</p>{skipped}"
            f"<div class='cards'>{cards}</div></body></html>\n")
