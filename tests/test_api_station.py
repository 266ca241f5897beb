"""The batch board's data: flag counts and rates per batch computed in SQL (the same as from the pages),
fonds limits inside the query (so paging counts only what the caller sees), and ``GET /api/station``
(queue, workers, disk, with its warning decided from the file system's numbers)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from rq import Worker
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from scanner_service.api.app import create_app
from scanner_service.archive.db import get_engine, migrate
from scanner_service.archive.models import Batch, BatchState, Original, Page, PageState
from scanner_service.settings import Settings, build_settings
from scanner_service.station import queue as q
from scanner_service.station import status
from tests.test_api import token

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def seed_batch(
    session: Session,
    name: str,
    state: BatchState,
    pages: list[tuple[PageState, list[str], datetime | None]],
    *,
    target: str | None = None,
    created_at: datetime = T0,
) -> int:
    """One batch row with its originals and pages, written straight into the catalogue (no events, no
    files): what the board lists. Each page is (state, flags, when it was last written)."""
    filing = {"target": target} if target else {}
    batch = Batch(name=name, state=state, source=f"/inbox/{name}", created_at=created_at, filing=filing)
    session.add(batch)
    session.flush()
    originals = session.execute(
        insert(Original).returning(Original.id),
        [
            {"batch_id": batch.id, "seq": n, "name": f"p{n}.jpg", "stored_name": f"p{n}.jpg", "size": 1, "sha256": "0"}
            for n in range(1, len(pages) + 1)
        ],
    ).scalars()
    session.execute(
        insert(Page),
        [
            {
                "batch_id": batch.id,
                "original_id": original_id,
                "seq": n,
                "source_index": 0,
                "state": page_state,
                "blank": "blank" in flags,
                "flags": flags,
                "updated_at": at or created_at,
            }
            for n, (original_id, (page_state, flags, at)) in enumerate(zip(originals, pages, strict=True), start=1)
        ],
    )
    return batch.id


def plain_session(settings: Settings) -> Session:
    # Not the station's session_scope: that one writes progress events for every batch added.
    return Session(get_engine(settings.effective_database_url))


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, station_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The counts are SQL: each test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return station_env
    monkeypatch.setenv("SCANSTATION_DATABASE_URL", str(request.getfixturevalue("postgres_url")))
    on_postgres = build_settings()
    migrate(on_postgres.effective_database_url)
    return on_postgres


@pytest.fixture
def board(settings: Settings) -> dict[str, int]:
    """Three batches: one of C015 half processed with flags, one of C016, one whose fonds is not known yet."""
    done, failed, queued = PageState.done, PageState.failed, PageState.queued
    with plain_session(settings) as session:
        ids = {
            "c015": seed_batch(
                session,
                "C015-WS·2013-Y-BGS-0001",
                BatchState.processing,
                [
                    (done, ["blank"], T0),
                    (done, ["orientation_unsure", "low_confidence"], T0 + timedelta(seconds=30)),
                    (failed, ["failed"], T0 + timedelta(seconds=60)),
                    (queued, [], None),
                ],
                target="C015-WS·2013-Y-BGS-0001",
            ),
            "c016": seed_batch(
                session,
                "C016-WS·2014-D30-0001",
                BatchState.needs_review,
                [(done, ["low_resolution", "resolution_mismatch"], T0)],
                target="C016-WS·2014-D30-0001",
            ),
            "loose": seed_batch(session, "扫描件.pdf", BatchState.queued, [(queued, [], None)] * 2),
        }
        session.commit()
    return ids


def test_each_batch_of_the_list_counts_its_flags_and_rate_as_its_detail_does(
    settings: Settings, board: dict[str, int]
) -> None:
    client = TestClient(create_app(settings))
    admin = token(settings)
    listing = {b["id"]: b for b in client.get("/api/batches", headers=admin).json()}
    assert list(listing) == [board["loose"], board["c016"], board["c015"]]  # newest first
    c015 = listing[board["c015"]]
    assert c015["pages"] == {"total": 4, "done": 2, "blank": 1, "failed": 1}
    assert c015["flags"] == {
        "blank": 1,
        "orientation_unsure": 1,
        "low_confidence": 1,
        "low_resolution": 0,
        "resolution_mismatch": 0,
        "failed": 1,
    }
    # Three pages finished over 60 s: two intervals, 2 pages a minute; one page left: 30 s.
    assert c015["pages_per_minute"] == 2.0 and c015["seconds_left"] == 30.0
    c016 = listing[board["c016"]]
    assert c016["flags"]["low_resolution"] == c016["flags"]["resolution_mismatch"] == 1
    assert c016["pages_per_minute"] is None and c016["seconds_left"] is None  # one page, and not running
    for batch_id, row in listing.items():
        detail = client.get(f"/api/batches/{batch_id}", headers=admin).json()
        for key in ("pages", "flags", "pages_per_minute", "seconds_left", "state", "filing"):
            assert detail[key] == row[key], (batch_id, key)


def test_the_list_filters_by_states_and_ids_and_pages_through_what_the_caller_sees(
    settings: Settings, board: dict[str, int]
) -> None:
    client = TestClient(create_app(settings))
    admin = token(settings)
    running = client.get("/api/batches?state=queued&state=processing", headers=admin).json()
    assert [b["id"] for b in running] == [board["loose"], board["c015"]]
    some = client.get(f"/api/batches?ids={board['c016']}&ids={board['c015']}", headers=admin).json()
    assert [b["id"] for b in some] == [board["c016"], board["c015"]]
    older = client.get(f"/api/batches?before={board['loose']}&limit=1", headers=admin).json()
    assert [b["id"] for b in older] == [board["c016"]]
    # An operator of C015 sees its batches and those of no known fonds, never C016's; the limit and offset
    # count only those: the second row is C015's, not an empty page.
    operator = token(settings, "operator")
    with plain_session(settings) as session:
        from scanner_service.archive.models import ApiToken

        row = session.scalars(select(ApiToken).where(ApiToken.role == "operator")).one()
        row.fonds = "C015"
        session.commit()
    seen = client.get("/api/batches", headers=operator).json()
    assert [b["id"] for b in seen] == [board["loose"], board["c015"]]
    second = client.get("/api/batches?limit=1&offset=1", headers=operator).json()
    assert [b["id"] for b in second] == [board["c015"]]
    assert client.get(f"/api/batches?ids={board['c016']}", headers=operator).json() == []
    station = client.get("/api/station", headers=operator).json()
    assert station["batches"]["needs_review"] == 0 and station["batches"]["processing"] == 1


def test_station_shows_queue_workers_and_disk_to_staff_only(
    settings: Settings, board: dict[str, int], redis_conn: redis.Redis
) -> None:
    client = TestClient(create_app(settings))
    queue = q.get_queue(redis_conn)
    q.enqueue_page(queue, settings, 12345)
    worker = Worker([queue], connection=redis_conn)
    worker.register_birth()
    try:
        reply = client.get("/api/station", headers=token(settings, "operator"))
    finally:
        worker.register_death()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["queue"] == {"redis": True, "queued": 1, "running": 0, "scheduled": 0, "workers": 1, "busy": 0}
    numbers = os.statvfs(settings.data)
    assert body["disk"]["total_bytes"] == numbers.f_blocks * numbers.f_frsize
    assert abs(body["disk"]["free_bytes"] - numbers.f_bavail * numbers.f_frsize) < 2**30
    assert body["disk"]["pages_fit"] == body["disk"]["free_bytes"] // (3 * 2**20)
    assert body["batches"] == {
        "receiving": 0,
        "queued": 1,
        "processing": 1,
        "done": 0,
        "needs_review": 1,
        "failed": 0,
        "discarded": 0,
    }
    reader = client.get("/api/station", headers=token(settings, "reader"))
    assert reader.status_code == 403 and reader.json()["error"] == "forbidden"
    assert client.get("/api/station").status_code == 401


def test_station_says_redis_is_down_instead_of_failing(station_env: Settings) -> None:
    settings = station_env.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})
    reply = TestClient(create_app(settings)).get("/api/station", headers=token(station_env, "admin"))
    assert reply.status_code == 200
    assert reply.json()["queue"] == {"redis": False, "queued": 0, "running": 0, "scheduled": 0, "workers": 0, "busy": 0}


def _statvfs(total_gib: float, free_gib: float):  # type: ignore[no-untyped-def]
    block = 4096
    blocks, free = int(total_gib * 2**30 / block), int(free_gib * 2**30 / block)
    return lambda _path: os.statvfs_result((block, block, blocks, free, free, 0, 0, 0, 0, 255))


@pytest.mark.parametrize(
    ("total_gib", "free_gib", "warning", "reason", "pages"),
    [
        (500, 200, False, None, 68266),  # plenty
        (100, 5.5, True, "few_pages", 1877),  # 5.5 % free, but under 2,000 pages: about a day of scanning
        (4000, 150, True, "low_fraction", 51200),  # 51,200 pages fit, but the disk is 96 % full
        (20, 0, True, "few_pages", 0),  # full
    ],
)
def test_the_disk_warning_comes_before_the_archive_runs_out(
    station_env: Settings, total_gib: float, free_gib: float, warning: bool, reason: str | None, pages: int
) -> None:
    disk = status.disk_status(station_env, statvfs=_statvfs(total_gib, free_gib))
    assert (disk.warning, disk.reason, disk.pages_fit) == (warning, reason, pages)
    assert Path(disk.path) in (station_env.data / "archive", station_env.data)
