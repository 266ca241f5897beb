"""Peak memory of process trees, sampled with psutil from a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import psutil

MIB = 1024 * 1024
INTERVAL = 0.2  # seconds between samples
PSS_EVERY = 10  # PSS at every 10th sample only: reading it costs ~5 ms per large process


@dataclass
class Peak:
    """The largest sum, over one process tree, seen in any one sample (bytes)."""

    rss: int = 0
    pss: int = 0

    def update(self, rss: int, pss: int | None) -> None:
        self.rss = max(self.rss, rss)
        if pss is not None:
            self.pss = max(self.pss, pss)


@dataclass(frozen=True)
class Sample:
    """One reading of one tree (bytes): ``at`` is ``time.monotonic()``, ``root_rss`` the root process alone."""

    at: float
    root: int  # pid
    rss: int
    pss: int | None  # None where PSS was not read
    root_rss: int


def tree_memory(root: psutil.Process, with_pss: bool) -> tuple[int, int | None, int]:
    """RSS (and PSS if asked) summed over a process and all its descendants, and the root's own RSS;
    vanished processes count 0."""
    rss = pss = root_rss = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, None, 0
    for proc in procs:
        try:
            info = proc.memory_full_info() if with_pss else proc.memory_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", 0)
        if proc is root:
            root_rss = info.rss
    return rss, pss if with_pss else None, root_rss


@dataclass
class TreeSampler:
    """Every ``interval`` s, the memory of each tree ``roots()`` names; ``peaks`` by root pid.

    RSS at every sample, PSS (costly) at every ``pss_every``-th; with ``record``, every reading is kept in
    ``series`` too (a scale run follows memory over time). Use as a context manager around the work.
    """

    roots: Callable[[], list[psutil.Process]]
    interval: float = INTERVAL
    pss_every: int = PSS_EVERY
    record: bool = False
    series: list[Sample] = field(default_factory=list)
    peaks: dict[int, Peak] = field(default_factory=dict)
    samples: int = 0
    busy_seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        started = time.thread_time()  # CPU the sampler costs, not time waiting for a core
        try:
            roots = self.roots()
        except psutil.Error:
            roots = []
        with_pss = self.samples % self.pss_every == 0
        at = time.monotonic()
        for root in roots:
            rss, pss, root_rss = tree_memory(root, with_pss)
            self.peaks.setdefault(root.pid, Peak()).update(rss, pss)
            if self.record and rss:  # 0: the process was gone
                self.series.append(Sample(at, root.pid, rss, pss, root_rss))
        self.samples += 1
        self.busy_seconds += time.thread_time() - started

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def max_peak(self) -> Peak:
        """The largest peak over all trees (the worst worker)."""
        return Peak(
            rss=max((p.rss for p in self.peaks.values()), default=0),
            pss=max((p.pss for p in self.peaks.values()), default=0),
        )

    def summary(self) -> dict[str, object]:
        return {
            "interval_s": self.interval,
            "pss_interval_s": self.interval * self.pss_every,
            "samples": self.samples,
            "mean_sample_cpu_ms": 1000 * self.busy_seconds / max(1, self.samples),
            "peak_mib_by_root_pid": {pid: {"rss": p.rss / MIB, "pss": p.pss / MIB} for pid, p in self.peaks.items()},
        }
