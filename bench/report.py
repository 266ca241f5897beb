"""The markdown report: machine and corpus, station against ocrmypdf, workers, targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.memory import INTERVAL, PSS_EVERY
from bench.metrics import Metrics

Format = Callable[[float], str]


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


# label, metric key, format; footnote 3 says which direction is better
ROWS: list[tuple[str, str, Format]] = [
    ("pages/min ¹", "pages_per_min", _one),
    ("CER", "cer", _percent),
    ("residual skew mean ⁴", "skew_mean", _degrees),
    ("residual skew max ⁴", "skew_max", _degrees),
    ("pages left turned ⁴", "pages_turned", _count),
    ("pages the scorer could not match ⁴", "pages_unmatched", _count),
    ("pages in the PDF", "pdf_pages", _count),
    ("blank precision", "blank_precision", _two),
    ("blank recall", "blank_recall", _two),
    ("bytes/page", "bytes_per_page", _kilobytes),
    ("peak memory per worker, RSS (MiB) ²", "peak_rss_mib", _count),
    ("peak memory per worker, PSS (MiB) ²", "peak_pss_mib", _count),
]

FOOTNOTES = """\
1. pages/min = every page of the corpus (text and blank) / minutes. Station: from the batch folder's
   rename into the inbox (with its `.done` marker) to the batch's final state, polled every 0.5 s on
   `GET /api/batches`. ocrmypdf: the ocrmypdf run alone; combining the images into its input PDF
   with img2pdf first ({img2pdf}) is not counted, as the station is given the image files.
2. Sampled every {interval} s with psutil, from start to the batch's final state (ocrmypdf: its whole run).
   Station: for each RQ worker (a child of `scanstation up` with `worker` in its command line), the
   sum over the worker and all its descendants (the work horse RQ forks per job, Tesseract); the
   highest sum seen, for the worst worker. ocrmypdf (`--jobs {jobs}`): the highest sum over its whole
   process tree, divided by {jobs}. RSS counts the pages a forked work horse shares with its worker
   twice; PSS divides shared pages among the processes that share them, but costs more to read, so
   it is read every {pss_interval} s only and may miss a short peak.
3. ratio = station / ocrmypdf. Higher is better for pages/min, blank precision and recall; lower is
   better for every other row but "pages in the PDF" (the station leaves blank pages out, ocrmypdf
   keeps every page). ocrmypdf does not look for blank pages: its blank recall is 0.
4. From `shared/tools/score_pdf.py`: each text page is registered against the same sheet drawn
   upright; a page more than 45° off counts as left turned and is not in the skew figures."""


@dataclass
class Report:
    machine: dict[str, Any]
    corpus: dict[str, Any]
    station: dict[int, Metrics]  # by worker count, in run order: the first is the one compared
    ocrmypdf: Metrics | None
    ocrmypdf_jobs: int
    states: dict[int, str]  # the batch's final state, by worker count
    notes: list[str] = field(default_factory=list)

    @property
    def main_workers(self) -> int:
        return next(iter(self.station))


def station_label(workers: int) -> str:
    return f"station ({workers} worker{'' if workers == 1 else 's'})"


def _cell(metrics: Metrics | None, key: str, fmt: Format) -> str:
    value = None if metrics is None else metrics.get(key)
    return "–" if value is None else fmt(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def comparison_table(report: Report) -> list[str]:
    main = report.station[report.main_workers]
    ref = report.ocrmypdf
    lines = [
        f"| metric | {station_label(report.main_workers)} | ocrmypdf | ratio station/ocrmypdf ³ |",
        "|---|--:|--:|--:|",
    ]
    for label, key, fmt in ROWS:
        ratio = _ratio(main.get(key), None if ref is None else ref.get(key))
        ratio_cell = "–" if ratio is None else f"{ratio:.2f}"
        lines.append(f"| {label} | {_cell(main, key, fmt)} | {_cell(ref, key, fmt)} | {ratio_cell} |")
    return lines


def workers_table(report: Report) -> list[str]:
    lines = [
        "| workers | batch state | seconds | pages/min | CER | peak memory per worker, RSS (MiB) |",
        "|--:|---|--:|--:|--:|--:|",
    ]
    for workers, m in report.station.items():
        cells = [report.states[workers], _cell(m, "seconds", _one), _cell(m, "pages_per_min", _one)]
        cells += [_cell(m, "cer", _percent), _cell(m, "peak_rss_mib", _count)]
        lines.append(f"| {workers} | " + " | ".join(cells) + " |")
    return lines


def _at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


Target = tuple[str, bool | None, str]  # target, PASS/MISS (None: no ocrmypdf to compare with), figures


def _relative(name: str, key: str, report: Report, test: Callable[[float], bool]) -> Target:
    """A target on the ratio station/ocrmypdf of one metric."""
    ref = report.ocrmypdf
    ratio = _ratio(report.station[report.main_workers].get(key), None if ref is None else ref.get(key))
    return name, None if ratio is None else test(ratio), "–" if ratio is None else f"{ratio:.2f}×"


def targets(report: Report) -> list[Target]:
    """The project's targets for the station run that is compared with ocrmypdf."""
    m = report.station[report.main_workers]
    blanks = f"recall {_cell(m, 'blank_recall', _two)}, precision {_cell(m, 'blank_precision', _two)}"
    return [
        ("CER ≤ 2 %", _at_most(m["cer"], 0.02), _cell(m, "cer", _percent)),
        ("residual skew mean ≤ 0.1°", _at_most(m["skew_mean"], 0.1), _cell(m, "skew_mean", _degrees)),
        ("residual skew max ≤ 0.3°", _at_most(m["skew_max"], 0.3), _cell(m, "skew_max", _degrees)),
        ("blank recall 1.0 and precision 1.0", m["blank_recall"] == 1.0 and m["blank_precision"] == 1.0, blanks),
        _relative("pages/min ≥ 2× ocrmypdf's", "pages_per_min", report, lambda r: r >= 2),
        _relative("bytes/page ≤ 0.5× ocrmypdf's", "bytes_per_page", report, lambda r: r <= 0.5),
        (
            "peak memory ≤ 1024 MiB per worker (RSS)",
            _at_most(m["peak_rss_mib"], 1024),
            _cell(m, "peak_rss_mib", _count),
        ),
    ]


def _outcome(passed: bool | None) -> str:
    return "n/a " if passed is None else ("PASS" if passed else "MISS")


def render(report: Report) -> str:
    mc, co = report.machine, report.corpus
    lines = [
        f"# scanstation benchmark, {mc['date']}",
        "",
        f"Machine: {mc['cpus']} CPUs, load average {mc['load_average']} at start, Python {mc['python']}, "
        f"{mc['tesseract']}, ocrmypdf {mc['ocrmypdf']}; station settings from the environment: "
        f"{', '.join(mc['station_env']) or 'none'}.",
        f"Corpus: {co['pages']} pages ({co['text_pages']} text, {co['blank_pages']} blank), {co['source']}.",
        "",
        *comparison_table(report),
        "",
        *FOOTNOTES.format(
            interval=INTERVAL,
            pss_interval=INTERVAL * PSS_EVERY,
            jobs=report.ocrmypdf_jobs,
            img2pdf=_cell(report.ocrmypdf, "img2pdf_seconds", lambda v: f"{v:.1f} s"),
        ).splitlines(),
        "",
        *workers_table(report),
        "",
        f"Targets, {station_label(report.main_workers)}:",
        "",
        *[f"- {_outcome(ok)} {name}: {detail}" for name, ok, detail in targets(report)],
    ]
    if report.notes:
        lines += ["", "Notes:", "", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"
