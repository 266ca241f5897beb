"""Pages through real RQ jobs (SimpleWorker in-process), real Tesseract and a real Redis."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pikepdf
import pytest
import redis
from rq import SimpleWorker

from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Batch, BatchState, PageState
from scanner_service.settings import Settings
from scanner_service.station import queue as q
from scanner_service.station.watcher import Watcher
from tests.conftest import SAMPLE, copy_sample

pytestmark = pytest.mark.slow


def run_queue(conn: redis.Redis, watcher: Watcher | None = None) -> None:
    """Work the queue empty, as many rounds as retries and the assembly need."""
    for _ in range(10):
        SimpleWorker([q.get_queue(conn)], connection=conn).work(burst=True, logging_level="WARNING")
        if watcher is not None:
            watcher.sweep()
        if not q.get_queue(conn).count:
            break


def one_batch(settings: Settings) -> Batch:
    with session_scope(settings.effective_database_url) as session:
        [batch] = session.query(Batch).all()
        _ = batch.pages, batch.originals
        return batch


def pdftotext(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_batch_becomes_a_searchable_pdfa(station_env: Settings, redis_conn: redis.Redis) -> None:
    folder = station_env.inbox / "C015-WS·2013-Y-BGS-0001"
    copy_sample(folder, ["scan_0008.png", "scan_0006.jpg", "scan_0003.jpg"])
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    batch = one_batch(station_env)
    assert batch.state in (BatchState.done, BatchState.needs_review), batch.error
    assert [p.state for p in batch.pages] == [PageState.done] * 3
    assert [p.blank for p in batch.pages] == [False, True, False], "the blank back must be flagged"
    # The benchmark's per-stage profile reads each page's CPU seconds by stage; a text page was read.
    seconds = batch.pages[0].details["seconds"]
    assert {"load", "orientation", "deskew", "blank", "ocr"} <= set(seconds), seconds
    assert seconds["ocr"] > 0 and "ocr" not in batch.pages[1].details["seconds"], "a blank page is not read"
    pdf = Path(batch.pdf_path or "")
    with pikepdf.open(pdf) as doc:
        assert len(doc.pages) == 2, "blank pages are left out of the PDF"
        meta = doc.open_metadata()
        assert meta.pdfa_status.startswith("2"), "the PDF must declare PDF/A-2"
    text = pdftotext(pdf)
    pages = text.split("\f")
    assert "保定市" in pages[0] and "保定市" in pages[1]
    # scan_0008 (pages are in file-name order): a two-character name is found as a viewer's search
    # finds it, in reading order, and no space is put between Chinese characters.
    last = pages[1]
    assert last.index("农村土地承包经营权合同") < last.index("侯福") < last.index("萧桂霞") < last.index("签订日期")
    assert not re.search(r"[\u4e00-\u9fff] +[\u4e00-\u9fff]", text)
    # The masters are kept as scanned.
    originals = Path(Layout.of(station_env).spool / str(batch.id) / "originals")
    for original in batch.originals:
        assert (originals / original.name).read_bytes() == (SAMPLE / original.name).read_bytes()


def _fake_tesseract(folder: Path, body: str) -> Path:
    """A 'tesseract' that answers --version and --list-langs like the real one, and fails on pages."""
    real = subprocess.run(["which", "tesseract"], capture_output=True, text=True, check=True).stdout.strip()
    script = folder / "tesseract"
    script.write_text(f'#!/bin/sh\ncase "$1" in --version|--list-langs) exec {real} "$@";; esac\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_crashing_tesseract_fails_the_page_with_a_reason_after_retries(
    station_env: Settings, redis_conn: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "calls"
    fake = _fake_tesseract(tmp_path, f'echo x >> {counter}\necho "Segmentation fault" >&2\nexit 139')
    monkeypatch.setenv("SCANSTATION_TESSERACT", str(fake))
    monkeypatch.setenv("SCANSTATION_OCR_ENGINE", "tesseract")
    monkeypatch.setenv("SCANSTATION_PAGE_RETRIES", "2")
    station_env = Settings(**{**station_env.model_dump(), "page_retries": 2})
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0008.png", "scan_0006.jpg"])
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    batch = one_batch(station_env)
    blank_page, text_page = batch.pages  # name order: scan_0006 (blank) first
    assert text_page.state == PageState.failed
    assert "Tesseract" in (text_page.error or "")
    assert len(counter.read_text().split()) == 3, "one try and two retries"
    assert blank_page.state == PageState.done, "the other pages go on"
    assert batch.state == BatchState.needs_review


def test_hanging_tesseract_is_stopped_by_the_time_limit(
    station_env: Settings, redis_conn: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_tesseract(tmp_path, "sleep 600")
    monkeypatch.setenv("SCANSTATION_TESSERACT", str(fake))
    monkeypatch.setenv("SCANSTATION_OCR_ENGINE", "tesseract")
    monkeypatch.setenv("SCANSTATION_PAGE_RETRIES", "0")
    monkeypatch.setenv("SCANSTATION_PAGE_TIMEOUT", "3")
    settings = Settings(**{**station_env.model_dump(), "page_retries": 0, "page_timeout": 3})
    folder = settings.inbox / "batch"
    copy_sample(folder, ["scan_0008.png"])
    (folder / ".done").touch()
    watcher = Watcher(settings, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    batch = one_batch(settings)
    assert batch.pages[0].state == PageState.failed
    assert batch.state == BatchState.failed
    assert batch.error and "page 1" in batch.error


def test_page_job_run_twice_changes_nothing(station_env: Settings, redis_conn: redis.Redis) -> None:
    """A job run again after its worker died must not duplicate pages or assemble twice."""
    from scanner_service.station.jobs import process_page

    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0006.jpg"])
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    batch = one_batch(station_env)
    assert process_page(batch.pages[0].id) == "done"
    assert q.get_queue(redis_conn).count == 0, "no second assembly job"
    meta = json.loads((Layout.of(station_env).spool / str(batch.id) / "pages" / "0001.json").read_text())
    assert meta["text"]["lines"] == []
    assert os.path.exists(Layout.of(station_env).spool / str(batch.id) / "pages" / "0001.jpg")
