"""Summaries of one batch's pages from ``GET /api/batches/{id}``: the per-stage CPU profile, the pages
flagged for review, and what the station says about its OCR (pure, no timing: tests/test_bench_summary.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

OCR_WORDS = ("ocr", "runtime", "engine")  # keys of the station's own reports that may name its OCR


@dataclass(frozen=True)
class StageRow:
    name: str  # as in details.seconds: "ocr", or "ocr.detect" for a part of the stage "ocr"
    depth: int  # 0 for a stage; 1 for a part of a stage, 2 for a part of a part
    mean_seconds: float  # CPU seconds per profiled page (a page the stage did not run on counts 0)
    share: float  # of the mean total of the stages (parts are inside their stage, not added again)


@dataclass(frozen=True)
class Profile:
    pages: int  # pages that have details.seconds
    total_seconds: float  # mean CPU seconds per page over the stages
    rows: list[StageRow]  # stages in the order they first ran, each followed by its parts


def _page_seconds(page: dict[str, Any]) -> dict[str, float] | None:
    details = page.get("details") or {}
    seconds = details.get("seconds") if isinstance(details, dict) else None
    if not isinstance(seconds, dict):
        return None
    return {str(k): float(v) for k, v in seconds.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _owner(name: str, names: Iterable[str]) -> str | None:
    """The nearest stage ``name`` is a part of: "ocr.read.rec" belongs to "ocr.read" if that is timed,
    else to "ocr"; None for a stage of its own (no dot, or nothing timed under any of its prefixes)."""
    known = set(names)
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in known:
            return prefix
    return None


def stage_profile(page_list: list[dict[str, Any]]) -> Profile:
    """Mean CPU seconds per page of every stage named in the pages' ``details.seconds``, whatever names
    they are: a name with a dot is a part of the stage before the dot, shown under it, not extra time."""
    timed = [s for s in (_page_seconds(p) for p in page_list) if s is not None]
    sums: dict[str, float] = {}
    for seconds in timed:
        for name, value in seconds.items():
            sums[name] = sums.get(name, 0.0) + value
    owners = {name: _owner(name, sums) for name in sums}
    total = sum(v for name, v in sums.items() if owners[name] is None)
    rows: list[StageRow] = []

    def emit(name: str, depth: int) -> None:
        mean = sums[name] / len(timed)
        rows.append(StageRow(name, depth, mean, sums[name] / total if total else 0.0))
        for child in (n for n, owner in owners.items() if owner == name):
            emit(child, depth + 1)

    for name in (n for n, owner in owners.items() if owner is None):
        emit(name, 0)
    return Profile(len(timed), total / len(timed) if timed else 0.0, rows)


@dataclass(frozen=True)
class Flagged:
    pages: list[tuple[str, list[str]]]  # (file, its flags) of every page with at least one flag, in seq order
    by_flag: dict[str, int]  # pages per flag
    of: int  # pages in the batch


def _file(page: dict[str, Any]) -> str:
    return str(page.get("source_file") or str(page.get("source", "?")).rsplit("#", 1)[0])


def flagged_pages(page_list: list[dict[str, Any]]) -> Flagged:
    """Pages the station flagged for a person (any flag in ``flags``)."""
    pages = sorted(page_list, key=lambda p: p.get("seq", 0))
    flagged = [(_file(p), list(p["flags"])) for p in pages if p.get("flags")]
    by_flag: dict[str, int] = {}
    for _, flags in flagged:
        for flag in flags:
            by_flag[flag] = by_flag.get(flag, 0) + 1
    return Flagged(flagged, dict(sorted(by_flag.items())), len(page_list))


def ocr_reports(docs: dict[str, Any]) -> list[str]:
    """``path=value`` for every plain value under a key naming OCR, a runtime or an engine in what the
    station reports about itself (``/healthz``, ``/api/station``): whatever it calls them."""
    found: list[str] = []

    def walk(value: Any, path: str, inside: bool) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                named = inside or any(word in str(key).lower() for word in OCR_WORDS)
                walk(sub, f"{path}.{key}" if path else str(key), named)
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                walk(sub, f"{path}[{i}]", inside)
        elif inside and value is not None:
            found.append(f"{path}={value}")

    walk(docs, "", False)
    return found
