"""Tesseract, the one place it is called from: version check, and thread limit for every call."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from workers.errors import MissingProgram

MIN_VERSION = (4, 1)


def version() -> tuple[int, int]:
    """Tesseract's version, or MissingProgram saying what to install."""
    exe = shutil.which(os.environ.get("SCANSTATION_TESSERACT", "tesseract"))
    if exe is None:
        raise MissingProgram(
            "tesseract is not installed: run 'make run' or 'apt-get install tesseract-ocr tesseract-ocr-chi-sim'."
        )
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"tesseract\s+v?(\d+)\.(\d+)", out.stdout + out.stderr)
    if not match:
        raise MissingProgram(f"Cannot read tesseract's version from {out.stdout + out.stderr!r}.")
    found = (int(match.group(1)), int(match.group(2)))
    if found < MIN_VERSION:
        raise MissingProgram(f"tesseract {found} is too old; {MIN_VERSION} or newer is needed.")
    return found


def _list_langs() -> str:
    exe = os.environ.get("SCANSTATION_TESSERACT", "tesseract")
    return subprocess.run([exe, "--list-langs"], capture_output=True, text=True, check=False).stdout


def languages() -> set[str]:
    return {line.strip() for line in _list_langs().splitlines()[1:] if line.strip()}


def tessdata_dir() -> Path:
    """Where Tesseract reads its language data (it says so on the first line of --list-langs)."""
    match = re.search(r'"([^"]+)"', _list_langs())
    if not match:
        raise MissingProgram("Cannot find Tesseract's tessdata folder from 'tesseract --list-langs'.")
    return Path(match.group(1))


def check(langs: str) -> None:
    """Fail early, with what to install, if tesseract or one of its languages is missing."""
    version()
    missing = set(langs.split("+")) - languages()
    if missing:
        pkgs = " ".join(f"tesseract-ocr-{m.replace('_', '-')}" for m in sorted(missing))
        raise MissingProgram(f"Tesseract language data missing: {', '.join(sorted(missing))}; apt-get install {pkgs}.")


def single_thread_env() -> None:
    """One OpenMP thread per Tesseract: 4-5x faster per page when several pages run side by side."""
    os.environ["OMP_THREAD_LIMIT"] = "1"
