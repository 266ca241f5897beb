"""``python -m bench scale``: one large batch through a real station; pages lost, and time and memory per
block of pages from the first block to the last. See bench/README.md."""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench import tools
from bench.blocks import (
    MEMORY_FLOOR,
    MEMORY_TOLERANCE,
    TIME_TOLERANCE,
    Block,
    Comparison,
    Verdict,
    account_pages,
    pages_ok,
    split_blocks,
    verdict,
)
from bench.memory import MIB, Sample, TreeSampler
from bench.metrics import pdf_pages
from bench.run import RESULTS, Corpus, log, machine, prepare_corpus, write_results
from bench.station import BATCH_NAME, StationRun, run_station
from scanner_service.archive.db import session_scope
from scanner_service.archive.models import Page, PageState
from scanner_service.settings import Settings

SAMPLE_SECONDS = 0.5  # memory: a 1,000-page run lasts ~20 min, a sample every 0.5 s is enough to follow it
PSS_EVERY = 4  # PSS every 2 s
POLL_SECONDS = 2.0  # each poll lists every page of the batch: keep the station's cost of being watched low
STEM = "scale"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument(
        "--pages", type=int, default=1000, help="text pages to generate (make_corpus.py adds ~1 blank per 10)"
    )
    parser.add_argument("--seed", type=int, default=2026, help="make_corpus.py seed")
    parser.add_argument("--block", type=int, default=100, help="pages per block, in the order they finish")
    parser.add_argument("--workers", type=int, default=2, help="workers of the station")
    parser.add_argument("--corpus", type=Path, help="an existing make_corpus.py output instead of a new one")
    parser.add_argument(
        "--timeout-min", type=float, help="give up on the batch after this (default: pages/5, at least 30)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the working folder (corpus, data, PDF, log)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where scale.md and scale.json go")
    args = parser.parse_args(argv)
    if args.block < 2 or args.workers < 1 or args.pages < 1:
        parser.error("--block must be at least 2, --workers and --pages at least 1")
    if args.timeout_min is None:
        args.timeout_min = max(30.0, args.pages / 5)
    return args


def _utc(moment: datetime) -> datetime:
    # SQLite hands timezone-aware columns back naive; the station writes them in UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def page_finish_times(data: Path, batch_id: int, dropped_at: datetime) -> dict[int, float]:
    """Seconds from the drop to each final page's last change in the station's catalogue, by seq.

    A page's row is last written when the worker marks it done or failed (assembly and filing read
    pages but do not change them), so ``updated_at`` is when the page finished.
    """
    url = Settings(data=data, database_url=None).effective_database_url
    query = select(Page.seq, Page.updated_at).where(
        Page.batch_id == batch_id, Page.state.in_((PageState.done, PageState.failed))
    )
    with session_scope(url) as session:
        return {seq: (_utc(at) - dropped_at).total_seconds() for seq, at in session.execute(query)}


def _folder_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += (Path(folder) / name).lstat().st_size
            except OSError:
                continue
    return total


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value / MIB:.0f}"


def _seconds(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _outcome(passed: bool | None) -> str:
    return "n/a " if passed is None else ("PASS" if passed else "MISS")


def _workers(blocks: list[Block]) -> list[int]:
    return sorted({pid for b in blocks for pid in b.memory})


def block_load(block: Block, progress: list[dict[str, Any]]) -> float | None:
    """The mean 1-minute load average polled during the block (block 1: from the drop)."""
    start = 0.0 if block.index == 1 else block.start
    loads = [p["load"] for p in progress if start <= p["at"] <= block.end]
    return sum(loads) / len(loads) if loads else None


def blocks_table(blocks: list[Block], progress: list[dict[str, Any]]) -> list[str]:
    pids = _workers(blocks)
    head = "| block | pages | finished by (s) | s/page | pages/min | load |"
    rule = "|--:|--:|--:|--:|--:|--:|"
    for n, _ in enumerate(pids, 1):
        head += f" w{n} RSS peak | w{n} PSS peak | w{n} worker alone |"
        rule += "--:|--:|--:|"
    lines = [head, rule]
    for b in blocks:
        rate = None if not b.seconds_per_page else 60 / b.seconds_per_page
        label = f"{b.index}" if b.full else f"{b.index} (partial)"
        cells = [label, f"{b.first}–{b.last}", f"{b.end:.1f}", _seconds(b.seconds_per_page), _seconds(rate, 1)]
        cells.append(_seconds(block_load(b, progress), 1))
        for pid in pids:
            m = b.memory.get(pid)
            cells += ["–"] * 3 if m is None else [_mib(m.rss_peak), _mib(m.pss_peak), _mib(m.worker_rss)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _comparison(c: Comparison, unit: str) -> str:
    scale, fmt = (MIB, "{:.0f}") if unit == "MiB" else (1.0, "{:.2f}")
    first, last, allowed = (fmt.format(v / scale) for v in (c.first, c.last, c.allowed))
    return f"{first} → {last} {unit} ({100 * c.change:+.1f} %, allowed ±{allowed} {unit})"


def verdict_lines(v: Verdict, pids: list[int]) -> list[str]:
    if v.first_block is None or v.time is None:
        return ["- n/a  fewer than two full blocks: nothing to compare (a bigger --pages or a smaller --block)."]
    lines = [
        f"- {_outcome(v.time_flat)} time per page flat, block {v.first_block} → block {v.last_block}: "
        + _comparison(v.time, "s")
    ]
    for pid, comparisons in v.memory.items():
        label = f"w{pids.index(pid) + 1}"
        for c in comparisons:
            what = "RSS peak (worker and work horse)" if c.figure == "rss_peak" else "RSS of the worker alone"
            lines.append(f"- {_outcome(c.flat)} {label} {what} flat: " + _comparison(c, "MiB"))
    if v.missing_workers:
        lines.append(f"- MISS workers seen in only one of the two blocks (restarted?): pids {v.missing_workers}")
    lines.append(f"- {_outcome(v.flat)} **flat** (time and memory)")
    return lines


def render(raw: dict[str, Any], blocks: list[Block], v: Verdict) -> str:
    mc, co, acc, tl = raw["machine"], raw["corpus"], raw["pages"], raw["timeline"]
    args = raw["args"]
    pdf = "–" if acc["pdf_pages"] is None else str(acc["pdf_pages"])
    left_out = "–" if acc["pdf_plus_left_out"] is None else str(acc["pdf_plus_left_out"])
    lines = [
        f"# scanstation scale benchmark, {mc['date']}: {co['pages']} pages, blocks of {args['block']}",
        "",
        f"Machine: {mc['cpus']} CPUs, load average {mc['load_average']} at start, Python {mc['python']}, "
        f"{mc['tesseract']}; station settings from the environment: {', '.join(mc['station_env']) or 'none'}.",
        f"Corpus: {co['pages']} pages ({co['text_pages']} text, {co['blank_pages']} blank), {co['source']}"
        + (f", generated in {raw['corpus_seconds']:.0f} s." if raw["corpus_seconds"] is not None else "."),
        f"Station: {args['workers']} workers, one batch folder. Batch {raw['state']} {tl['final']:.1f} s after the "
        f"drop: first page finished at {tl['first_page']:.1f} s, last at {tl['last_page']:.1f} s, then "
        f"{tl['assembly']:.1f} s for the PDF and filing; {tl['pages_per_min']:.1f} pages/min over the whole batch. "
        f"Working folder at the end: {raw['work_bytes'] / 1e9:.2f} GB.",
        "",
        "## Pages",
        "",
        "| pages | count |",
        "|---|--:|",
        f"| dropped into the inbox | {acc['pages_in']} |",
        f"| in the catalogue | {acc['in_catalogue']} |",
        f"| – done (text) / blank / failed / unfinished | {acc['done']} / {acc['blank']} / {acc['failed']} / "
        f"{acc['unfinished']} |",
        f"| lost (a file with no catalogue page) | {len(acc['lost'])} |",
        f"| from no dropped file, or twice | {len(acc['unexpected'])} |",
        f"| seq 1..{acc['in_catalogue']}, each once | {'yes' if acc['seq_each_once'] else 'NO'} |",
        f"| in the batch PDF (pikepdf) / expected (done text pages) | {pdf} / {acc['pdf_expected']} |",
        f"| in the PDF + blank (and separator) pages left out | {left_out} |",
        "",
        f"- {_outcome(pages_ok(acc))} 0 pages lost: every dropped page once in the catalogue, done, and in the PDF "
        "unless blank",
        "",
        f"## Per block of {args['block']} pages, in the order they finished",
        "",
        *blocks_table(blocks, raw["progress"]),
        "",
        "Verdict, first full block against the last (time within "
        f"±{100 * TIME_TOLERANCE:.0f} %, memory within ±{100 * MEMORY_TOLERANCE:.0f} % or ±{MEMORY_FLOOR // MIB} MiB):",
        "",
        *verdict_lines(v, _workers(blocks)),
        "",
        "How: page finish times are the pages' `updated_at` in the station's catalogue, in seconds from the "
        "drop; block 1 is timed from its first page's finish (start-up apart), every later block from the "
        "previous block's last page. s/page is the station's (all workers together). Memory: psutil every "
        f"{SAMPLE_SECONDS} s (PSS every {SAMPLE_SECONDS * PSS_EVERY:.0f} s), per RQ worker wN; RSS and PSS "
        "peaks are the highest sums over the worker and its descendants (the work horse forked per page, "
        "Tesseract) seen during the block, 'worker alone' the RQ worker process's own RSS; MiB. load: the "
        "machine's 1-minute load average, polled with the batch's progress every "
        f"{POLL_SECONDS:.0f} s, mean over the block: on a shared machine, a change in s/page that follows "
        "the load is the machine, not the station.",
    ]
    return "\n".join(lines) + "\n"


def timeline(run: StationRun, finished: dict[int, float]) -> dict[str, float]:
    first, last = min(finished.values(), default=0.0), max(finished.values(), default=0.0)
    pages = len(run.batch["page_list"])
    return {
        "first_page": first,
        "last_page": last,
        "final": run.seconds,
        "assembly": run.seconds - last,
        "pages_per_min": pages / (run.seconds / 60) if run.seconds else 0.0,
        "seconds_per_page_after_first": (last - first) / (len(finished) - 1) if len(finished) > 1 else 0.0,
    }


def benchmark(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], list[Block], Verdict]:
    started = time.monotonic()
    corpus: Corpus = prepare_corpus(args, work)
    corpus_seconds = None if args.corpus else time.monotonic() - started
    raw: dict[str, Any] = {"args": vars(args), "machine": machine(), "corpus": corpus.summary()}
    raw["corpus_seconds"] = corpus_seconds
    progress: list[dict[str, Any]] = []

    def on_poll(batch: dict[str, Any]) -> None:
        # The load average says how much of the machine the station had (it is shared): noise to read beside s/page.
        progress.append({"at": time.monotonic(), "load": os.getloadavg()[0], "state": batch["state"], **batch["pages"]})

    sampler = TreeSampler(lambda: [], interval=SAMPLE_SECONDS, pss_every=PSS_EVERY, record=True)
    log(f"station with {args.workers} workers, {len(corpus.pages)} pages as batch {BATCH_NAME}")
    load = os.getloadavg()[0]
    run = run_station(
        work / "station", corpus.pages, args.workers, sampler=sampler,
        timeout=args.timeout_min * 60, poll=POLL_SECONDS, on_poll=on_poll,
    )  # fmt: skip
    log(f"batch {run.batch['state']} in {run.seconds:.1f} s")
    finished = page_finish_times(run.data, run.batch["id"], run.dropped_at)
    samples = [Sample(s.at - run.dropped, s.root, s.rss, s.pss, s.root_rss) for s in sampler.series]
    blocks = split_blocks(list(finished.values()), args.block, samples)
    result = verdict(blocks)
    count = pdf_pages(run.pdf) if run.pdf is not None else None
    raw.update(
        load_average_before=load,
        state=run.batch["state"],
        pages=account_pages([p.name for p in corpus.pages], run.batch["page_list"], count),
        timeline=timeline(run, finished),
        blocks=[asdict(b) for b in blocks],
        verdict={**asdict(result), "time_flat": result.time_flat, "memory_flat": result.memory_flat,
                 "flat": result.flat},
        finish_seconds_by_seq=dict(sorted(finished.items())),
        progress=[{**p, "at": p["at"] - run.dropped} for p in progress],
        memory_series={"columns": ["at_s", "worker_pid", "rss_mib", "pss_mib", "worker_alone_rss_mib"], "rows": [
            [round(s.at, 2), s.root, round(s.rss / MIB, 1), None if s.pss is None else round(s.pss / MIB, 1),
             round(s.root_rss / MIB, 1)] for s in samples]},
        sampler=run.sampler,
        batch={k: v for k, v in run.batch.items() if k != "page_list"},
        page_list=[{k: p[k] for k in ("seq", "state", "attempts", "blank", "flags", "source")}
                   for p in run.batch["page_list"]],
        work_bytes=_folder_bytes(work),
    )  # fmt: skip
    raw["pages_ok"] = pages_ok(raw["pages"])
    return raw, blocks, result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcome = tools.in_work_folder("scanstation-scale-", args.keep, lambda work: benchmark(args, work))
    if outcome is None:
        return 1
    raw, blocks, result = outcome
    text = render(raw, blocks, result)
    print(text, end="")
    write_results(args.out, text, raw, STEM)
    return 0
