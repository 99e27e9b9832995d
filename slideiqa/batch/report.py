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
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from slideiqa.errors import SlideIQAError
from slideiqa.io.files import held_lock, write_atomically
from slideiqa.io.formats import MAP_SUFFIX
from slideiqa.measure.slide_tone import DEPARTURE_Z, MIN_COHORT_SLIDES, TONE_FEATURES, cohort_deviation
from slideiqa.outputs.palette import VERDICT_COLOURS, hex_colour
from slideiqa.outputs.summary import MapSummary

STATUS_MAPPED, STATUS_RESUMED, STATUS_SKIPPED, STATUS_FAILED = "mapped", "resumed", "skipped", "failed"
#: A slide the batch was stopped before finishing (Ctrl-C): its map, if begun, resumes on the next run.
STATUS_INTERRUPTED = "interrupted"
THUMBNAIL_WIDTH = 320  # shown at 160 px wide: sharp on high-density screens


@dataclass
class SlideRecord:
    """What the batch did with one slide. ``status``: mapped, resumed (finished a partial map),
    skipped (its map was already complete), failed (``error`` says why) or interrupted.

    ``map_runtime_s`` is how long making the map took (for a skipped slide, back when it was made);
    ``runtime_s`` is this batch's time on the slide (for a skipped slide, the check alone)."""

    slide: str
    map: str
    status: str
    tissue_tiles: int | None = None
    unreadable_tiles: int | None = None
    mean_score: float | None = None
    share_below_threshold: float | None = None
    share_per_class: dict[str, float] = field(default_factory=dict)
    verdict: str | None = None
    mpp: float | None = None
    width_px: int | None = None
    height_px: int | None = None
    tissue_area_mm2: float | None = None
    map_runtime_s: float | None = None
    runtime_s: float | None = None
    error: str | None = None
    #: The slide's median tone (glass level, stain density, white point: ``slide_tone.TONE_FEATURES``;
    #: None where it has none), from its map's summary.
    tone: list[float | None] | None = None
    #: How far that tone is from the batch's other slides, in robust spreads (``slide_tone``); set
    #: when the report is written, None with fewer than ``MIN_COHORT_SLIDES`` mapped slides.
    tone_vs_batch: float | None = None
    #: Not a slide of this batch: a row of an earlier batch into the same folder, or a complete map
    #: found there, kept so that the report lists every slide mapped into the folder.
    earlier: bool = False
    #: What a person must know beyond the figures, from its map's summary (``pipeline.finish.map_warnings``:
    #: code, count, message each).
    warnings: list[dict[str, Any]] = field(default_factory=list)
    #: Where ``mpp`` came from: the slide's ``file``, the batch's ``--mpp`` or its µm/px ``table``.
    mpp_from: str | None = None

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

    @property
    def outcome(self) -> str:
        """One word for the review page: pass, fail (the quality rule), error (no map) or interrupted."""
        if self.failed:
            return "error"
        if self.status == STATUS_INTERRUPTED:
            return "interrupted"
        return self.verdict or "?"


#: A map's ``mpp_from`` as a report says it (a batch's table is told apart by the batch itself).
MPP_SOURCES = {"metadata": "file", "option": "--mpp"}


def record_from_summary(
    slide: str,
    map_path: str,
    status: str,
    summary: MapSummary,
    runtime_s: float | None = None,
    earlier: bool = False,
) -> SlideRecord:
    """A slide's row from its map's summary."""
    width, height = summary.dimensions_px[:2] if len(summary.dimensions_px) >= 2 else (None, None)
    reference = summary.tone.reference if summary.tone else None
    return SlideRecord(
        slide,
        map_path,
        status,
        tissue_tiles=summary.tissue_tiles,
        unreadable_tiles=summary.unreadable_tiles or 0,
        mean_score=summary.mean_score,
        share_below_threshold=summary.share_below_threshold,
        share_per_class=summary.share_per_class or {},
        verdict=summary.verdict,
        mpp=summary.mpp,
        width_px=width,
        height_px=height,
        tissue_area_mm2=summary.tissue_area_mm2,
        map_runtime_s=summary.runtime_s,
        runtime_s=runtime_s,
        earlier=earlier,
        tone=[reference[name]["median"] for name in TONE_FEATURES] if reference else None,
        warnings=[warning.to_dict() for warning in summary.warnings],
        mpp_from=MPP_SOURCES.get(summary.mpp_from or ""),
    )


# -- a report in a folder that already holds one ------------------------------------------------------

REPORT_FILES = ("report.json", "report.csv", "report.html")
#: What the first bytes of each report file written by slideiqa start with or contain.
_CSV_HEADER = "slide,map,status,"
_HTML_TITLE = "<title>slideiqa batch report</title>"


class ReportError(SlideIQAError):
    """The output folder holds a report file slideiqa did not write; the message names it."""


def _check_report_files(out: Path) -> None:
    """Refuse an output folder whose ``report.*`` files were not written by slideiqa batch: a lab's
    own ``report.csv`` there must never be overwritten."""
    for name in REPORT_FILES:
        path = out / name
        if (path.exists() or path.is_symlink()) and not _written_by_slideiqa(path):
            raise ReportError(
                f"{path}: exists and is not a slideiqa batch report; move it away or choose another output folder (-o)"
            )


def _written_by_slideiqa(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(1 << 16 if path.suffix != ".json" else -1)
        if path.suffix == ".json":
            document = json.loads(text)
            return (
                isinstance(document, dict) and isinstance(document.get("slides"), list) and "verdict_rule" in document
            )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False
    return text.startswith(_CSV_HEADER) if path.suffix == ".csv" else _HTML_TITLE in text


def _key(path: str) -> str:
    """A path as rows are matched by: resolved, so that ``-o qc`` and ``-o /abs/qc`` name one map."""
    return str(Path(path).resolve()) if path else path


def _report_rows(out: Path) -> list[SlideRecord]:
    """The rows of ``out/report.json`` as it is now (none where there is none)."""
    report = out / "report.json"
    if not report.exists():
        return []
    rows = []
    for row in json.loads(report.read_text(encoding="utf-8")).get("slides", []):
        known = {key: value for key, value in row.items() if key in SlideRecord.__dataclass_fields__}
        rows.append(replace(SlideRecord(**known), tone_vs_batch=None))
    return rows


class FolderReport:
    """The report of a folder that batches map into week after week: it lists every slide mapped
    there. Besides this batch's rows: the rows of the folder's report as it is when written (re-read
    under a lock, so that two batches into one folder at once keep each other's rows) and a row for
    every complete map found in the folder when the batch began that no report lists (made by a
    batch whose report was removed, or by ``slideiqa map -o``). A listed map removed since is left
    out, and said in :attr:`dropped`. Made at the start of a batch: a ``report.*`` file slideiqa did
    not write is refused before any slide is mapped (:func:`_check_report_files`)."""

    def __init__(self, out: Path) -> None:
        _check_report_files(out)
        self.out = out
        self.found: dict[str, SlideRecord] = {}  # resolved map path → a row made from its summary
        for map_path in _maps_under(out):
            summary = _complete_summary(map_path)
            if summary is not None:
                self.found[_key(str(map_path))] = record_from_summary(
                    summary.slide, str(map_path), STATUS_SKIPPED, summary, earlier=True
                )
        found_slides = {_key(record.slide) for record in self.found.values()}
        self.gone: set[str] = set()  # slides whose listed map was removed and is found nowhere else
        self.dropped: list[str] = []
        for record in _report_rows(out):
            if (
                record.status not in (STATUS_FAILED, STATUS_INTERRUPTED)
                and not Path(record.map).exists()
                and _key(record.slide) not in found_slides
            ):
                self.gone.add(_key(record.slide))
                self.dropped.append(
                    f"{record.slide}: listed by an earlier report, but its map {record.map} is gone; "
                    "left out of the report"
                )

    def rows(self, current: list[SlideRecord]) -> list[SlideRecord]:
        """This batch's rows, then every other slide's: from the report as it is now, else from the
        maps found at the start. A slide this batch has a row for, or whose map it has now made for
        another slide, keeps no other row."""
        mine = {_key(record.slide) for record in current}
        remade = {
            _key(record.map) for record in current if record.status in (STATUS_MAPPED, STATUS_RESUMED, STATUS_SKIPPED)
        }
        listed, seen = list(current), mine | self.gone
        on_disk = [
            record
            for record in _report_rows(self.out)
            if Path(record.map).exists() or record.status in (STATUS_FAILED, STATUS_INTERRUPTED)
        ]
        for record in [*on_disk, *self.found.values()]:
            slide = _key(record.slide)
            if slide in seen or _key(record.map) in remade:
                continue
            seen.add(slide)
            listed.append(replace(record, earlier=True))
        return listed

    def write(self, current: list[SlideRecord], header: dict[str, Any]) -> list[SlideRecord]:
        """Write the folder's report with this batch's ``current`` rows; returns every row written."""
        with held_lock(self.out / ".report.lock"):
            listed = self.rows(current)
            write_reports(listed, self.out, header)
        return listed


def _maps_under(out: Path) -> list[Path]:
    """Quality maps under ``out``, not looking inside one (they hold thousands of chunk files) nor
    into hidden folders (a map being built or removed)."""
    found: list[Path] = []
    for folder, subfolders, _ in os.walk(out):
        maps = [name for name in subfolders if name.endswith(MAP_SUFFIX) and not name.startswith(".")]
        found += [Path(folder) / name for name in maps]
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and name not in maps]
    return sorted(found)


def _complete_summary(map_path: Path) -> MapSummary | None:
    """A complete map's summary, or None for a partial map or anything else."""
    try:
        from slideiqa.outputs.store import open_map

        opened = open_map(map_path)
        return opened.summary if opened.complete else None
    except (SlideIQAError, OSError, ValueError, KeyError, TypeError, AttributeError):  # any unreadable summary
        return None


def with_batch_tone(records: list[SlideRecord]) -> list[SlideRecord]:
    """The records with ``tone_vs_batch`` set: each mapped slide's tone against the batch's others."""
    toned = [index for index, record in enumerate(records) if record.tone]
    if len(toned) < MIN_COHORT_SLIDES:
        return [replace(record, tone_vs_batch=None) for record in records]
    medians = np.array([[np.nan if v is None else v for v in records[index].tone or []] for index in toned])
    deviation = dict(zip(toned, cohort_deviation(medians)))
    return [
        replace(record, tone_vs_batch=round(float(deviation[index]), 2) if index in deviation else None)
        for index, record in enumerate(records)
    ]


def _departs_from_batch(record: SlideRecord) -> bool:
    """Whether a slide's tone departs from the batch's: a slide-wide exposure or staining difference."""
    return record.tone_vs_batch is not None and record.tone_vs_batch > DEPARTURE_Z


def tone_outliers(records: list[SlideRecord]) -> list[SlideRecord]:
    return [record for record in records if _departs_from_batch(record)]


def write_reports(records: list[SlideRecord], out: Path, header: dict[str, Any]) -> None:
    """``report.json``, ``report.csv`` and ``report.html`` under ``out``."""
    ordered = sorted(with_batch_tone(records), key=SlideRecord.severity)
    write_atomically(
        out / "report.json", json.dumps({**header, "slides": [asdict(r) for r in ordered]}, indent=2) + "\n"
    )
    write_atomically(out / "report.csv", _csv(ordered))
    write_atomically(out / "report.html", _html(ordered, header, out))


def _class_order(records: list[SlideRecord]) -> list[str]:
    """Classes as the model lists them (good first, then the defects, then pen and unreadable), in
    the order the slides' summaries give them, not alphabetically."""
    return list(dict.fromkeys(name for record in records for name in record.share_per_class))


#: Decimals per kind of CSV figure: enough to sort and compare, not float noise.
SHARE_DECIMALS, SCORE_DECIMALS, SECONDS_DECIMALS = 4, 4, 1


def _rounded(name: str, value: Any) -> Any:
    if not isinstance(value, float):
        return value
    if name.endswith("_s"):
        return round(value, SECONDS_DECIMALS)
    if name == "mpp":
        return round(value, 5)
    return round(value, SHARE_DECIMALS if name.startswith("share") else SCORE_DECIMALS)


def _csv(records: list[SlideRecord]) -> str:
    classes = _class_order(records)
    columns = [
        "slide",
        "map",
        "status",
        "verdict",
        "mean_score",
        "share_below_threshold",
        *(f"share_{name}" for name in classes),
        "tissue_tiles",
        "unreadable_tiles",
        "tissue_area_mm2",
        "mpp",
        "mpp_from",
        "width_px",
        "height_px",
        "map_runtime_s",
        "runtime_s",
        "tone_vs_batch",
        "warnings",
        "error",
        "earlier",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = {key: value for key, value in asdict(record).items() if key not in ("share_per_class", "tone")}
        row |= {"slide": str(Path(record.slide).resolve()), "map": str(Path(record.map).resolve())}
        row |= {f"share_{name}": record.share_per_class.get(name) for name in classes}
        row["warnings"] = "; ".join(f"{warning['code']} {warning['count']}" for warning in record.warnings) or None
        writer.writerow({key: "" if value is None else _rounded(key, value) for key, value in row.items()})
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
        rgb = image.convert("RGB")
        rgb.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH * 4))
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(text: str, sort_value: Any = None, css: str = "") -> str:
    """A table cell; ``sort_value`` (a number or text) is what the page sorts by, missing sorts last."""
    value = "" if sort_value is None else html.escape(str(sort_value), quote=True)
    css_attribute = f' class="{css}"' if css else ""
    return f'<td data-sort="{value}"{css_attribute}>{text}</td>'


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _relative_href(out: Path, target: Path) -> str:
    """``target`` as a link from a page in ``out``: relative (the page keeps working when the output
    folder moves), starting with ``./`` or ``../`` and percent-encoded, so that no file name can make it
    a ``javascript:`` or other scheme's address, and ``#`` or ``?`` in a name open that file."""
    relative = Path(os.path.relpath(target, out)).as_posix()
    if not relative.startswith("../"):
        relative = "./" + relative
    return html.escape(quote(relative, safe="/"), quote=True)


def _link(out: Path, target: Path, label: str) -> str:
    if not target.exists():
        return ""
    return f'<a href="{_relative_href(out, target)}">{label}</a>'


def _tone(record: SlideRecord) -> str:
    if record.tone_vs_batch is None:
        return "–"
    if _departs_from_batch(record):
        return f"{record.tone_vs_batch:.1f} · unlike the batch"
    return f"{record.tone_vs_batch:.1f}"


def _warnings(record: SlideRecord) -> str:
    """The slide's warnings, folded under one line that counts them."""
    if not record.warnings:
        return ""
    items = "".join(f"<li>{html.escape(warning['message'])}</li>" for warning in record.warnings)
    codes = ", ".join(html.escape(f"{warning['code']} {warning['count']}") for warning in record.warnings)
    return f'<details class="warnings"><summary>⚠ {codes}</summary><ul>{items}</ul></details>'


def _row(record: SlideRecord, classes: list[str], out: Path) -> str:
    name, map_path = Path(record.slide).name, Path(record.map)
    thumbnail = None if record.failed else _thumbnail(map_path)
    picture = (
        (
            f'<a href="{_relative_href(out, map_path / "overview.png")}">'
            f'<img src="{thumbnail}" alt="quality overview of {html.escape(name)}"></a>'
        )
        if thumbnail
        else ""
    )
    links = " ".join(
        filter(
            None,
            (
                _link(out, map_path / "overview.png", "overview"),
                _link(out, map_path / "regions.geojson", "regions"),
                _link(out, map_path / "tiles.geojson", "tiles"),
                _link(out, map_path / "summary.json", "summary"),
                _link(out, map_path / "usable.png", "usable mask"),
                _link(out, map_path / "usable.geojson", "usable regions"),
            ),
        )
    )
    outcome = record.outcome
    badge = {"pass": "PASS", "fail": "FAIL · quality", "error": "ERROR · no map", "interrupted": "INTERRUPTED"}.get(
        outcome, outcome.upper()
    )
    size = f"{record.width_px:,} × {record.height_px:,} px" if record.width_px else ""
    cells = [
        _cell(picture, None, "picture fixed"),
        _cell(
            f'<span class="name">{html.escape(name)}</span><span class="path">{html.escape(record.slide)}</span>'
            + (f'<span class="error">{html.escape(record.error)}</span>' if record.error else "")
            + ('<span class="earlier">from an earlier run into this folder</span>' if record.earlier else "")
            + _warnings(record),
            name,
            "slide fixed",
        ),
        _cell(f'<span class="badge {outcome}">{badge}</span>', record.severity()[0]),
        _cell("–" if record.mean_score is None else f"{record.mean_score:.3f}", record.mean_score),
        _cell(_share(record.share_below_threshold), record.share_below_threshold),
        _cell(links, None, "links"),
        *(_cell(_share(record.share_per_class.get(c)), record.share_per_class.get(c)) for c in classes),
        _cell("–" if record.tissue_area_mm2 is None else f"{record.tissue_area_mm2:.2f}", record.tissue_area_mm2),
        _cell(
            "–"
            if record.mpp is None
            else f"{record.mpp:.3g}"
            + (f' <span class="source">{html.escape(record.mpp_from)}</span>' if record.mpp_from else ""),
            record.mpp,
            "nowrap",
        ),
        _cell(html.escape(size), (record.width_px or 0) * (record.height_px or 0) or None, "nowrap"),
        _cell("–" if record.map_runtime_s is None else f"{record.map_runtime_s:.1f}", record.map_runtime_s),
        _cell(_tone(record), record.tone_vs_batch, "warn" if _departs_from_batch(record) else ""),
    ]
    search = html.escape(f"{record.slide} {outcome} {record.error or ''}".lower(), quote=True)
    return f'<tr data-outcome="{outcome}" data-search="{search}">{"".join(cells)}</tr>'


def _in_verdict_colours(style: str) -> str:
    """``style`` with its badges' ``PASS_COLOUR``… in the palette's verdict colours."""
    for outcome, rgb in VERDICT_COLOURS.items():
        style = style.replace(f"{outcome.upper()}_COLOUR", hex_colour(rgb))
    return style


STYLE = _in_verdict_colours("""
body{font-family:system-ui,sans-serif;margin:1.5em;background:#f6f6f6;color:#222}
.facts{max-width:75em}.controls{margin:1em 0;display:flex;gap:1em;align-items:center}
table{border-collapse:collapse;background:#fff;font-size:.9em}
th,td{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{position:sticky;top:0;background:#eee;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
.scroll{overflow-x:auto;max-width:100%;box-shadow:0 1px 3px #0003}
.fixed{position:sticky;background:#fff;z-index:1}th.fixed{background:#eee;z-index:3}
.picture{left:0;width:160px;min-width:160px}.slide{left:calc(160px + 1.2em);width:16em;min-width:16em;max-width:16em}
td.picture img{width:160px;display:block;cursor:zoom-in}.name{display:block;font-weight:600;word-break:break-all}
.path{display:block;font-size:.8em;color:#666;word-break:break-all}.source{color:#666;font-size:.85em}
td.links a{margin-right:.4em;white-space:nowrap}
#preview{position:fixed;z-index:10;width:min(640px,45vw);box-shadow:0 4px 16px #0006;background:#fff;pointer-events:none}
.badge{display:inline-block;padding:.2em .55em;border-radius:3px;font-size:.8em;font-weight:700;white-space:nowrap}
.badge.pass{background:PASS_COLOUR;color:#111}.badge.fail{background:FAIL_COLOUR;color:#111;border:2px dashed #7a4f00}
.badge.error{background:ERROR_COLOUR;color:#fff;outline:3px double #6b2f00}.badge.interrupted{background:#999;color:#fff}
.warn{color:#b35806;font-weight:600}.error{display:block;color:#b00;font-family:monospace;font-size:.85em;word-break:break-word}.count{color:#555}
.nowrap{white-space:nowrap}.earlier{display:block;font-size:.8em;color:#555;font-style:italic}
.warnings{font-size:.85em;color:#b35806}.left-out{margin:.5em 0;font-size:.9em}.left-out summary{cursor:pointer}
.left-out .path{display:inline;font-size:1em;color:#222}.warnings summary{cursor:pointer}.warnings ul{margin:.3em 0;padding-left:1.2em}
""")

SCRIPT = """
(function () {
  const table = document.getElementById('slides'), body = table.tBodies[0];
  const headers = Array.from(table.tHead.rows[0].cells);
  const query = document.getElementById('filter'), outcome = document.getElementById('outcome');
  const count = document.getElementById('count');
  function value(row, column) {
    const text = row.cells[column].dataset.sort;
    if (text === undefined || text === '') return null;
    const number = Number(text);
    return Number.isNaN(number) ? text.toLowerCase() : number;
  }
  function sortBy(column, descending) {
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = value(a, column), y = value(b, column);
      if (x === null || y === null) return x === null ? (y === null ? 0 : 1) : -1;  // missing last
      const order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    headers.forEach(function (h, i) {
      if (i === column) h.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      else h.removeAttribute('aria-sort');
    });
  }
  function filter() {
    const words = query.value.toLowerCase().trim(), wanted = outcome.value;
    let shown = 0;
    Array.from(body.rows).forEach(function (row) {
      const visible = (!wanted || row.dataset.outcome === wanted) && (!words || row.dataset.search.includes(words));
      row.hidden = !visible;
      if (visible) shown += 1;
    });
    count.textContent = shown + ' of ' + body.rows.length + ' slides shown';
  }
  function remember() {
    const sorted = headers.find(function (h) { return h.hasAttribute('aria-sort'); });
    const state = new URLSearchParams();
    if (sorted) state.set('sort', (sorted.getAttribute('aria-sort') === 'descending' ? '-' : '') + sorted.dataset.key);
    if (outcome.value) state.set('outcome', outcome.value);
    if (query.value) state.set('q', query.value);
    history.replaceState(null, '', '#' + state.toString());
  }
  headers.forEach(function (header, column) {
    if (!header.dataset.key) return;
    header.addEventListener('click', function () {
      sortBy(column, header.getAttribute('aria-sort') === 'ascending');
      remember();
    });
  });
  query.addEventListener('input', function () { filter(); remember(); });
  outcome.addEventListener('change', function () { filter(); remember(); });
  // A view can be shared or bookmarked: #sort=-mean_score&outcome=fail&q=run2
  const state = new URLSearchParams(location.hash.slice(1));
  const sort = state.get('sort');
  if (sort) {
    const key = sort.replace(/^-/, ''), column = headers.findIndex(function (h) { return h.dataset.key === key; });
    if (column >= 0) sortBy(column, sort.startsWith('-'));
  }
  // A thumbnail enlarged beside the pointer, from the same inline picture.
  const preview = document.getElementById('preview');
  body.addEventListener('mouseover', function (event) {
    if (!event.target.matches('td.picture img')) return;
    preview.src = event.target.src;
    const box = event.target.getBoundingClientRect();
    preview.style.left = (box.right + 8) + 'px';
    preview.style.top = Math.max(8, Math.min(box.top, window.innerHeight - 0.75 * preview.offsetWidth - 8)) + 'px';
    preview.hidden = false;
  });
  body.addEventListener('mouseout', function (event) {
    if (event.target.matches('td.picture img')) preview.hidden = true;
  });
  if (state.get('outcome')) outcome.value = state.get('outcome');
  if (state.get('q')) query.value = state.get('q');
  filter();
})();
"""


def _header_cell(label: str, key: str | None, css: str) -> str:
    """A column's heading; ``key`` makes it sortable (the script sorts by it)."""
    attributes = (f' data-key="{key}"' if key else "") + (f' class="{css}"' if css else "")
    return f'<th{attributes} scope="col">{html.escape(label)}</th>'


def _html(records: list[SlideRecord], header: dict[str, Any], out: Path) -> str:
    """A cohort review page: one sortable, filterable table row per slide, with its overview, its
    figures and links to its files. One self-contained file (style, script and thumbnails inline)."""
    classes = _class_order(records)
    outcomes = [record.outcome for record in records]
    unlike_the_batch = len(tone_outliers(records))
    earlier = sum(record.earlier for record in records)
    facts = (
        f"{len(records)} slides: {outcomes.count('pass')} pass, {outcomes.count('fail')} fail the quality rule, "
        f"{outcomes.count('error')} could not be mapped"
        + (f", {outcomes.count('interrupted')} interrupted" if "interrupted" in outcomes else "")
        + ". "
        + (f"{earlier} of them from earlier runs into this folder. " if earlier else "")
        + (
            f"{unlike_the_batch} slides' tone (glass, stain density, white point) is unlike the rest "
            f"of the batch's, by more than {DEPARTURE_Z:g} of its spreads: a slide-wide exposure or staining "
            "difference; check them. "
            if unlike_the_batch
            else ""
        )
        + f"Model {html.escape(str(header.get('model')))}; rule: {html.escape(str(header.get('verdict_rule', '')))}. "
        f"slideiqa {html.escape(str(header.get('version', '')))}, started {html.escape(str(header.get('started', '')))}"
        f", updated {html.escape(str(header.get('updated', header.get('started', ''))))}."
    )
    # What a reviewer decides on comes first and the two first columns stay put; the rest scrolls
    # inside the table, so a 1400 px window never scrolls the page sideways.
    columns = [
        ("", None, "picture fixed"),
        ("slide", "slide", "slide fixed"),
        ("verdict", "verdict", ""),
        ("mean score", "mean_score", ""),
        ("below threshold or lost", "share_below_threshold", ""),
        ("files", None, ""),
        *((name, f"share_{name}", "") for name in classes),
        ("tissue mm²", "tissue_area_mm2", ""),
        ("µm/px (from)", "mpp", ""),
        ("size", "size", ""),
        ("map time s", "map_runtime_s", ""),
        ("tone vs batch", "tone_vs_batch", ""),
    ]
    head = "".join(_header_cell(*column) for column in columns)
    rows = "".join(_row(record, classes, out) for record in records)
    warnings = "".join(f"<li>{html.escape(text)}</li>" for text in header.get("warnings", []))
    skipped = f"<p>Not looked at:</p><ul class='error'>{warnings}</ul>" if warnings else ""
    left_out = header.get("left_out") or []
    if left_out:
        items = "".join(
            f"<li><span class='path'>{html.escape(item['path'])}</span> {html.escape(item['why'])}</li>"
            for item in left_out
        )
        skipped += (
            f"<details class='left-out'><summary>{len(left_out)} file{'s' if len(left_out) > 1 else ''} "
            f"in the folders left out, and why</summary><ul>{items}</ul></details>"
        )
    options = "".join(
        f'<option value="{value}">{label}</option>'
        for value, label in (
            ("", "all slides"),
            ("error", "errors (no map)"),
            ("fail", "failing the quality rule"),
            ("pass", "passing"),
            ("interrupted", "interrupted"),
        )
    )
    controls = (
        f'<div class="controls"><label>Show <select id="outcome">{options}</select></label>'
        f'<label>Filter <input id="filter" type="search" placeholder="slide name, path or error"></label>'
        f'<span id="count" class="count"></span></div>'
    )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{_HTML_TITLE}"
        f"<style>{STYLE}</style></head><body><h1>slideiqa batch report</h1><p class='facts'>{facts}</p>{skipped}"
        f"{controls}<div class='scroll'><table id='slides'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
        f"</table></div><img id='preview' alt='' hidden>"
        f"<p class='facts'>Shares are of tissue tiles; <em>below threshold or lost</em> is the verdict's figure "
        f"(tiles scoring below the threshold, under pen ink, a fold, an air bubble, a coverslip edge or debris, or unreadable); a class's share counts the tiles "
        f"the model found most likely to be of that class; µm/px says where it came from (the slide's file, "
        f"--mpp or the µm/px table). Click a column to sort; point at a thumbnail to enlarge it.</p>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
