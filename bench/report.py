"""The markdown report: machine, then for each corpus the station against ocrmypdf, the worker counts,
the per-stage profile and issue 12's targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.memory import INTERVAL, PSS_EVERY
from bench.metrics import FORMS, SYNTHETIC, Metrics
from bench.summary import Flagged, Profile

Format = Callable[[float], str]
TITLES = {SYNTHETIC: "Synthetic corpus", FORMS: "Forms corpus (real scans)"}


def _count(v: float) -> str:
    return f"{v:.0f}"


def _one(v: float) -> str:
    return f"{v:.1f}"


def _two(v: float) -> str:
    return f"{v:.2f}"


def _percent(v: float) -> str:
    return f"{100 * v:.2f} %"


def _degrees(v: float) -> str:
    return f"{v:.3f}°"


def _kilobytes(v: float) -> str:
    return f"{v / 1000:,.0f} kB"


MEMORY_ROWS: list[tuple[str, str, Format]] = [
    ("bytes/page", "bytes_per_page", _kilobytes),
    ("peak memory per worker, RSS (MiB) ²", "peak_rss_mib", _count),
    ("peak memory per worker, PSS (MiB) ²", "peak_pss_mib", _count),
]
# label, metric key, format; footnote 3 says which direction is better
ROWS: dict[str, list[tuple[str, str, Format]]] = {
    SYNTHETIC: [
        ("pages/min ¹", "pages_per_min", _one),
        ("CER", "cer", _percent),
        ("residual skew mean ⁴", "skew_mean", _degrees),
        ("residual skew max ⁴", "skew_max", _degrees),
        ("pages left turned ⁴", "pages_turned", _count),
        ("pages the scorer could not match ⁴", "pages_unmatched", _count),
        ("pages in the PDF", "pdf_pages", _count),
        ("blank precision", "blank_precision", _two),
        ("blank recall", "blank_recall", _two),
        *MEMORY_ROWS,
    ],
    FORMS: [
        ("pages/min ¹", "pages_per_min", _one),
        ("character recall ⁵", "char_recall", _percent),
        ("character precision ⁵", "char_precision", _percent),
        ("segment recall, exact ⁵", "segment_exact", _percent),
        ("segment recall, near ⁵", "segment_near", _percent),
        ("CER in the guessed reading order ⁵", "cer", _percent),
        ("pages in the PDF", "pdf_pages", _count),
        ("pages flagged for review ⁶", "flagged_pages", _count),
        ("pages taken for blank", "blank_pages", _count),
        *MEMORY_ROWS,
    ],
}
# The quality column of the workers table
QUALITY: dict[str, tuple[str, str, Format]] = {
    SYNTHETIC: ("CER", "cer", _percent),
    FORMS: ("character recall", "char_recall", _percent),
}

FOOTNOTES = """\
1. pages/min = every page of the corpus / minutes. Station: from the batch folder's rename into the
   inbox (with its `.done` marker) to the batch's final state, polled every 0.5 s on
   `GET /api/batches`. ocrmypdf: the ocrmypdf run alone; combining the images into its input PDF
   with img2pdf first ({img2pdf}) is not counted, as the station is given the image files.
2. Sampled every {interval} s with psutil, from start to the batch's final state (ocrmypdf: its whole run).
   Station: for each RQ worker (a child of `scanstation up` with `worker` in its command line), the
   sum over the worker and all its descendants (the work horse RQ forks per job, Tesseract); the
   highest sum seen, for the worst worker. ocrmypdf (`--jobs {jobs}`): the highest sum over its whole
   process tree, divided by {jobs}. RSS counts the pages a forked work horse shares with its worker
   twice; PSS divides shared pages among the processes that share them, but costs more to read, so
   it is read every {pss_interval} s only and may miss a short peak.
3. ratio = station / ocrmypdf. Higher is better for pages/min, blank precision and recall, character
   recall and precision and segment recall; lower is better for the other rows but "pages in the PDF"
   (the station leaves blank pages out, ocrmypdf keeps every page). ocrmypdf does not look for blank
   pages (its blank recall is 0) and flags nothing.
4. From `shared/tools/score_pdf.py`: each text page is registered against the same sheet drawn
   upright; a page more than 45° off counts as left turned and is not in the skew figures.
5. From `shared/tools/score_text.py CORPUS OUT.pdf --json`: character recall and precision compare the
   multisets of characters (whitespace and checkbox glyphs dropped) of each labelled page and the PDF
   page that overlaps it most; segment recall is the share of labelled regions of 2+ characters found in
   that page's text, exactly or with at most ~10 % edits; CER follows the labels' guessed reading order,
   so a table read in another order raises it.
6. Pages of the batch with any flag in `flags` of `GET /api/batches/{{id}}`: every form is an upright
   page with text, so each flag on them is a false one.
7. Per-stage profile: the mean over the batch's pages of `details.seconds`, the CPU seconds (user +
   system) of the work horse in each stage of the page (a page a stage did not run on, such as OCR on
   a blank page, counts 0); a name with a dot (`ocr.read`) is a part of the stage before the dot, shown
   under it and already counted in it. The share is of the stages' total."""


@dataclass
class CorpusRun:
    """One corpus through the station at each worker count, and through ocrmypdf."""

    kind: str  # SYNTHETIC or FORMS
    corpus: dict[str, Any]
    station: dict[int, Metrics]  # by worker count, in run order: the first is the one compared
    ocrmypdf: Metrics | None
    states: dict[int, str]  # the batch's final state, by worker count
    profile: Profile | None = None  # of the first worker count's batch
    flagged: Flagged | None = None  # of the first worker count's batch

    @property
    def main_workers(self) -> int:
        return next(iter(self.station))


@dataclass
class Report:
    machine: dict[str, Any]
    runs: dict[str, CorpusRun]  # by kind, in run order
    ocrmypdf_jobs: int
    ocr: list[str] = field(default_factory=list)  # what the station says about its OCR
    notes: list[str] = field(default_factory=list)


def station_label(workers: int) -> str:
    return f"station ({workers} worker{'' if workers == 1 else 's'})"


def _cell(metrics: Metrics | None, key: str, fmt: Format) -> str:
    value = None if metrics is None else metrics.get(key)
    return "–" if value is None else fmt(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def comparison_table(run: CorpusRun) -> list[str]:
    main = run.station[run.main_workers]
    ref = run.ocrmypdf
    lines = [
        f"| metric | {station_label(run.main_workers)} | ocrmypdf | ratio station/ocrmypdf ³ |",
        "|---|--:|--:|--:|",
    ]
    for label, key, fmt in ROWS[run.kind]:
        ratio = _ratio(main.get(key), None if ref is None else ref.get(key))
        ratio_cell = "–" if ratio is None else f"{ratio:.2f}"
        lines.append(f"| {label} | {_cell(main, key, fmt)} | {_cell(ref, key, fmt)} | {ratio_cell} |")
    return lines


def workers_table(run: CorpusRun) -> list[str]:
    quality, key, fmt = QUALITY[run.kind]
    one = run.station.get(1, {}).get("pages_per_min")
    lines = [
        f"| workers | batch state | seconds | pages/min | × 1 worker | {quality} | peak memory per worker, RSS (MiB) |",
        "|--:|---|--:|--:|--:|--:|--:|",
    ]
    for workers, m in run.station.items():
        speedup = _ratio(m.get("pages_per_min"), one)
        cells = [run.states[workers], _cell(m, "seconds", _one), _cell(m, "pages_per_min", _one)]
        cells += ["–" if speedup is None else f"{speedup:.2f}", _cell(m, key, fmt), _cell(m, "peak_rss_mib", _count)]
        lines.append(f"| {workers} | " + " | ".join(cells) + " |")
    return lines


def profile_table(run: CorpusRun) -> list[str]:
    """The per-stage CPU profile of the first worker count's batch (footnote 7)."""
    profile, workers = run.profile, run.main_workers
    head = f"Per-stage CPU profile ⁷, {station_label(workers)}"
    if profile is None or not profile.pages:
        return [f"{head}: no page has `details.seconds`."]
    lines = [
        f"{head}, {profile.pages} pages:",
        "",
        "| stage | CPU s/page | share |",
        "|---|--:|--:|",
    ]
    for row in profile.rows:
        name = f"{'· ' * (row.depth - 1)}↳ {row.name}" if row.depth else row.name
        lines.append(f"| {name} | {row.mean_seconds:.3f} | {100 * row.share:.1f} % |")
    lines.append(f"| **total** | **{profile.total_seconds:.3f}** | 100 % |")
    seconds = run.station[workers].get("seconds")
    pages = run.corpus.get("pages")
    if seconds and pages:
        lines += [
            "",
            f"Worker time per page in the batch: {seconds:.1f} s × {workers} / {pages} pages = "
            f"{seconds * workers / pages:.3f} s; what the stages do not account for is outside the page "
            "pipeline (queueing, forking the work horse, catalogue writes, assembling the PDF, workers idle "
            "at the start and end) or waiting for a core on a busy machine.",
        ]
    return lines


def flagged_lines(run: CorpusRun) -> list[str]:
    flagged = run.flagged
    if flagged is None or run.kind != FORMS:  # on the synthetic corpus, blank flags are right: see the notes
        return []
    head = f"Pages flagged for review ⁶, {station_label(run.main_workers)}: {len(flagged.pages)} of {flagged.of}"
    if not flagged.pages:
        return [head + "."]
    by_flag = ", ".join(f"{flag} {n}" for flag, n in flagged.by_flag.items())
    pages = ", ".join(f"{name} ({', '.join(flags)})" for name, flags in flagged.pages)
    return [f"{head} (by flag: {by_flag}): {pages}."]


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


Target = tuple[str, bool | None, str]  # target, PASS/MISS (None: n/a, e.g. no ocrmypdf to compare with), figures


def _relative(name: str, key: str, run: CorpusRun, test: Callable[[float], bool]) -> Target:
    """A target on the ratio station/ocrmypdf of one metric."""
    ref = run.ocrmypdf
    ratio = _ratio(run.station[run.main_workers].get(key), None if ref is None else ref.get(key))
    return name, None if ratio is None else test(ratio), "–" if ratio is None else f"{ratio:.2f}×"


def _memory(m: Metrics) -> Target:
    return (
        "peak memory ≤ 1024 MiB per worker (RSS)",
        _at_most(m["peak_rss_mib"], 1024),
        _cell(m, "peak_rss_mib", _count),
    )


def _scaling(run: CorpusRun) -> Target:
    name = "pages/min with 2 workers ≥ 1.8× with 1 worker"
    two, one = (run.station.get(w, {}).get("pages_per_min") for w in (2, 1))
    ratio = _ratio(two, one)
    if ratio is None:
        return name, None, "needs --workers 2,1"
    return name, ratio >= 1.8, f"{ratio:.2f}× ({two:.1f} / {one:.1f})"


def synthetic_targets(run: CorpusRun) -> list[Target]:
    m = run.station[run.main_workers]
    blanks = f"recall {_cell(m, 'blank_recall', _two)}, precision {_cell(m, 'blank_precision', _two)}"
    recall, precision = m.get("blank_recall"), m.get("blank_precision")
    # Neither defined: no blank page in the corpus and none flagged, nothing to judge.
    blanks_ok = None if recall is None and precision is None else recall in (None, 1.0) and precision in (None, 1.0)
    return [
        ("CER ≤ 0.2 %", _at_most(m.get("cer"), 0.002), _cell(m, "cer", _percent)),
        ("residual skew mean ≤ 0.05°", _at_most(m.get("skew_mean"), 0.05), _cell(m, "skew_mean", _degrees)),
        ("residual skew max ≤ 0.2°", _at_most(m.get("skew_max"), 0.2), _cell(m, "skew_max", _degrees)),
        ("blank recall 1.0 and precision 1.0", blanks_ok, blanks),
        _relative("pages/min ≥ 3× ocrmypdf's", "pages_per_min", run, lambda r: r >= 3),
        _relative("bytes/page ≤ 0.5× ocrmypdf's", "bytes_per_page", run, lambda r: r <= 0.5),
        _memory(m),
        _scaling(run),
    ]


def forms_targets(run: CorpusRun) -> list[Target]:
    m = run.station[run.main_workers]
    two = run.station.get(2, {}).get("pages_per_min")
    flagged = run.flagged
    if flagged is None:
        flag_target: Target = ("at most 1 page flagged for review", None, "–")
    else:
        names = ", ".join(name for name, _ in flagged.pages)
        detail = f"{len(flagged.pages)} of {flagged.of}" + (f" ({names})" if names else "")
        flag_target = (f"at most 1 page of {flagged.of} flagged for review", len(flagged.pages) <= 1, detail)
    return [
        _relative("pages/min ≥ 3× ocrmypdf's", "pages_per_min", run, lambda r: r >= 3),
        ("pages/min ≥ 30 with 2 workers", _at_least(two, 30), "needs 2 in --workers" if two is None else f"{two:.1f}"),
        ("character recall ≥ 99 %", _at_least(m.get("char_recall"), 0.99), _cell(m, "char_recall", _percent)),
        (
            "segment recall, exact ≥ 95 %",
            _at_least(m.get("segment_exact"), 0.95),
            _cell(m, "segment_exact", _percent),
        ),
        flag_target,
        _memory(m),
        _scaling(run),
    ]


def targets(run: CorpusRun) -> list[Target]:
    """Issue 12's targets for one corpus, on the station run that is compared with ocrmypdf (the first
    worker count) unless the target names a worker count."""
    return synthetic_targets(run) if run.kind == SYNTHETIC else forms_targets(run)


def _outcome(passed: bool | None) -> str:
    return "n/a " if passed is None else ("PASS" if passed else "MISS")


def corpus_section(run: CorpusRun) -> list[str]:
    co = run.corpus
    if run.kind == SYNTHETIC:
        what = f"{co['pages']} pages ({co['text_pages']} text, {co['blank_pages']} blank), {co['source']}"
    else:
        what = f"{co['pages']} real scanned forms, {co['source']}, dropped as `{co['batch']}`"
    lines = [
        f"## {TITLES[run.kind]}",
        "",
        f"Corpus: {what}.",
        "",
        *comparison_table(run),
        "",
        *workers_table(run),
        "",
    ]
    flagged = flagged_lines(run)
    if flagged:
        lines += [*flagged, ""]
    lines += [
        *profile_table(run),
        "",
        f"Targets (issue 12), {station_label(run.main_workers)}:",
        "",
        *[f"- {_outcome(ok)} {name}: {detail}" for name, ok, detail in targets(run)],
        "",
    ]
    return lines


def render(report: Report) -> str:
    mc = report.machine
    img2pdf = [
        f"{kind} {run.ocrmypdf['img2pdf_seconds']:.1f} s"
        for kind, run in report.runs.items()
        if run.ocrmypdf is not None and run.ocrmypdf.get("img2pdf_seconds") is not None
    ]
    lines = [
        f"# scanstation benchmark, {mc['date']}",
        "",
        f"Machine: {mc['cpus']} CPUs, load average {mc['load_average']} at start, Python {mc['python']}, "
        f"{mc['tesseract']}, ocrmypdf {mc['ocrmypdf']}; station settings from the environment: "
        f"{', '.join(mc['station_env']) or 'none'}; OCR as the station reports it (`/healthz`, `/api/station`): "
        f"{', '.join(report.ocr) or 'not reported'}.",
        "",
    ]
    for run in report.runs.values():
        lines += corpus_section(run)
    lines += [
        "## How",
        "",
        *FOOTNOTES.format(
            interval=INTERVAL,
            pss_interval=INTERVAL * PSS_EVERY,
            jobs=report.ocrmypdf_jobs,
            img2pdf=", ".join(img2pdf) or "–",
        ).splitlines(),
    ]
    if report.notes:
        lines += ["", "Notes:", "", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"
