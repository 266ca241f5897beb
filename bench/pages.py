"""CPU seconds per page through the page pipeline, one thread, as a worker runs it.

    python -m bench.pages PAGE... [--repeat 2] [--fork] [--json OUT]

A quick check of the imaging and OCR dependencies (numpy, OpenCV, onnxruntime) before a new lock is
committed: run it in the old and the new environment on the same pages and compare. CPU time (user +
system, from getrusage) barely moves when other processes load the machine; wall time does. Each page
is run ``--repeat`` times and the best is kept. The text read is printed as a digest so two
environments can be checked to read the same. With ``--fork`` each page runs in a forked child, as
RQ runs each page job in a work horse forked from the warmed-up worker; the child's CPU time is counted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import psutil

from ocr_models.base import OcrEngine
from ocr_models.registry import build_engine
from ocr_models.runtime import DEFAULT_RUNTIME, RUNTIMES
from workers.exec import tesseract
from workers.pipeline import process_page_image, warm_up

VERSIONS = ("numpy", "opencv-python", "onnxruntime", "openvino", "rapidocr-onnxruntime", "pillow")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mib(usage: resource.struct_rusage) -> float:
    return usage.ru_maxrss / 1024  # kB on Linux


def run_page(page: Path, engine: OcrEngine) -> tuple[float, float, float, str]:
    """CPU seconds, wall seconds, the process's peak memory (MiB) and the text of one page, in this process."""
    c0, w0 = cpu_seconds(), time.perf_counter()
    outcome = process_page_image(page, 0, engine=engine, max_pixels=10**9, render_dpi=300, min_confidence=60)
    peak = peak_mib(resource.getrusage(resource.RUSAGE_SELF))
    return cpu_seconds() - c0, time.perf_counter() - w0, peak, outcome.text.text


def run_page_forked(page: Path, engine: OcrEngine) -> tuple[float, float, float, str]:
    """The same in a forked child, as a work horse: its whole CPU time (fork, copy-on-write faults)."""
    w0 = time.perf_counter()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        code = 0
        try:
            text = run_page(page, engine)[3]
            with os.fdopen(write, "wb") as out:
                out.write(text.encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        text = inp.read().decode()
    _, status, usage = os.wait4(pid, 0)
    if status:
        raise RuntimeError(f"{page}: the child failed (status {status})")
    return usage.ru_utime + usage.ru_stime, time.perf_counter() - w0, peak_mib(usage), text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fork", action="store_true", help="each page in a forked child, as RQ runs it")
    parser.add_argument("--json", type=Path, help="write every figure and the text read here")
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME, help="what runs PP-OCR's models")
    args = parser.parse_args(argv)
    tesseract.single_thread_env()
    cv2.setNumThreads(1)  # as the worker does: one page, one core
    engine = build_engine("rapidocr", languages="", timeout=600, runtime=args.runtime)
    with tempfile.TemporaryDirectory() as tmp:
        warm_up(engine, Path(tmp))  # session set-up is paid once per worker, not per page
    gc.collect()  # and, as the worker does, the warm-up's freed memory goes back before the pages
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    versions = {name: metadata.version(name) for name in VERSIONS}
    worker = psutil.Process().memory_info().rss / 2**20
    print(" ".join(f"{k}={v}" for k, v in versions.items()), f"runtime={args.runtime}", flush=True)
    print(f"warmed-up process: {worker:.0f} MiB RSS", flush=True)
    rows: list[dict[str, Any]] = []
    for page in args.pages:
        cpu, wall, peak, text = [], [], 0.0, ""
        for _ in range(args.repeat):
            c, w, m, text = (run_page_forked if args.fork else run_page)(page, engine)
            cpu.append(c)
            wall.append(w)
            peak = max(peak, m)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        rows.append({"page": page.name, "cpu": min(cpu), "wall": min(wall), "peak_mib": peak, "text": text})
        line = f"{page.name}\tcpu {min(cpu):.2f} s\twall {min(wall):.2f} s\tpeak {peak:.0f} MiB\t{len(text)} chars"
        print(f"{line}\t{digest}", flush=True)
    total_cpu = sum(r["cpu"] for r in rows)
    total_wall = sum(r["wall"] for r in rows)
    print(f"total\tcpu {total_cpu:.2f} s\twall {total_wall:.2f} s\t{len(rows)} pages")
    if args.json:
        report = {"versions": versions, "runtime": args.runtime, "fork": args.fork, "worker_mib": worker, "pages": rows}
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
