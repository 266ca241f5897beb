"""The programs the benchmark calls: the venv's commands, ``../shared/tools`` and version probes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin when run as `.venv/bin/python -m bench`


T = TypeVar("T")


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """Something the benchmark cannot go on without; the message says what."""


def shared_dir() -> Path:
    return Path(os.environ.get("SCANSTATION_SHARED") or REPO.parent / "shared")


def venv_command(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise BenchError(f"{path} is missing: run 'make deps' first.")
    return str(path)


def _shared_tool(name: str) -> str:
    path = shared_dir() / "tools" / name
    if not path.exists():
        raise BenchError(f"{path} is missing: put shared/ beside the repository or set SCANSTATION_SHARED.")
    return str(path)


def make_corpus(out: Path, pages: int, seed: int) -> None:
    """``make_corpus.py``: writes ``out/pages/*`` and ``out/truth.json``."""
    cmd = [sys.executable, _shared_tool("make_corpus.py"), "--out", str(out), "--pages", str(pages)]
    subprocess.run([*cmd, "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)


def score_pdf(truth: Path, pdf: Path) -> dict[str, float | int | None]:
    """``score_pdf.py --json``: pages, CER, residual skew and pages left turned of one PDF."""
    cmd = [sys.executable, _shared_tool("score_pdf.py"), str(truth), str(pdf), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"score_pdf.py failed on {pdf.name}: {done.stderr.strip()[-2000:]}")
    result: dict[str, float | int | None] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def score_text(corpus: Path, pdf: Path) -> dict[str, Any]:
    """``score_text.py CORPUS OUT.pdf --json``: character-bag recall and precision, segment recall (exact
    and near), CER in the guessed reading order, and the same per page, of a PDF made from a real corpus."""
    cmd = [sys.executable, _shared_tool("score_text.py"), str(corpus), str(pdf), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"score_text.py failed on {pdf.name}: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def first_line(cmd: list[str]) -> str:
    """The first line a ``--version`` prints, or why there is none."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as err:
        return f"unavailable ({err})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def kill_tree(pid: int) -> None:
    """SIGKILL a process we started and every descendant it has now."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            continue


def in_work_folder(prefix: str, keep: bool, run: Callable[[Path], T]) -> T | None:
    """Run ``run`` in a fresh temporary folder; None (the error logged) on a BenchError. The folder is
    removed afterwards unless ``keep``, or unless the run failed and left something worth a look."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    finished = False
    try:
        result = run(work)
        finished = True
        return result
    except BenchError as err:
        log(str(err))
        return None
    finally:
        if keep or (not finished and any(work.iterdir())):
            log(f"working folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
