"""The benchmark's summary of a batch and its targets: per-stage profile, flagged pages, the station's OCR
as it reports it, and issue 12's PASS/MISS lines (pure functions on made-up figures; nothing is timed)."""

from __future__ import annotations

from typing import Any

from bench.metrics import Metrics
from bench.report import FORMS, SYNTHETIC, CorpusRun, Report, render, targets
from bench.summary import flagged_pages, ocr_reports, stage_profile


def _page(seq: int, seconds: dict[str, float] | None, flags: list[str] | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"turn": 0} if seconds is None else {"turn": 0, "seconds": seconds}
    return {"seq": seq, "source_file": f"form_{seq:03d}.jpg", "flags": flags or [], "details": details}


def test_profile_means_shares_and_parts_under_their_stage() -> None:
    pages = [
        # The stopwatch writes a part before its stage ends: "ocr.detect" comes before "ocr".
        _page(1, {"load": 0.2, "ocr.detect": 0.5, "ocr.read": 1.0, "ocr": 1.8}),
        _page(2, {"load": 0.2, "ocr.detect": 0.3, "ocr.read": 1.2, "ocr": 1.8}),
        _page(3, {"load": 0.2, "blank": 0.2}),  # a blank page: no OCR, it counts 0 there
        _page(4, None),  # a page with no timing (failed, or from an older station) is left out
    ]
    profile = stage_profile(pages)
    assert profile.pages == 3
    rows = {row.name: row for row in profile.rows}
    assert [(row.name, row.depth) for row in profile.rows] == [
        ("load", 0),
        ("ocr", 0),
        ("ocr.detect", 1),
        ("ocr.read", 1),
        ("blank", 0),
    ]
    # Parts are inside their stage: the total is load + ocr + blank, not ocr twice.
    assert round(profile.total_seconds, 6) == round((0.6 + 3.6 + 0.2) / 3, 6)
    assert round(rows["ocr"].mean_seconds, 6) == 1.2 and round(rows["ocr.read"].mean_seconds, 6) == round(2.2 / 3, 6)
    assert round(sum(r.share for r in profile.rows if r.depth == 0), 6) == 1.0
    assert round(rows["ocr"].share, 4) == round(3.6 / 4.4, 4)


def test_profile_takes_any_stage_names() -> None:
    # A part of a part, a part whose stage was never timed, and a stage no one knew of before.
    pages = [_page(1, {"ocr.read.rec": 0.4, "ocr.read": 0.6, "ocr": 1.0, "layout.boxes": 0.3, "newstage": 0.5})]
    profile = stage_profile(pages)
    depths = {row.name: row.depth for row in profile.rows}
    assert depths == {"ocr": 0, "ocr.read": 1, "ocr.read.rec": 2, "layout.boxes": 0, "newstage": 0}
    assert round(profile.total_seconds, 6) == 1.8


def test_no_timed_page_gives_an_empty_profile() -> None:
    profile = stage_profile([_page(1, None)])
    assert profile.pages == 0 and profile.rows == [] and profile.total_seconds == 0.0


def test_flagged_pages_name_the_file_and_its_flags() -> None:
    pages = [
        _page(2, {}, ["low_confidence", "orientation_unsure"]),
        _page(1, {}),
        _page(3, {}, ["low_confidence"]),
    ]
    flagged = flagged_pages(pages)
    assert flagged.of == 3
    assert flagged.pages == [
        ("form_002.jpg", ["low_confidence", "orientation_unsure"]),
        ("form_003.jpg", ["low_confidence"]),
    ]
    assert flagged.by_flag == {"low_confidence": 2, "orientation_unsure": 1}


def test_ocr_reports_whatever_the_station_calls_it() -> None:
    docs = {
        "healthz": {"status": "ok", "workers": 2},
        "station": {"queue": {"workers": 2}, "ocr": {"engine": "rapidocr", "runtime": "onnxruntime 1.20"}},
    }
    assert ocr_reports(docs) == ["station.ocr.engine=rapidocr", "station.ocr.runtime=onnxruntime 1.20"]
    assert ocr_reports({"healthz": {"status": "ok"}, "station": "GET /api/station: HTTP 404"}) == []


def _forms_run(station: dict[int, dict[str, Any]], ocrmypdf: dict[str, Any] | None, flags: int) -> CorpusRun:
    pages = [
        _page(i, {"load": 0.1, "ocr.read": 0.8, "ocr": 1.0}, ["low_confidence"] if i <= flags else [])
        for i in range(1, 26)
    ]
    return CorpusRun(
        FORMS,
        {"pages": 25, "text_pages": 25, "blank_pages": 0, "source": "forms", "batch": "C015-WS·2013-Y-BGS-0002"},
        station,
        ocrmypdf,
        {w: "done" for w in station},
        stage_profile(pages),
        flagged_pages(pages),
    )


def _forms_metrics(pages_per_min: float, recall: float = 0.995, exact: float = 0.96) -> dict[str, Any]:
    return {"pages_per_min": pages_per_min, "seconds": 25 * 60 / pages_per_min, "char_recall": recall,
            "segment_exact": exact, "peak_rss_mib": 900.0}  # fmt: skip


def _outcomes(run: CorpusRun) -> dict[str, bool | None]:
    return {name: ok for name, ok, _ in targets(run)}


def test_forms_targets_pass_and_miss() -> None:
    run = _forms_run({2: _forms_metrics(36.0), 1: _forms_metrics(19.0)}, {"pages_per_min": 10.0}, flags=1)
    assert _outcomes(run) == {
        "pages/min ≥ 3× ocrmypdf's": True,
        "pages/min ≥ 30 with 2 workers": True,
        "character recall ≥ 99 %": True,
        "segment recall, exact ≥ 95 %": True,
        "at most 1 page of 25 flagged for review": True,
        "peak memory ≤ 1024 MiB per worker (RSS)": True,
        "pages/min with 2 workers ≥ 1.8× with 1 worker": True,
    }
    slow = _forms_run({2: _forms_metrics(25.0, 0.98, 0.9), 1: _forms_metrics(20.0)}, {"pages_per_min": 10.0}, flags=2)
    assert {name for name, ok in _outcomes(slow).items() if ok is False} == {
        "pages/min ≥ 3× ocrmypdf's",
        "pages/min ≥ 30 with 2 workers",
        "character recall ≥ 99 %",
        "segment recall, exact ≥ 95 %",
        "at most 1 page of 25 flagged for review",
        "pages/min with 2 workers ≥ 1.8× with 1 worker",
    }


def test_targets_without_ocrmypdf_or_a_second_worker_count_are_not_applicable() -> None:
    run = _forms_run({1: _forms_metrics(20.0)}, None, flags=0)
    outcomes = _outcomes(run)
    assert outcomes["pages/min ≥ 3× ocrmypdf's"] is None
    assert outcomes["pages/min ≥ 30 with 2 workers"] is None
    assert outcomes["pages/min with 2 workers ≥ 1.8× with 1 worker"] is None
    assert outcomes["at most 1 page of 25 flagged for review"] is True


def test_synthetic_targets_are_issue_12s() -> None:
    m: Metrics = {"pages_per_min": 40.0, "seconds": 60.0, "cer": 0.0025, "skew_mean": 0.04, "skew_max": 0.25,
         "blank_recall": 1.0, "blank_precision": 1.0, "bytes_per_page": 40_000, "peak_rss_mib": 1100.0}  # fmt: skip
    ref: Metrics = {"pages_per_min": 12.0, "bytes_per_page": 100_000}
    run = CorpusRun(SYNTHETIC, {"pages": 44, "text_pages": 40, "blank_pages": 4, "source": "seed 2026"}, {2: m}, ref,
                    {2: "done"})  # fmt: skip
    assert _outcomes(run) == {
        "CER ≤ 0.2 %": False,
        "residual skew mean ≤ 0.05°": True,
        "residual skew max ≤ 0.2°": False,
        "blank recall 1.0 and precision 1.0": True,
        "pages/min ≥ 3× ocrmypdf's": True,
        "bytes/page ≤ 0.5× ocrmypdf's": True,
        "peak memory ≤ 1024 MiB per worker (RSS)": False,
        "pages/min with 2 workers ≥ 1.8× with 1 worker": None,
    }


def test_report_shows_the_profile_with_parts_indented_and_the_flagged_forms() -> None:
    run = _forms_run({2: _forms_metrics(36.0)}, None, flags=2)
    machine = {"date": "2026-12-02 12:00", "cpus": 2, "load_average": "0.10", "python": "3.11", "tesseract": "t",
               "ocrmypdf": "o", "station_env": ["SCANSTATION_OCR_ENGINE=rapidocr"]}  # fmt: skip
    text = render(Report(machine, {FORMS: run}, 2, ["station.ocr.runtime=onnxruntime"]))
    assert "SCANSTATION_OCR_ENGINE=rapidocr" in text and "station.ocr.runtime=onnxruntime" in text
    assert (
        "| ocr | 1.000 | 90.9 % |\n| ↳ ocr.read | 0.800 | 72.7 % |" in text
        and "| **total** | **1.100** | 100 % |" in text
    )
    assert "2 of 25 (by flag: low_confidence 2): form_001.jpg (low_confidence), form_002.jpg (low_confidence)" in text
    assert "- MISS at most 1 page of 25 flagged for review: 2 of 25 (form_001.jpg, form_002.jpg)" in text
