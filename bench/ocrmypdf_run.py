"""The reference: ocrmypdf on the same pages, combined into one PDF by img2pdf."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import img2pdf
import psutil

from bench.memory import Peak, TreeSampler
from bench.tools import BenchError, kill_tree, venv_command

JOBS = 2
TIMEOUT = 30 * 60.0
ARGS = ["-l", "chi_sim+eng", "--deskew", "--rotate-pages", "--output-type", "pdfa", "--jobs", str(JOBS)]


@dataclass
class OcrmypdfRun:
    command: list[str]
    img2pdf_seconds: float  # not part of the pages/min: the station is given image files too
    seconds: float
    pdf: Path
    memory: Peak  # the whole ocrmypdf process tree
    sampler: dict[str, object]


def combine(pages: list[Path], dest: Path) -> float:
    """One input PDF, one page per image at the image's own resolution; the seconds it took."""
    started = time.monotonic()
    dest.write_bytes(img2pdf.convert([str(p) for p in pages]))
    return time.monotonic() - started


def run_ocrmypdf(root: Path, pages: list[Path]) -> OcrmypdfRun:
    root.mkdir(parents=True, exist_ok=True)
    source, out = root / "in.pdf", root / "ocrmypdf.pdf"
    combine_seconds = combine(pages, source)
    cmd = [venv_command("ocrmypdf"), *ARGS, str(source), str(out)]
    with (root / "ocrmypdf.log").open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        root_proc = psutil.Process(proc.pid)
        with TreeSampler(lambda: [root_proc]) as sampler:
            try:
                code = proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait()
                raise BenchError(f"ocrmypdf not finished after {TIMEOUT / 60:.0f} min") from None
        seconds = time.monotonic() - started
    if code != 0:
        tail = (root / "ocrmypdf.log").read_text(errors="replace")[-2000:]
        raise BenchError(f"ocrmypdf exited with {code}:\n{tail}")
    return OcrmypdfRun(cmd, combine_seconds, seconds, out, sampler.max_peak(), sampler.summary())
