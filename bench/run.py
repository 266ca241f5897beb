"""``python -m bench``: the station end to end against ocrmypdf on a generated corpus and on the real forms
corpus, each at every worker count then through ocrmypdf; see bench/README.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import tools
from bench.metrics import FORMS, KINDS, SYNTHETIC, Metrics, blank_scores, run_metrics, station_blank_files
from bench.ocrmypdf_run import JOBS, run_ocrmypdf
from bench.report import CorpusRun, Report, render, station_label, targets
from bench.station import BATCH_NAME, ISOLATING, StationRun, run_station
from bench.summary import flagged_pages, ocr_reports, stage_profile
from bench.tools import BenchError, log

RESULTS = Path(__file__).resolve().parent / "results"
FORMS_BATCH = "C015-WS·2013-Y-BGS-0002"  # the forms' batch folder; the synthetic corpus is dropped as BATCH_NAME


@dataclass
class Corpus:
    """``pages/`` and ``truth.json`` (a synthetic corpus: make_corpus.py's output), with ``segments.json``
    too for a real one with labels (the forms)."""

    root: Path
    source: str
    kind: str = SYNTHETIC
    pages: list[Path] = field(init=False)
    truth: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        truth_path, pages_dir = self.root / "truth.json", self.root / "pages"
        needs = ["pages/", "truth.json"] + (["segments.json"] if self.kind == FORMS else [])
        if not pages_dir.is_dir() or not all((self.root / name).is_file() for name in needs[1:]):
            what = "a make_corpus.py output" if self.kind == SYNTHETIC else "a labelled corpus like shared/corpus/forms"
            raise BenchError(f"{self.root} is not {what} ({', '.join(needs)}).")
        self.truth = json.loads(truth_path.read_text(encoding="utf-8"))
        self.pages = sorted(p for p in pages_dir.iterdir() if p.is_file() and not p.name.startswith("."))

    @property
    def batch(self) -> str:
        return FORMS_BATCH if self.kind == FORMS else BATCH_NAME

    def summary(self) -> dict[str, Any]:
        blanks = sum(bool(e.get("blank")) for e in self.truth)
        return {"pages": len(self.pages), "text_pages": len(self.truth) - blanks, "blank_pages": blanks,
                "source": self.source, "root": str(self.root), "kind": self.kind, "batch": self.batch}  # fmt: skip


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"worker counts must be distinct and at least 1: {text!r}")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--pages", type=int, default=40, help="text pages to generate; about 1 blank per 10 is added")
    parser.add_argument("--seed", type=int, default=2026, help="make_corpus.py seed")
    parser.add_argument(
        "--workers",
        type=_worker_counts,
        default=[2, 1],
        help="worker counts to run the station with, in this order; the first is compared with ocrmypdf",
    )
    parser.add_argument("--skip-ocrmypdf", action="store_true", help="run only the station")
    parser.add_argument("--corpus", type=Path, help="an existing make_corpus.py output instead of a new one")
    parser.add_argument(
        "--forms", type=Path, help="the real forms corpus (default: shared/corpus/forms beside the repository)"
    )
    parser.add_argument("--only", choices=KINDS, help="run one corpus only (default: synthetic, then forms)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (corpus, data, PDFs, logs)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.md and latest.json go")
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    settings = [
        f"{k}={v}"
        for k, v in sorted(os.environ.items())
        if k.startswith("SCANSTATION_") and k not in ISOLATING and "URL" not in k and k != "SCANSTATION_SHARED"
    ]
    return {
        "date": datetime.now().isoformat(sep=" ", timespec="minutes"),
        "cpus": os.cpu_count(),
        "load_average": f"{os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "tesseract": tools.first_line(["tesseract", "--version"]),
        "ocrmypdf": tools.first_line([tools.venv_command("ocrmypdf"), "--version"]),
        "station_env": settings,
    }


def prepare_corpus(args: argparse.Namespace, work: Path) -> Corpus:
    """The synthetic corpus: ``--corpus``, or make_corpus.py's pages for ``--pages`` and ``--seed``."""
    if args.corpus:
        return Corpus(args.corpus.resolve(), f"given: {args.corpus}")
    log(f"generating {args.pages} text pages, seed {args.seed}")
    tools.make_corpus(work / "corpus", args.pages, args.seed)
    return Corpus(work / "corpus", f"seed {args.seed} (make_corpus.py --pages {args.pages})")


def forms_corpus(args: argparse.Namespace) -> Corpus:
    """The real forms, read where they are (``--forms``, or shared/corpus/forms): never copied but into the drop."""
    root = (args.forms or tools.shared_dir() / "corpus" / "forms").resolve()
    if not root.is_dir():
        raise BenchError(
            f"{root} is missing: put shared/ beside the repository, set SCANSTATION_SHARED or give --forms."
        )
    return Corpus(root, str(args.forms or root), FORMS)


def score(corpus: Corpus, pdf: Path | None, label: str, notes: list[str]) -> dict[str, Any] | None:
    """score_pdf.py's figures (synthetic) or score_text.py's (forms), or None with a note saying why there are none."""
    if pdf is None:
        notes.append(f"{label}: no PDF, nothing to score.")
        return None
    log(f"scoring {label}")
    try:
        if corpus.kind == FORMS:
            return tools.score_text(corpus.root, pdf)
        return tools.score_pdf(corpus.root / "truth.json", pdf)
    except BenchError as err:
        notes.append(f"{label}: {err}")
        return None


def _flag_counts(batch: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for page in batch["page_list"]:
        for flag in page["flags"]:
            counts[flag] = counts.get(flag, 0) + 1
    return counts


def bench_station(corpus: Corpus, work: Path, workers: int, raw: dict[str, Any], notes: list[str]) -> StationRun:
    """One station run on the corpus; its figures go into ``raw`` (``metrics``: the report's)."""
    log(f"{corpus.kind}: station with {workers} worker(s), {len(corpus.pages)} pages as {corpus.batch}")
    load = os.getloadavg()[0]
    run = run_station(work / corpus.kind / f"station-w{workers}", corpus.pages, workers, name=corpus.batch)
    label = f"{corpus.kind}, {station_label(workers)}"
    notes.append(f"{label}: batch {run.batch['state']} in {run.seconds:.1f} s; page flags {_flag_counts(run.batch)}.")
    result = score(corpus, run.pdf, label, notes)
    count = len(corpus.pages)
    blanks = station_blank_files(run.batch)
    metrics = run_metrics(count, run.seconds, run.pdf, result, run.memory, kind=corpus.kind)
    if corpus.kind == FORMS:
        metrics["blank_pages"] = len(blanks)
    else:
        metrics["blank_precision"], metrics["blank_recall"] = blank_scores(corpus.truth, blanks)
    metrics["flagged_pages"] = len(flagged_pages(run.batch["page_list"]).pages)
    raw[f"station_w{workers}"] = {"load_average_before": load, "run": asdict(run), "score": result, "metrics": metrics}
    return run


def bench_ocrmypdf(corpus: Corpus, work: Path, raw: dict[str, Any], notes: list[str]) -> Metrics:
    log(f"{corpus.kind}: ocrmypdf --jobs {JOBS}, {len(corpus.pages)} pages")
    load = os.getloadavg()[0]
    run = run_ocrmypdf(work / corpus.kind / "ocrmypdf", corpus.pages)
    result = score(corpus, run.pdf, f"{corpus.kind}, ocrmypdf", notes)
    count = len(corpus.pages)
    metrics = run_metrics(count, run.seconds, run.pdf, result, run.memory, memory_share=JOBS, kind=corpus.kind)
    if corpus.kind == SYNTHETIC:
        metrics["blank_precision"], metrics["blank_recall"] = blank_scores(corpus.truth, [])  # it flags none
    metrics["img2pdf_seconds"] = run.img2pdf_seconds
    raw["ocrmypdf"] = {"load_average_before": load, "run": asdict(run), "score": result, "metrics": metrics}
    return metrics


def bench_corpus(
    corpus: Corpus, args: argparse.Namespace, work: Path, raw: dict[str, Any], notes: list[str], ocr: list[str]
) -> CorpusRun:
    """The corpus through the station at each worker count, then through ocrmypdf."""
    part: dict[str, Any] = {"corpus": corpus.summary()}
    raw[corpus.kind] = part
    runs = {w: bench_station(corpus, work, w, part, notes) for w in args.workers}
    reference = None if args.skip_ocrmypdf else bench_ocrmypdf(corpus, work, part, notes)
    for run in runs.values():
        ocr += [line for line in ocr_reports(run.reports) if line not in ocr]
    first = runs[args.workers[0]].batch["page_list"]
    profile, flagged = stage_profile(first), flagged_pages(first)
    part["profile"], part["flagged"] = asdict(profile), asdict(flagged)
    station = {w: part[f"station_w{w}"]["metrics"] for w in runs}
    states = {w: run.batch["state"] for w, run in runs.items()}
    return CorpusRun(corpus.kind, corpus.summary(), station, reference, states, profile, flagged)


def benchmark(args: argparse.Namespace, work: Path) -> tuple[Report, dict[str, Any]]:
    kinds = [args.only] if args.only else list(KINDS)
    forms = forms_corpus(args) if FORMS in kinds else None  # before anything runs: a missing corpus stops at once
    notes: list[str] = []
    ocr: list[str] = []
    raw: dict[str, Any] = {"args": vars(args), "machine": machine()}
    started = time.monotonic()
    runs: dict[str, CorpusRun] = {}
    for kind in kinds:
        corpus = forms if kind == FORMS and forms is not None else prepare_corpus(args, work)
        runs[kind] = bench_corpus(corpus, args, work, raw, notes, ocr)
    log(f"finished in {(time.monotonic() - started) / 60:.1f} min")
    raw["notes"], raw["station_ocr"] = notes, ocr
    return Report(raw["machine"], runs, JOBS, ocr, notes), raw


def write_results(out: Path, text: str, raw: dict[str, Any], stem: str = "latest") -> None:
    """The report as ``out/STEM.md`` and every raw figure as ``out/STEM.json``."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    md.write_text(text, encoding="utf-8")
    js.write_text(json.dumps(raw, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    log(f"wrote {md} and {js}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcome = tools.in_work_folder("scanstation-bench-", args.keep, lambda work: benchmark(args, work))
    if outcome is None:
        return 1
    report, raw = outcome
    text = render(report)
    print(text, end="")
    raw["targets"] = [
        {"corpus": kind, "target": name, "pass": ok, "value": value}
        for kind, run in report.runs.items()
        for name, ok, value in targets(run)
    ]
    write_results(args.out, text, raw)
    return 0
