"""A scale run summarised: pages accounted for, time and memory per block of pages, and whether they stay flat.

Pure functions on what a run recorded (page completion times, memory samples, the batch as the API
returns it), so they can be checked without running a station.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.memory import MIB, Sample

TIME_TOLERANCE = 0.15  # the last block's seconds/page within 15 % of the first block's
MEMORY_TOLERANCE = 0.10  # the last block's memory within 10 % of the first block's ...
MEMORY_FLOOR = 50 * MIB  # ... or within 50 MiB, whichever is larger


@dataclass
class WorkerMemory:
    """One worker over one block (bytes): the highest tree RSS and PSS seen, and the worker process alone."""

    samples: int = 0
    rss_peak: int = 0  # the worker and its descendants (work horse, Tesseract), the highest sum
    pss_peak: int | None = None  # the same in PSS, from the samples that read it
    worker_rss: int = 0  # the RQ worker process alone, the highest seen: what a leak there would grow

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.rss_peak = max(self.rss_peak, sample.rss)
        self.worker_rss = max(self.worker_rss, sample.root_rss)
        if sample.pss is not None:
            self.pss_peak = max(self.pss_peak or 0, sample.pss)


# The figures the verdict compares; PSS is reported only (read every few samples, it may miss a peak).
MEMORY_FIGURES: dict[str, Callable[[WorkerMemory], float]] = {
    "rss_peak": lambda m: m.rss_peak,
    "worker_rss": lambda m: m.worker_rss,
}


@dataclass
class Block:
    """Pages ``first``..``last`` in the order they were finished (from 1), and their time and memory."""

    index: int  # from 1
    first: int
    last: int
    start: float  # seconds from the drop: the previous block's last page finished (block 1: its own first)
    end: float  # seconds from the drop: this block's last page finished
    seconds_per_page: float | None  # None: block 1 of a single page, nothing to divide
    full: bool  # False for a shorter last block, which the verdict leaves out
    memory: dict[int, WorkerMemory] = field(default_factory=dict)  # by worker pid

    @property
    def pages(self) -> int:
        return self.last - self.first + 1


def split_blocks(finished: list[float], size: int, samples: list[Sample] | None = None) -> list[Block]:
    """Blocks of ``size`` pages in the order they were finished, from page completion times (seconds
    from the drop, any order) and memory samples (``at`` in seconds from the drop).

    Block 1's time runs from its first page's completion, so the station's start (intake, the first
    page on each worker) is not counted as a page's time: its seconds/page is over ``size - 1``
    intervals. Each block's memory is every sample from the previous block's end (block 1: the drop)
    to its own end; a sample on a boundary counts in both.
    """
    if size < 1:
        raise ValueError(f"block size must be at least 1, not {size}")
    times = sorted(finished)
    blocks = []
    for start_rank in range(0, len(times), size):
        end_rank = min(start_rank + size, len(times))
        index = start_rank // size + 1
        if index == 1:
            start, intervals = times[0], end_rank - 1
        else:
            start, intervals = times[start_rank - 1], end_rank - start_rank
        end = times[end_rank - 1]
        per_page = (end - start) / intervals if intervals else None
        block = Block(index, start_rank + 1, end_rank, start, end, per_page, end_rank - start_rank == size)
        window_start = 0.0 if index == 1 else start
        for sample in samples or []:
            if window_start <= sample.at <= end:
                block.memory.setdefault(sample.root, WorkerMemory()).add(sample)
        blocks.append(block)
    return blocks


@dataclass
class Comparison:
    """One figure, first full block against last: the change and whether it is within tolerance."""

    figure: str
    first: float
    last: float
    allowed: float  # the largest change that is still flat, in the figure's unit
    flat: bool

    @property
    def change(self) -> float:
        """last / first - 1 (0 when first is 0)."""
        return self.last / self.first - 1 if self.first else 0.0


@dataclass
class Verdict:
    """Flat or not, by the first and last full blocks; ``flat`` is None with fewer than two full blocks."""

    first_block: int | None
    last_block: int | None
    time: Comparison | None
    memory: dict[int, list[Comparison]]  # by worker pid: one comparison per figure in MEMORY_FIGURES
    missing_workers: list[int]  # pids seen in only one of the two blocks (a worker restarted)

    @property
    def time_flat(self) -> bool | None:
        return None if self.time is None else self.time.flat

    @property
    def memory_flat(self) -> bool | None:
        if self.first_block is None:
            return None
        return bool(self.memory) and not self.missing_workers and all(c.flat for cs in self.memory.values() for c in cs)

    @property
    def flat(self) -> bool | None:
        if self.time_flat is None or self.memory_flat is None:
            return None
        return self.time_flat and self.memory_flat


def _compare(figure: str, first: float, last: float, tolerance: float, floor: float = 0.0) -> Comparison:
    allowed = max(tolerance * first, floor)
    return Comparison(figure, first, last, allowed, abs(last - first) <= allowed)


def verdict(blocks: list[Block]) -> Verdict:
    """Time per page within TIME_TOLERANCE, and each worker's memory within MEMORY_TOLERANCE or
    MEMORY_FLOOR (whichever allows more), from the first full block to the last."""
    full = [b for b in blocks if b.full and b.seconds_per_page is not None]
    if len(full) < 2:
        return Verdict(None, None, None, {}, [])
    first, last = full[0], full[-1]
    assert first.seconds_per_page is not None and last.seconds_per_page is not None
    time = _compare("seconds_per_page", first.seconds_per_page, last.seconds_per_page, TIME_TOLERANCE)
    memory: dict[int, list[Comparison]] = {}
    for pid in sorted(first.memory.keys() & last.memory.keys()):
        a, b = first.memory[pid], last.memory[pid]
        memory[pid] = [
            _compare(name, read(a), read(b), MEMORY_TOLERANCE, MEMORY_FLOOR) for name, read in MEMORY_FIGURES.items()
        ]
    missing = sorted(first.memory.keys() ^ last.memory.keys())
    return Verdict(first.index, last.index, time, memory, missing)


def account_pages(files: list[str], page_list: list[dict[str, Any]], pdf_pages: int | None) -> dict[str, Any]:
    """Pages in against pages in the catalogue and in the PDF.

    ``files``: the corpus's page files (one page each); ``page_list``: ``GET /api/batches/{id}``'s
    pages (``seq``, ``state``, ``blank``, ``flags``, ``source_file``). A page is lost when no catalogue
    page comes from its file; ``seq`` must run 1..n, each once; the PDF must hold every done page
    that is neither blank nor a separator sheet.
    """
    names = Counter(Path(f).name for f in files)
    sources = Counter(Path(p["source_file"]).name for p in page_list)
    seqs = Counter(int(p["seq"]) for p in page_list)
    done = [p for p in page_list if p["state"] == "done"]
    blank = sum(1 for p in done if p["blank"])
    separators = sum(1 for p in done if not p["blank"] and "separator" in p["flags"])
    in_pdf_expected = len(done) - blank - separators
    lost = sorted((names - sources).elements())
    return {
        "pages_in": len(files),
        "in_catalogue": len(page_list),
        "done": len(done) - blank,  # done and not blank
        "blank": blank,
        "failed": sum(1 for p in page_list if p["state"] == "failed"),
        "unfinished": sum(1 for p in page_list if p["state"] not in ("done", "failed")),
        "separators": separators,
        "lost": lost,
        "unexpected": sorted((sources - names).elements()),  # catalogue pages from no corpus file, or twice
        "seq_each_once": sorted(seqs) == list(range(1, len(page_list) + 1)),  # n distinct seqs for n pages
        "pdf_pages": pdf_pages,
        "pdf_expected": in_pdf_expected,
        "pdf_plus_left_out": None if pdf_pages is None else pdf_pages + blank + separators,
    }


def pages_ok(account: dict[str, Any]) -> bool:
    """Nothing lost or doubled, every page done (or blank), and the PDF holds every page it should."""
    return (
        not account["lost"]
        and not account["unexpected"]
        and account["seq_each_once"]
        and account["in_catalogue"] == account["pages_in"]
        and account["failed"] == 0
        and account["unfinished"] == 0
        and account["pdf_pages"] == account["pdf_expected"]
    )
