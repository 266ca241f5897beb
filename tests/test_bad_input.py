"""Bad input found by probing a running station (issue 9), each with real files, the real watcher and intake.

Long names, a resolution that makes no paper size, hidden files in a batch folder, names that are not
UTF-8, a PNG that is corrupt inside, and an intake that keeps failing.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pikepdf
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image
from rq import SimpleWorker
from sqlalchemy import select

from scanner_service.api.app import create_app
from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Batch, BatchState, PageState
from scanner_service.archive.tokens import create_token
from scanner_service.settings import Settings
from scanner_service.station import intake
from scanner_service.station import queue as q
from scanner_service.station.watcher import Watcher
from tests.conftest import SAMPLE, copy_sample
from workers.durable import sha256_of
from workers.stages.load import inspect_file, load_page

LONG = "档" * 82 + ".jpg"  # 250 bytes: fits a file name, but not with a prefix or a suffix added
LONG_FOLDER = "卷" * 83  # 249 bytes
WINDOWS_PATH = "..\\..\\x.jpg"  # a scanner that wrote a relative Windows path as the file's name
LIMIT = 150_000_000


def batches(settings: Settings) -> list[Batch]:
    with session_scope(settings.effective_database_url) as session:
        rows = session.scalars(select(Batch).order_by(Batch.id)).all()
        for b in rows:
            _ = b.originals, b.pages
        return list(rows)


def run_queue(conn: redis.Redis, watcher: Watcher) -> None:
    """Work the queue empty: the page jobs, then the assembly."""
    for _ in range(5):
        SimpleWorker([q.get_queue(conn)], connection=conn).work(burst=True, logging_level="WARNING")
        watcher.sweep()
        if not q.get_queue(conn).count:
            break


def name_bytes(path: Path) -> int:
    return len(os.fsencode(path.name))


def all_names_fit(folder: Path) -> None:
    for path in folder.rglob("*"):
        assert name_bytes(path) <= 255, path


def with_dpi(source: Path, target: Path, dpi: float) -> Path:
    """The same pixels with another resolution in the header (Pillow keeps the JPEG's quantisation)."""
    with Image.open(source) as im:
        im.save(target, quality="keep", dpi=(dpi, dpi))
    return target


def truncated_png(source: Path, target: Path) -> Path:
    """A PNG with a valid signature, header and end chunk, whose image data stops a third of the way."""
    data = source.read_bytes()
    pos, kept, idat = 8, [data[:8]], 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos : pos + 12 + length]
        pos += 12 + length
        if kind == b"IDAT":
            idat += 1
            if idat > 3:
                continue
        if kind == b"IEND":
            continue
        kept.append(chunk)
    kept.append(struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))
    target.write_bytes(b"".join(kept))
    return target


# --- 1. long names ---------------------------------------------------------------------------


def test_fit_name_cuts_on_a_character_boundary_and_keeps_names_apart() -> None:
    short = "scan_0001.jpg"
    assert intake.fit_name(short) == short
    first, second = "档" * 100 + "一.jpg", "档" * 100 + "二.jpg"  # 307 bytes each, different at the end
    fitted = [intake.fit_name(n) for n in (first, second)]
    for name in fitted:
        assert len(name.encode("utf-8")) <= 255 and name.endswith(".jpg") and name.startswith("档" * 50)
    assert fitted[0] != fitted[1], "the hash keeps two long names apart"
    assert len(intake.fit_name(LONG, 240).encode()) <= 240
    raw = os.fsdecode(b"\xb5\xb5" * 150 + b".tif")  # not UTF-8 (GB18030 bytes): cut as bytes
    assert len(os.fsencode(intake.fit_name(raw))) <= 255
    assert intake.fit_path(f"{first}/{short}") == f"{fitted[0]}/{short}"


def test_unusable_file_with_a_long_name_inside_a_folder(
    station_env: Settings, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe: quarantine names passed 255 bytes, the batch stayed `receiving` and the same traceback
    was logged every 5 s. Now the good page goes on and the bad file is in quarantine with its reason."""
    folder = station_env.inbox / LONG_FOLDER
    copy_sample(folder, ["scan_0001.jpg"])
    (folder / LONG).write_text("扫描备注：这不是图像", encoding="utf-8")
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    assert len(watcher.poll()) == 1
    watcher.sweep()
    [batch] = batches(station_env)
    assert batch.state == BatchState.queued and len(batch.pages) == 1
    [bad] = [o for o in batch.originals if o.quarantined]
    assert bad.name == LONG and bad.error_code == "not_an_image"
    assert LONG in (batch.error or "")
    kept = intake.quarantine_path(station_env, batch)
    assert (kept / LONG).read_text(encoding="utf-8") == "扫描备注：这不是图像"
    all_names_fit(Layout.of(station_env).quarantine)
    [note] = kept.glob("*.reason.txt")
    text = note.read_text(encoding="utf-8")
    assert text.startswith(LONG + "\n") and "not a scan" in text, "the note keeps the whole name"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_unusable_file_with_a_long_name_alone(station_env: Settings, redis_conn: redis.Redis) -> None:
    (station_env.inbox / LONG).write_bytes(b"")
    watcher = Watcher(station_env, redis_conn)
    assert watcher.poll(now=0) == []
    watcher.poll(now=100)  # quiet long enough
    [batch] = batches(station_env)
    assert batch.state == BatchState.failed and batch.error_code == "empty"
    assert batch.name == LONG and LONG in (batch.error or "")
    kept = intake.quarantine_path(station_env, batch)
    assert name_bytes(kept) <= 255 and (kept / LONG).exists()
    all_names_fit(Layout.of(station_env).quarantine)
    assert not (station_env.inbox / LONG).exists()


def test_good_pages_with_long_names_are_processed(station_env: Settings, redis_conn: redis.Redis) -> None:
    folder = station_env.inbox / LONG_FOLDER
    folder.mkdir()
    shutil.copy(SAMPLE / "scan_0006.jpg", folder / LONG)  # a blank back: every stage but OCR runs
    (folder / ".done").touch()
    shutil.copy(SAMPLE / "scan_0007.png", station_env.inbox / ("档" * 80 + "扫描.png"))
    watcher = Watcher(station_env, redis_conn)
    watcher.poll(now=0)
    watcher.poll(now=100)
    run_queue(redis_conn, watcher)
    in_folder, alone = batches(station_env)
    for batch in (in_folder, alone):
        assert [p.state for p in batch.pages] == [PageState.done], batch.error
        assert batch.state == BatchState.needs_review  # flagged blank: nothing else is wrong
        assert [p.flags for p in batch.pages] == [["blank"]]
    assert in_folder.name == LONG_FOLDER and in_folder.originals[0].name == LONG
    all_names_fit(station_env.data)


def test_intake_that_keeps_failing_ends_failed_and_logs_once(
    station_env: Settings, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the cause, a batch does not stay `receiving` for ever with the same traceback every 5 s."""

    def full_disk(*args: object, **kw: object) -> list[int]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(intake, "split_into_pages", full_disk)  # fault injection: every attempt fails
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg", "scan_0002.jpg"])
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn, give_up_after=0.5)
    deadline = time.monotonic() + 10
    while batches(station_env)[0:1] == [] or batches(station_env)[0].state == BatchState.receiving:
        assert time.monotonic() < deadline, "the batch must not stay receiving"
        watcher.poll()
        watcher.sweep()
        time.sleep(0.1)
    [batch] = batches(station_env)
    spooled = Layout.of(station_env).originals_dir(batch.id)
    assert batch.state == BatchState.failed and batch.error_code == "intake_failed"
    assert "No space left on device" in (batch.error or "") and str(spooled) in (batch.error or "")
    assert sorted(p.name for p in spooled.iterdir()) == [".done", "scan_0001.jpg", "scan_0002.jpg"], "nothing lost"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    assert len([r for r in caplog.records if r.levelno == logging.ERROR and "failed" in r.getMessage()]) == 1
    for _ in range(3):
        watcher.poll()
        watcher.sweep()
    assert len(batches(station_env)) == 1 and len([r for r in caplog.records if r.exc_info]) == 1


def test_batch_that_cannot_leave_the_inbox_is_recorded_once(
    station_env: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only share: the move into the spool fails. One batch row, not one per poll; it ends failed."""

    def read_only(*args: object, **kw: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(intake, "move_to_spool", read_only)
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg"])
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn, give_up_after=0.3)
    for _ in range(8):
        watcher.poll()
        time.sleep(0.1)
    [batch] = batches(station_env)
    assert batch.state == BatchState.failed and "Permission denied" in (batch.error or "")
    kept = intake.quarantine_path(station_env, batch)
    assert (kept / "scan_0001.jpg").read_bytes() == (SAMPLE / "scan_0001.jpg").read_bytes()
    assert not folder.exists() and str(kept) in (batch.error or "")


@pytest.fixture
def other_fs_inbox(station_env: Settings) -> Iterator[Settings]:
    """The station with its inbox on another file system (tmpfs), as a network share is: no rename."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(station_env.data.parent).st_dev:
        pytest.skip("needs /dev/shm on another file system than the data folder")
    inbox = Path(tempfile.mkdtemp(prefix="scanstation-inbox-", dir=shm))
    yield Settings(**{**station_env.model_dump(), "inbox": inbox})
    shutil.rmtree(inbox, ignore_errors=True)


def test_inbox_on_another_file_system(other_fs_inbox: Settings, redis_conn: redis.Redis) -> None:
    """Batches are copied across, then removed from the inbox; a duplicate goes to quarantine the same way."""
    settings = other_fs_inbox
    watcher = Watcher(settings, redis_conn)
    for name in (LONG_FOLDER, "again"):
        folder = settings.inbox / name
        copy_sample(folder, ["scan_0001.jpg"])
        (folder / LONG).write_text("不是图像", encoding="utf-8")
        (folder / ".done").touch()
        watcher.poll()
    first, again = batches(settings)
    assert first.state == BatchState.queued and len(first.pages) == 1
    assert again.state == BatchState.failed and again.error_code == "duplicate"
    assert list(settings.inbox.iterdir()) == [], "both left the inbox"
    spooled = Layout.of(settings).originals_dir(first.id)
    assert (spooled / "scan_0001.jpg").read_bytes() == (SAMPLE / "scan_0001.jpg").read_bytes()
    assert (intake.quarantine_path(settings, first) / LONG).read_text(encoding="utf-8") == "不是图像"
    assert (intake.quarantine_path(settings, again) / "scan_0001.jpg").exists()
    assert all(o.quarantined for o in again.originals)
    all_names_fit(settings.data)


# --- 2. a resolution that makes no paper size -----------------------------------------------


def test_resolution_that_makes_no_paper_size_is_not_believed(tmp_path: Path) -> None:
    wrong = with_dpi(SAMPLE / "scan_0002.jpg", tmp_path / "2400.jpg", 2400)  # 2930 x 3850 px: 3.1 x 4.1 cm
    right = with_dpi(SAMPLE / "scan_0002.jpg", tmp_path / "300.jpg", 300)
    [source] = inspect_file(wrong, max_pixels=LIMIT)
    assert source.dpi == (300.0, 300.0)
    page = load_page(wrong, 0, max_pixels=LIMIT)
    assert page.dpi == (300.0, 300.0) and page.stated_dpi == (2400.0, 2400.0)
    assert any("2400 dpi" in n and "31 x 41 mm" in n for n in page.notes), page.notes
    believed = load_page(right, 0, max_pixels=LIMIT)
    assert believed.dpi == (300.0, 300.0) and believed.stated_dpi is None and believed.notes == []
    # The same for a placeholder at the other end (a 9 x 12 m page) and a plausible 200 dpi A4 scan.
    huge = load_page(with_dpi(SAMPLE / "scan_0002.jpg", tmp_path / "12.jpg", 12), 0, max_pixels=LIMIT)
    assert huge.dpi == (300.0, 300.0) and huge.stated_dpi == (12.0, 12.0)
    a4_at_200 = load_page(SAMPLE / "scan_0004.jpg", 0, max_pixels=LIMIT)
    assert a4_at_200.dpi == (200.0, 200.0) and a4_at_200.stated_dpi is None


@pytest.mark.slow
def test_page_with_a_wrong_resolution_is_turned_read_and_flagged(
    station_env: Settings, redis_conn: redis.Redis
) -> None:
    """The probe: 2400 dpi on an A4 pixel count gave a 2.6 x 3.7 cm PDF page, upside down, without text."""
    folder = station_env.inbox / "batch"
    folder.mkdir()
    with_dpi(SAMPLE / "scan_0002.jpg", folder / "scan_0002.jpg", 2400)  # upside down in the corpus
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    [batch] = batches(station_env)
    [page] = batch.pages
    assert page.state == PageState.done, page.error
    assert "resolution_mismatch" in page.flags and page.details["stated_dpi"] == [2400.0, 2400.0]
    assert page.details["turn"] == 180 and page.dpi == 300.0
    assert "高龄津贴发放登记表" in (page.text or "").replace(" ", "")
    assert batch.state == BatchState.needs_review
    with pikepdf.open(batch.pdf_path or "") as pdf:
        width, height = (float(v) for v in pdf.pages[0].mediabox[2:])
    assert 200 < width / 72 * 25.4 < 260 and 280 < height / 72 * 25.4 < 340, "an A4-sized page in mm"


# --- 3. hidden files in a batch folder ----------------------------------------------------


@pytest.mark.slow
def test_hidden_files_are_listed_and_send_the_batch_to_review(station_env: Settings, redis_conn: redis.Redis) -> None:
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0008.png"])
    shutil.copy(SAMPLE / "scan_0001.jpg", folder / WINDOWS_PATH)
    shutil.copy(SAMPLE / "scan_0003.jpg", folder / ".scan_0003.jpg")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0thumbnails")
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    [batch] = batches(station_env)
    [page] = batch.pages
    assert page.state == PageState.done and page.flags == [], "the page itself needs nobody"
    assert batch.state == BatchState.needs_review, "a page may be missing: a person must look"
    assert WINDOWS_PATH in (batch.error or "") and ".scan_0003.jpg" in (batch.error or "")
    assert "Windows path" in (batch.error or "") and "Thumbs.db" not in (batch.error or "")
    client = TestClient(create_app(station_env))
    with session_scope(station_env.effective_database_url) as session:
        headers = {"Authorization": f"Bearer {create_token(session, role='operator')}"}
    detail = client.get(f"/api/batches/{batch.id}", headers=headers).json()
    listed = {o["name"]: o for o in detail["originals"]}
    assert sorted(listed) == sorted([WINDOWS_PATH, ".scan_0003.jpg", "Thumbs.db", "scan_0008.png"])
    assert listed[WINDOWS_PATH]["quarantined"] and "begins with '.'" in listed[WINDOWS_PATH]["error"]
    assert not listed["Thumbs.db"]["quarantined"] and "operating system" in listed["Thumbs.db"]["error"]
    assert listed["scan_0008.png"]["error"] is None
    kept = intake.quarantine_path(station_env, batch)
    assert (kept / WINDOWS_PATH).read_bytes() == (SAMPLE / "scan_0001.jpg").read_bytes()
    assert (kept / f"{WINDOWS_PATH}.reason.txt").exists()


@pytest.mark.slow
def test_system_files_are_listed_without_sending_the_batch_to_review(
    station_env: Settings, redis_conn: redis.Redis
) -> None:
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0008.png"])
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0thumbnails")
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    [batch] = batches(station_env)
    assert [p.flags for p in batch.pages] == [[]]
    assert batch.state == BatchState.done and batch.error is None
    assert sorted(o.name for o in batch.originals if o.error_code == "system_file") == [".DS_Store", "Thumbs.db"]


def test_folder_of_only_hidden_files_says_so(station_env: Settings, redis_conn: redis.Redis) -> None:
    folder = station_env.inbox / "batch"
    folder.mkdir()
    shutil.copy(SAMPLE / "scan_0001.jpg", folder / WINDOWS_PATH)
    shutil.copy(SAMPLE / "scan_0002.jpg", folder / ".a.jpg")
    (folder / ".done").touch()
    Watcher(station_env, redis_conn).poll()
    [batch] = batches(station_env)
    assert batch.state == BatchState.failed and batch.error_code == "only_hidden_files"
    assert f"holds only hidden files: {WINDOWS_PATH}, .a.jpg." in (batch.error or ""), batch.error
    assert all(o.quarantined for o in batch.originals) and len(batch.originals) == 2
    kept = intake.quarantine_path(station_env, batch)
    assert (kept / ".a.jpg").exists() and (kept / WINDOWS_PATH).exists() and not folder.exists()


# --- 4. names that are not UTF-8 -------------------------------------------------------------


def test_gb18030_name_is_shown_readably(station_env: Settings, redis_conn: redis.Redis) -> None:
    raw = os.fsdecode("名字.jpg".encode("gb18030"))
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg"])
    shutil.copy(SAMPLE / "scan_0002.jpg", folder / raw)
    (folder / ".done").touch()
    bad_folder = station_env.inbox / os.fsdecode("档案".encode("gb18030"))
    copy_sample(bad_folder, ["scan_0003.jpg"])
    (bad_folder / ".done").touch()
    Watcher(station_env, redis_conn).poll()
    good, named_badly = sorted(batches(station_env), key=lambda b: b.name)
    [bad] = [o for o in good.originals if o.quarantined]
    assert bad.name == "名字.jpg (GB18030 name)" and bad.error_code == "bad_name"
    assert "read as GB18030 it is 名字.jpg" in (bad.error or "")
    assert "名字.jpg (GB18030 name)" in (good.error or "") and "\ufffd" not in (good.error or "")
    kept = intake.quarantine_path(station_env, good)
    assert (kept / raw).read_bytes() == (SAMPLE / "scan_0002.jpg").read_bytes(), "kept under its own bytes"
    note = (kept / "名字.jpg.reason.txt").read_text(encoding="utf-8")
    assert "名字.jpg (GB18030 name)" in note and "c3fbd7d62e6a7067" in note, "name bytes in hex"
    assert named_badly.state == BatchState.failed and named_badly.error_code == "bad_name"
    assert named_badly.name == "档案 (GB18030 name)" and "档案" in (named_badly.error or "")


def test_name_that_is_neither_utf8_nor_gb18030_is_still_told_apart(
    station_env: Settings, redis_conn: redis.Redis
) -> None:
    raw = os.fsdecode(b"scan_\xff\xfe.jpg")
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg"])
    shutil.copy(SAMPLE / "scan_0002.jpg", folder / raw)
    (folder / ".done").touch()
    Watcher(station_env, redis_conn).poll()
    [batch] = batches(station_env)
    [bad] = [o for o in batch.originals if o.quarantined]
    assert bad.name == "scan_\ufffd\ufffd.jpg" and "GB18030" not in (bad.error or "")
    note = next(intake.quarantine_path(station_env, batch).glob("*.reason.txt")).read_text(encoding="utf-8")
    assert "7363616e5ffffe2e6a7067" in note


# --- 5. a PNG corrupt inside ----------------------------------------------------------------


def test_corrupt_png_alone_fails_and_is_quarantined(station_env: Settings, redis_conn: redis.Redis) -> None:
    corrupt = truncated_png(SAMPLE / "scan_0007.png", station_env.inbox / "corrupt.png")
    data = corrupt.read_bytes()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll(now=0)
    watcher.poll(now=100)
    [batch] = batches(station_env)
    assert batch.state == BatchState.queued, "the header check passes: only decoding finds it"
    run_queue(redis_conn, watcher)
    [batch] = batches(station_env)
    [page], [original] = batch.pages, batch.originals
    assert page.state == PageState.failed and page.error_code == "broken"
    assert batch.state == BatchState.failed and "page 1" in (batch.error or "")
    assert original.quarantined and "damaged" in (original.error or "")
    kept = intake.quarantine_path(station_env, batch)
    assert (kept / "corrupt.png").read_bytes() == data and (kept / "corrupt.png.reason.txt").exists()
    assert not (Layout.of(station_env).originals_dir(batch.id) / "corrupt.png").exists()


@pytest.mark.slow
def test_corrupt_png_in_a_folder_is_quarantined_and_the_rest_goes_on(
    station_env: Settings, redis_conn: redis.Redis
) -> None:
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0008.png"])
    data = truncated_png(SAMPLE / "scan_0007.png", folder / "scan_0009.png").read_bytes()
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    [batch] = batches(station_env)
    good, bad = batch.pages
    assert good.state == PageState.done and bad.state == PageState.failed
    assert batch.state == BatchState.needs_review
    with pikepdf.open(batch.pdf_path or "") as pdf:
        assert len(pdf.pages) == 1, "the batch PDF holds the good page"
    listed = {o.name: o for o in batch.originals}
    assert listed["scan_0009.png"].quarantined and not listed["scan_0008.png"].quarantined
    assert (intake.quarantine_path(station_env, batch) / "scan_0009.png").read_bytes() == data
    assert (
        sha256_of(intake.quarantine_path(station_env, batch) / "scan_0009.png").sha256 == listed["scan_0009.png"].sha256
    )
    spooled = Layout.of(station_env).originals_dir(batch.id)
    assert sorted(p.name for p in spooled.iterdir()) == [".done", "scan_0008.png"]
