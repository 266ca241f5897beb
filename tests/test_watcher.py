"""The inbox watcher against a real Redis and a real catalogue: completeness, bad input, duplicates, crashes."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pikepdf
import pytest
import redis
from rq import Queue
from sqlalchemy import select

from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Batch, BatchState, Page
from scanner_service.settings import Settings
from scanner_service.station import intake
from scanner_service.station import queue as q
from scanner_service.station.watcher import Watcher
from tests.conftest import REAL, SAMPLE, copy_sample
from workers.durable import sha256_of


def batches(settings: Settings) -> list[Batch]:
    with session_scope(settings.effective_database_url) as session:
        rows = session.scalars(select(Batch).order_by(Batch.id)).all()
        for b in rows:
            _ = b.originals, b.pages
        return list(rows)


def poll_until(watcher: Watcher, predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watcher.poll()
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def queued_page_jobs(conn: redis.Redis) -> list[str]:
    return Queue(q.QUEUE_NAME, connection=conn).job_ids


def test_done_marker_completes_a_folder_at_once(station_env: Settings, redis_conn: redis.Redis) -> None:
    folder = station_env.inbox / "C015-WS·2013-Y-BGS-0001"
    copy_sample(folder, ["scan_0001.jpg", "scan_0002.jpg"])
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    assert len(watcher.poll()) == 1
    [batch] = batches(station_env)
    assert batch.name == "C015-WS·2013-Y-BGS-0001"
    assert batch.state == BatchState.queued
    assert [o.name for o in batch.originals] == ["scan_0001.jpg", "scan_0002.jpg"]
    assert len(batch.pages) == 2
    assert sorted(queued_page_jobs(redis_conn)) == sorted(q.page_job_id(p.id) for p in batch.pages)
    assert not folder.exists(), "the batch must leave the inbox once recorded"
    spooled = Layout.of(station_env).originals_dir(batch.id)
    for original in batch.originals:
        assert sha256_of(spooled / original.name).sha256 == original.sha256


def test_file_still_being_written_is_not_taken_early(station_env: Settings, redis_conn: redis.Redis) -> None:
    """A scanner writing slowly: the file is taken only after it has been quiet for quiet_seconds."""
    data = (SAMPLE / "scan_0003.jpg").read_bytes()
    target = station_env.inbox / "slow.jpg"
    watcher = Watcher(station_env, redis_conn)
    stop = threading.Event()
    last_write = [0.0]

    def writer() -> None:
        with target.open("wb") as fh:
            for start in range(0, len(data), len(data) // 8 + 1):
                fh.write(data[start : start + len(data) // 8 + 1])
                fh.flush()
                last_write[0] = time.monotonic()
                time.sleep(0.4)
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not stop.is_set():
        assert watcher.poll() == [], "a file still growing was picked up"
        time.sleep(0.1)
    thread.join()
    poll_until(watcher, lambda: len(batches(station_env)) == 1)
    assert time.monotonic() - last_write[0] >= station_env.quiet_seconds
    [batch] = batches(station_env)
    assert batch.originals[0].size == len(data)
    assert len(batch.pages) == 1


def test_temporary_hidden_and_system_files_are_listed_not_taken(station_env: Settings, redis_conn: redis.Redis) -> None:
    """Nothing is dropped without a word: every file but the .done marker is in the batch's originals."""
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg"])
    (folder / "scan_0002.jpg.part").write_bytes(b"half")
    (folder / "~lock").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / ".done").touch()
    Watcher(station_env, redis_conn).poll()
    [batch] = batches(station_env)
    assert len(batch.pages) == 1 and batch.state == BatchState.queued
    listed = {o.name: o for o in batch.originals}
    assert sorted(listed) == [".DS_Store", "scan_0001.jpg", "scan_0002.jpg.part", "~lock"]
    assert [(o.name, o.quarantined) for o in batch.originals if o.error_code == "temporary"] == [
        ("scan_0002.jpg.part", True),
        ("~lock", True),
    ]
    assert "temporary file" in (listed["~lock"].error or "")
    # The Finder's file is listed with its reason and stays with the originals; it needs nobody.
    assert listed[".DS_Store"].error_code == "system_file" and not listed[".DS_Store"].quarantined
    assert (Layout.of(station_env).originals_dir(batch.id) / ".DS_Store").exists()
    assert "scan_0002.jpg.part" in (batch.error or "") and ".DS_Store" not in (batch.error or "")
    kept = intake.quarantine_path(station_env, batch)
    assert (kept / "scan_0002.jpg.part").read_bytes() == b"half"
    assert "temporary file" in (kept / "scan_0002.jpg.part.reason.txt").read_text(encoding="utf-8")


def _encrypted_pdf(path: Path) -> None:
    with pikepdf.open(REAL / "ccitt.pdf") as pdf:
        pdf.save(path, encryption=pikepdf.Encryption(owner="owner", user="secret"))


BAD_INPUTS = {
    "empty.tif": ("empty", lambda p: p.write_bytes(b"")),
    "notes.txt": ("not_an_image", lambda p: p.write_text("扫描备注：第三页缺失\n", encoding="utf-8")),
    "invalid.pdf": ("broken", lambda p: shutil.copy(REAL / "invalid.pdf", p)),
    "hugemono.pdf": ("too_large", lambda p: shutil.copy(REAL / "hugemono.pdf", p)),
    "locked.pdf": ("encrypted", _encrypted_pdf),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_file_is_a_failed_batch_kept_in_quarantine(
    station_env: Settings, redis_conn: redis.Redis, name: str
) -> None:
    code, make = BAD_INPUTS[name]
    make(station_env.inbox / name)
    original_bytes = (station_env.inbox / name).read_bytes()
    watcher = Watcher(station_env, redis_conn)
    poll_until(watcher, lambda: len(batches(station_env)) == 1)
    [batch] = batches(station_env)
    assert batch.state == BatchState.failed
    assert batch.error_code == code
    assert name in batch.error and len(batch.error) > len(name) + 20, batch.error
    assert queued_page_jobs(redis_conn) == []
    kept = list(Layout.of(station_env).quarantine.rglob(name))
    assert len(kept) == 1 and kept[0].read_bytes() == original_bytes, "the file must be kept, unchanged"
    assert (kept[0].parent / f"{name}.reason.txt").read_text(encoding="utf-8").strip()


def test_symlink_is_refused_and_its_target_untouched(
    station_env: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    target = tmp_path / "outside.jpg"
    shutil.copy(SAMPLE / "scan_0001.jpg", target)
    (station_env.inbox / "link.jpg").symlink_to(target)
    poll_until(Watcher(station_env, redis_conn), lambda: len(batches(station_env)) == 1)
    [batch] = batches(station_env)
    assert batch.state == BatchState.failed and batch.error_code == "symlink"
    assert target.exists(), "the link's target is never moved or deleted"
    assert any(p.is_symlink() for p in Layout.of(station_env).quarantine.rglob("link.jpg"))


def test_name_that_is_not_utf8(station_env: Settings, redis_conn: redis.Redis) -> None:
    raw = os.fsdecode(b"scan_\xff\xfe.jpg")
    folder = station_env.inbox / "mixed"
    copy_sample(folder, ["scan_0001.jpg"])
    shutil.copy(SAMPLE / "scan_0002.jpg", folder / raw)
    (folder / ".done").touch()
    Watcher(station_env, redis_conn).poll()
    [batch] = batches(station_env)
    assert batch.state == BatchState.queued, "the good file goes on"
    assert len(batch.pages) == 1
    bad = [o for o in batch.originals if o.quarantined]
    assert len(bad) == 1 and bad[0].error_code == "bad_name" and "UTF-8" in bad[0].error
    assert (intake.quarantine_path(station_env, batch) / raw).exists()


def test_bad_file_inside_a_batch_fails_alone(station_env: Settings, redis_conn: redis.Redis) -> None:
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg", "scan_0002.jpg"])
    (folder / "scan_0001b.tif").write_bytes(b"")
    (folder / ".done").touch()
    Watcher(station_env, redis_conn).poll()
    [batch] = batches(station_env)
    assert batch.state == BatchState.queued
    assert [p.seq for p in batch.pages] == [1, 2]
    assert "scan_0001b.tif" in (batch.error or "")


def test_same_batch_twice_is_reported_not_processed(station_env: Settings, redis_conn: redis.Redis) -> None:
    watcher = Watcher(station_env, redis_conn)
    for name in ("first", "again"):
        folder = station_env.inbox / name
        copy_sample(folder, ["scan_0001.jpg", "scan_0005.jpg"])
        (folder / ".done").touch()
        watcher.poll()
    first, again = batches(station_env)
    assert first.state == BatchState.queued
    assert again.state == BatchState.failed and again.error_code == "duplicate"
    assert again.duplicate_of == first.id and f"#{first.id}" in again.error
    assert len(queued_page_jobs(redis_conn)) == 2, "pages of the duplicate must not be queued"
    assert (intake.quarantine_path(station_env, again) / "scan_0001.jpg").exists()


def test_multipage_files_become_pages_in_scan_order(station_env: Settings, redis_conn: redis.Redis) -> None:
    folder = station_env.inbox / "mixed"
    folder.mkdir()
    shutil.copy(REAL / "multipage.pdf", folder / "a.pdf")
    shutil.copy(SAMPLE / "scan_0001.jpg", folder / "b.jpg")
    (folder / ".done").touch()
    Watcher(station_env, redis_conn).poll()
    [batch] = batches(station_env)
    names = {o.id: o.name for o in batch.originals}
    assert [(names[p.original_id], p.source_index) for p in batch.pages] == [("a.pdf", i) for i in range(6)] + [
        ("b.jpg", 0)
    ]


def test_crash_after_recording_before_the_move(station_env: Settings, redis_conn: redis.Redis) -> None:
    """The catalogue row exists, the files are still in the inbox: a restart finishes, once."""
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg", "scan_0002.jpg"])
    (folder / ".done").touch()
    with session_scope(station_env.effective_database_url) as session:
        intake.record(session, station_env, folder)  # the watcher died right after this commit
    Watcher(station_env, redis_conn).sweep()
    [batch] = batches(station_env)
    assert batch.state == BatchState.queued and len(batch.pages) == 2
    assert not folder.exists()
    assert len(queued_page_jobs(redis_conn)) == 2


def test_crash_after_the_move_before_the_pages(station_env: Settings, redis_conn: redis.Redis) -> None:
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg", "scan_0002.jpg", "scan_0003.jpg"])
    (folder / "notes.txt").write_text("x")
    (folder / ".done").touch()
    with session_scope(station_env.effective_database_url) as session:
        batch = intake.record(session, station_env, folder)
    with session_scope(station_env.effective_database_url) as session:
        batch = session.get(Batch, batch.id)
        intake.move_to_spool(station_env, batch, folder)
    # Died while quarantining: the bad file is already aside but nothing was written down.
    qdir = intake.quarantine_path(station_env, batch)
    qdir.mkdir(parents=True)
    os.rename(Layout.of(station_env).originals_dir(batch.id) / "notes.txt", qdir / "notes.txt")
    watcher = Watcher(station_env, redis_conn)
    watcher.sweep()
    watcher.sweep()
    [batch] = batches(station_env)
    assert batch.state == BatchState.queued
    assert [p.seq for p in batch.pages] == [1, 2, 3]
    assert [o.name for o in batch.originals if o.quarantined] == ["notes.txt"]
    assert (qdir / "notes.txt").exists()
    assert len(queued_page_jobs(redis_conn)) == 3


def test_lost_queue_is_rebuilt_from_the_catalogue(station_env: Settings, redis_conn: redis.Redis) -> None:
    """Redis lost its data (an external Redis without persistence): pages are queued again, not lost."""
    folder = station_env.inbox / "batch"
    copy_sample(folder, ["scan_0001.jpg", "scan_0002.jpg"])
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    redis_conn.flushall()
    watcher.sweep()
    with session_scope(station_env.effective_database_url) as session:
        page_ids = session.scalars(select(Page.id)).all()
    assert sorted(queued_page_jobs(redis_conn)) == sorted(q.page_job_id(i) for i in page_ids)


def test_ingest_command_copies_and_queues(station_env: Settings, redis_conn: redis.Redis, tmp_path: Path) -> None:
    """`scanstation ingest PATH…` takes a folder and a file now; the operator's files stay where they are."""
    import subprocess
    import sys

    folder = tmp_path / "desk" / "batch"
    copy_sample(folder, ["scan_0001.jpg", "scan_0002.jpg"])
    single = tmp_path / "desk" / "scan_0003.jpg"
    shutil.copy(SAMPLE / "scan_0003.jpg", single)
    exe = Path(sys.executable).with_name("scanstation")
    out = subprocess.run(
        [str(exe), "ingest", "--no-wait", str(folder), str(single), str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "missing: no such file or folder" in out.stderr
    assert folder.exists() and single.exists(), "ingest copies; it never takes the operator's files away"
    states = [(b.name, b.state, len(b.pages)) for b in batches(station_env)]
    assert states == [("batch", BatchState.queued, 2), ("scan_0003.jpg", BatchState.queued, 1)]
    assert len(queued_page_jobs(redis_conn)) == 3
