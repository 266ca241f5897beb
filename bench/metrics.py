"""The figures the report compares, derived from one run's time, PDF, score and memory."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pikepdf

from bench.memory import MIB, Peak

Metrics = dict[str, float | None]


def pdf_pages(pdf: Path) -> int:
    with pikepdf.open(pdf) as doc:
        return len(doc.pages)


def blank_scores(truth: list[dict[str, Any]], flagged: Iterable[str]) -> tuple[float | None, float | None]:
    """Precision and recall of the files flagged blank against truth.json (None where undefined)."""
    blanks = {Path(e["file"]).name for e in truth if e["blank"]}
    flagged_names = {Path(name).name for name in flagged}
    hits = len(blanks & flagged_names)
    precision = hits / len(flagged_names) if flagged_names else None
    recall = hits / len(blanks) if blanks else None
    return precision, recall


def station_blank_files(batch: dict[str, Any]) -> list[str]:
    """Originals of the pages the station flagged blank; ``source`` reads ``name#page``."""
    return [p["source"].rsplit("#", 1)[0] for p in batch["page_list"] if p["blank"] or "blank" in p["flags"]]


SYNTHETIC, FORMS = "synthetic", "forms"
KINDS = (SYNTHETIC, FORMS)  # in the order they run
# The scorer's figures each kind of corpus reports, by the report's name: score_pdf.py's on a synthetic
# corpus, score_text.py's on a real one with labels (the forms).
SCORE_KEYS: dict[str, dict[str, str]] = {
    SYNTHETIC: {
        "cer": "cer",
        "skew_mean": "skew_mean_abs_deg",
        "skew_max": "skew_max_abs_deg",
        "pages_turned": "pages_turned",
        "pages_unmatched": "pages_unmatched",
    },
    FORMS: {
        "char_recall": "bag_recall",
        "char_precision": "bag_precision",
        "segment_exact": "segment_recall_exact",
        "segment_near": "segment_recall_near",
        "cer": "cer_ordered",
    },
}


def run_metrics(
    pages: int,
    seconds: float,
    pdf: Path | None,
    score: dict[str, Any] | None,
    memory: Peak,
    memory_share: int = 1,
    kind: str = SYNTHETIC,
) -> Metrics:
    """Figures common to the station and ocrmypdf, with the scorer's for a corpus of ``kind``
    (SCORE_KEYS); ``memory_share`` divides a shared tree's peak (jobs)."""
    score = score or {}
    return {
        **common_metrics(pages, seconds, pdf, memory, memory_share),
        **{name: score.get(key) for name, key in SCORE_KEYS[kind].items()},
    }


def common_metrics(pages: int, seconds: float, pdf: Path | None, memory: Peak, memory_share: int = 1) -> Metrics:
    count = pdf_pages(pdf) if pdf is not None else None
    return {
        "seconds": seconds,
        "pages_per_min": pages / (seconds / 60),
        "pdf_pages": count,
        "bytes_per_page": pdf.stat().st_size / count if pdf is not None and count else None,
        "peak_rss_mib": memory.rss / MIB / memory_share,
        "peak_pss_mib": memory.pss / MIB / memory_share,
    }
