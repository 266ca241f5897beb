"""Live events (``GET /api/stream``) against a real server: a batch through the real jobs and OCR is seen as it
happens, in order; a reconnect with Last-Event-ID loses nothing and repeats nothing; each caller sees what
the API lets it see; ids that PostgreSQL commits out of order are still delivered once, in order; and an
open stream does not hold up the API's stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from scanner_service.api.app import create_app
from scanner_service.api.routes import stream
from scanner_service.archive import access, people
from scanner_service.archive.db import get_engine, migrate, session_scope
from scanner_service.archive.events import record_event
from scanner_service.archive.models import ApiToken, Batch, BatchState, Event, EventKind, Original, Page, PageState
from scanner_service.archive.tokens import create_token
from scanner_service.settings import Settings
from tests.test_archive import accept, scan

CODE = "C015-WS·2013-Y-BGS-0001"
PAGES = ["scan_0001.jpg", "scan_0006.jpg"]  # a land contract, a blank back (filed once a person accepts it)
UNFLAGGED = ["scan_0001.jpg", "scan_0003.jpg"]  # two contracts: nothing for a person to look at, filed at once
FINAL = {"done", "needs_review", "failed"}
PASSWORD = "korrekt-pferd-7"


@dataclass
class Block:
    """One block of an event stream as a browser's EventSource reads it."""

    id: int | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    retry: int | None = None
    comment: bool = False


def blocks(lines: Iterator[str]) -> Iterator[Block]:
    block = Block()
    for line in lines:
        if line == "":
            yield block
            block = Block()
        elif line.startswith(":"):
            block.comment = True
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                block.id = int(value)
            elif name == "event":
                block.event = value
            elif name == "data":
                block.data = json.loads(value)
            elif name == "retry":
                block.retry = int(value)
            else:
                raise AssertionError(f"not an SSE field: {line!r}")


def watch(
    base: str,
    auth: dict[str, str],
    until: Callable[[list[Block]], bool],
    *,
    timeout: float = 60,
    opened: threading.Event | None = None,
    **params: Any,
) -> list[Block]:
    """Open the stream, read blocks until ``until`` holds (or the time is up), then go away. ``opened`` is
    set once the reply's headers are in: the stream's starting point ("from now") is fixed by then."""
    got: list[Block] = []
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", f"{base}/api/stream", headers=auth, params=params) as reply,
    ):
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        if opened is not None:
            opened.set()
        for block in blocks(reply.iter_lines()):
            got.append(block)
            if until(got) or time.monotonic() > deadline:
                break
    return got


def events(got: list[Block]) -> list[Block]:
    return [b for b in got if b.event is not None]


def quiet(got: list[Block]) -> bool:
    """A heartbeat came after the events: the stream has nothing more for now."""
    return bool(got) and got[-1].comment


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The API on a real uvicorn server in a thread, stopped as the station stops it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    app.state.stopping = lambda: server.should_exit
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "the API did not stop"


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """A heartbeat every half second, so that a quiet stream is seen to be quiet soon."""
    monkeypatch.setattr(stream, "HEARTBEAT_SECONDS", 0.5)


def bearer(settings: Settings, role: str = "admin", fonds: str | None = None) -> dict[str, str]:
    with session_scope(settings.effective_database_url) as session:
        secret = create_token(session, role=role, fonds=fonds, name=f"{role} {fonds or 'all'}")
    return {"Authorization": f"Bearer {secret}"}


def kinds(got: list[Block]) -> list[tuple[str | None, Any, Any]]:
    """(kind, page, state or stage) of each event."""
    out = []
    for b in events(got):
        assert b.data is not None and b.data["id"] == b.id and b.data["kind"] == b.event
        detail = b.data["detail"]
        out.append((b.event, b.data["page"], detail.get("stage") or detail.get("state")))
    return out


@pytest.mark.slow
def test_a_batch_is_seen_live_in_order_and_a_reconnect_loses_and_repeats_nothing(
    station_env: Settings, redis_conn: redis.Redis, fast: None
) -> None:
    admin = bearer(station_env)
    live: list[Block] = []
    connected = threading.Event()

    def first_page_done(got: list[Block]) -> bool:
        connected.set()
        return any(b.event == "page_progress" and b.data and b.data["detail"].get("state") == "done" for b in got)

    def batch_final(got: list[Block]) -> bool:
        return any(b.event == "batch_state" and b.data and b.data["detail"]["state"] in FINAL for b in got)

    def viewer(base: str) -> None:
        live.extend(watch(base, admin, first_page_done))  # then it goes away, in the middle of the batch
        resumed = watch(base, {**admin, "Last-Event-ID": str(events(live)[-1].id)}, batch_final)
        assert resumed[0].retry == stream.RETRY_MS
        live.extend(resumed)

    with serving(station_env) as base:
        thread = threading.Thread(target=viewer, args=(base,))
        thread.start()
        assert connected.wait(20), "the stream did not start"
        batch = scan(station_env, redis_conn, CODE, UNFLAGGED)  # real watcher, real jobs, real OCR
        thread.join(60)
        assert not thread.is_alive()
        replay = watch(base, admin, quiet, after=0)

    seen = kinds(live)
    assert [e[2] for e in seen if e[0] == "batch_state"] == ["receiving", "queued", "processing", batch.state.value]
    for page in (1, 2):
        assert [(k, s) for k, p, s in seen if p == page and k == "page_progress"] == [
            ("page_progress", "processing"),
            ("page_progress", "ocr"),
            ("page_progress", "done"),
        ]
    final = next(b for b in events(live) if b.event == "batch_state" and b.data and b.data["detail"]["state"] in FINAL)
    assert final.data is not None and final.data["detail"]["pages"] == {"total": 2, "done": 2}
    assert ("item_filed", None, None) in seen
    assert all(b.data and b.data["batch_id"] == batch.id for b in events(live))
    ids = [b.id for b in events(live)]
    assert ids == sorted(set(ids)), "in order, none twice"
    replayed = [b.id for b in events(replay)]
    assert ids == replayed[: len(ids)], "the reconnect lost nothing: the same events as a replay from the start"


@pytest.mark.slow
def test_each_caller_sees_only_what_the_api_lets_it_see(
    station_env: Settings, redis_conn: redis.Redis, fast: None
) -> None:
    batch = accept(station_env, redis_conn, scan(station_env, redis_conn, CODE, PAGES).id)
    admin = bearer(station_env)
    TestClient(create_app(station_env)).put(f"/api/items/{quote(CODE)}", json={"open_status": "开放"}, headers=admin)
    with serving(station_env) as base:
        everything = events(watch(base, admin, quiet, after=0))
        own = events(watch(base, bearer(station_env, "operator", "C015"), quiet, after=0))
        other = events(watch(base, bearer(station_env, "operator", "C016"), quiet, after=0))
        reader = events(watch(base, bearer(station_env, "reader", "C015"), quiet, after=0))
    assert {b.event for b in everything} >= {"batch_state", "page_progress", "item_filed", "item_described"}
    assert [b.id for b in own] == [b.id for b in everything], "the operator of C015 sees all of its batch"
    assert other == [], "an operator of C016 sees nothing of a C015 batch"
    assert [b.event for b in reader] == ["item_filed", "item_described"], "a reader: its items' events only"
    assert all(b.data and b.data["archival_code"] == CODE and b.data["batch_id"] in (batch.id, None) for b in reader)


def test_the_stream_opens_with_a_retry_hint_keeps_alive_and_starts_from_now(
    station_env: Settings, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = station_env.effective_database_url
    polls: list[int] = []
    read = stream._read
    monkeypatch.setattr(stream, "_read", lambda *args: polls.append(1) or read(*args))  # counts the polls
    with session_scope(url) as session:
        record_event(session, EventKind.correction, fonds="C015", detail={"before": "now"})
        people.create_user(session, name="lin", role="operator", fonds="C015", password=PASSWORD, settings=station_env)
    admin = bearer(station_env)
    with serving(station_env) as base:
        got = watch(base, admin, lambda got: sum(b.comment for b in got) >= 2, timeout=10)
        assert got[0].retry == stream.RETRY_MS and got[0].event is None
        assert events(got) == [], "without Last-Event-ID or after=, what was before is not sent"
        replay = events(watch(base, admin, quiet, after=0))
        assert [b.data and b.data["detail"] for b in replay] == [{"before": "now"}]
        resumed = watch(base, {**admin, "Last-Event-ID": str(replay[0].id)}, quiet, after=0)
        assert events(resumed) == [], "Last-Event-ID wins over after= (a browser keeps the URL it started with)"
        time.sleep(stream.POLL_SECONDS)
        gone = len(polls)
        time.sleep(3 * stream.POLL_SECONDS)
        assert len(polls) == gone, "a stream whose client went away stops reading the catalogue"
        with httpx.Client() as client:
            assert client.get(f"{base}/api/stream").status_code == 401
            login = client.post(f"{base}/api/session", json={"name": "lin", "password": PASSWORD})
            cookie = {"Cookie": f"scanstation_session={login.cookies['scanstation_session']}"}
            assert events(watch(base, cookie, quiet, after=0)) == replay, "a login cookie opens it (EventSource)"
            refused = client.get(f"{base}/api/stream", headers={**admin, "Last-Event-ID": "x1"})
            assert refused.status_code == 422 and refused.json()["reason"] == "bad_last_event_id"


def test_api_events_lists_item_kinds_unless_asked(station_env: Settings) -> None:
    url = station_env.effective_database_url
    with session_scope(url) as session:
        batch_id = _batch_with_pages(session, 1).id
    with session_scope(url) as session:
        record_event(session, EventKind.item_described, archival_code=CODE, fonds="C015")
        session.scalars(select(Page).where(Page.batch_id == batch_id)).one().state = PageState.processing
    client = TestClient(create_app(station_env))
    admin = bearer(station_env)
    assert [e["kind"] for e in client.get("/api/events", headers=admin).json()["events"]] == ["item_described"]
    asked = client.get("/api/events", params={"kind": ["batch_state", "item_described"]}, headers=admin).json()
    assert [e["kind"] for e in asked["events"]] == ["batch_state", "batch_state", "item_described"]
    progress = client.get("/api/events", params={"kind": "page_progress"}, headers=admin).json()["events"]
    assert [(e["batch_id"], e["page"], e["detail"]["state"]) for e in progress] == [(batch_id, 1, "processing")]
    assert client.get("/api/events", params={"kind": "nonsense"}, headers=admin).status_code == 422


def _batch_with_pages(session: Session, pages: int) -> Batch:
    batch = Batch(name=CODE, state=BatchState.receiving, source="inbox", filing={"target": CODE})
    session.add(batch)
    session.flush()
    original = Original(batch_id=batch.id, seq=1, name="a.tif", stored_name="a.tif", size=1, sha256="0" * 64)
    session.add(original)
    session.flush()
    for seq in range(1, pages + 1):
        session.add(
            Page(batch_id=batch.id, original_id=original.id, seq=seq, source_index=seq - 1, state=PageState.queued)
        )
    batch.state = BatchState.queued
    return batch


def test_the_catalogue_writes_progress_events_by_itself(station_env: Settings) -> None:
    url = station_env.effective_database_url
    with session_scope(url) as session:
        batch_id = _batch_with_pages(session, 3).id
    finishes = [
        (1, ["separator"], PageState.done),
        (2, ["orientation_unsure"], PageState.done),
        (3, [], PageState.failed),
    ]
    for seq, flags, state in finishes:
        with session_scope(url) as session:
            page = session.scalars(select(Page).where(Page.batch_id == batch_id, Page.seq == seq)).one()
            page.state, page.flags = PageState.processing, []
        with session_scope(url) as session:
            page = session.scalars(select(Page).where(Page.batch_id == batch_id, Page.seq == seq)).one()
            page.state, page.flags = state, flags
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        batch.state, batch.error_code, batch.error = BatchState.failed, "all_pages_failed", "Every page failed"
        batch.pages[0].blank = True  # no state change: no event
    with session_scope(url) as session:
        rows = session.scalars(select(Event).order_by(Event.id)).all()
        told = [(e.kind, e.page, e.detail.get("state"), e.fonds) for e in rows]
        last = rows[-1].detail
    assert told == [
        ("batch_state", None, "receiving", "C015"),
        ("batch_state", None, "queued", "C015"),  # its pages recorded as queued: no event each
        ("page_progress", 1, "processing", "C015"),
        ("page_progress", 1, "done", "C015"),  # a separator sheet: no page_flagged
        ("page_progress", 2, "processing", "C015"),
        ("page_progress", 2, "done", "C015"),
        ("page_flagged", 2, None, "C015"),
        ("page_progress", 3, "processing", "C015"),
        ("page_progress", 3, "failed", "C015"),
        ("batch_state", None, "failed", "C015"),
    ]
    assert rows[5].detail["batch_pages"] == {"total": 3, "done": 2} and rows[6].detail["flags"] == [
        "orientation_unsure"
    ]
    assert last == {
        "from": "queued",
        "state": "failed",
        "pages": {"total": 3, "done": 3},
        "error_code": "all_pages_failed",
        "error": "Every page failed",
    }


def test_ids_held_back_by_a_gap_wait_for_it_then_come_in_order() -> None:
    cursor = stream.Cursor(10)
    assert cursor.take([(11, 0.0, "a"), (13, 0.0, "c")], now=0.0) == ["a"], "13 waits: 12 may still commit"
    assert cursor.take([(13, 0.0, "c"), (14, 1.0, None)], now=1.0) == []
    assert cursor.take([(12, 2.0, "b"), (13, 0.0, "c"), (14, 1.0, None), (15, 2.0, "e")], now=2.0) == ["b", "c", "e"]
    assert cursor.take([(17, 3.0, "g")], now=3.0) == []
    assert cursor.take([(17, 3.0, "g")], now=3.0 + stream.GRACE_SECONDS) == ["g"], "16 never came: given up on"
    assert cursor.floor == 17 and cursor.take([(16, 3.0, "late")], now=100.0) == []
    old = stream.Cursor(0)
    assert old.take([(2, 0.0, "b"), (4, 1.0, "d")], now=60.0) == ["b", "d"], "rows written long ago wait for nothing"


def test_api_events_and_the_stream_show_a_batch_only_to_who_may_see_it(station_env: Settings) -> None:
    url = station_env.effective_database_url
    with session_scope(url) as session:
        named = _batch_with_pages(session, 1)  # C015 by its name
        unnamed = Batch(name="scan 7", state=BatchState.receiving, source="inbox", filing={})
        session.add(unnamed)
        session.flush()
        record_event(session, EventKind.correction, batch_id=named.id, fonds="C015", detail={"n": "C015"})
        record_event(session, EventKind.correction, batch_id=unnamed.id, detail={"n": "unnamed"})
        record_event(session, EventKind.correction, fonds="C999", detail={"n": "gone, C999"})
    client = TestClient(create_app(station_env))
    callers = {
        "admin": ("admin", None),
        "C015 operator": ("operator", "C015"),
        "C999 operator": ("operator", "C999"),
        "C015 archivist": ("archivist", "C015"),
        "C015 reader": ("reader", "C015"),
    }
    seen, listed = {}, {}
    for who, (role, fonds) in callers.items():
        headers = bearer(station_env, role, fonds)
        reply = client.get("/api/events", params={"kind": ["batch_state", "correction"]}, headers=headers)
        assert reply.status_code == 200, reply.text
        listed[who] = [(e["kind"], e["batch_id"], e["detail"].get("n")) for e in reply.json()["events"]]
        seen[who] = {(batch, n) for kind, batch, n in listed[who]}
    both = {(named.id, None), (named.id, "C015")}
    assert seen["admin"] == both | {(unnamed.id, None), (unnamed.id, "unnamed"), (None, "gone, C999")}
    assert seen["C015 operator"] == both | {(unnamed.id, None), (unnamed.id, "unnamed")}
    assert seen["C999 operator"] == {(unnamed.id, None), (unnamed.id, "unnamed"), (None, "gone, C999")}
    assert seen["C015 archivist"] == both, "a batch of no known fonds is the operators'"
    assert seen["C015 reader"] == set(), "a reader sees no batch's events"
    with session_scope(url) as session:
        tokens = session.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        for who, token in zip(callers, tokens, strict=True):
            frames = [f for _, _, f in stream._read(url, access.Caller.of_token(token), 0) if f is not None]
            sent = [json.loads(f.split("data: ", 1)[1]) for f in frames]
            told = [(e["kind"], e["batch_id"], e["detail"].get("n")) for e in sent]
            assert [t for t in told if t[0] in ("batch_state", "correction")] == listed[who], (
                f"the stream shows {who} the same"
            )


def test_a_stream_ends_soon_after_its_login_does(
    station_env: Settings, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "RECHECK_SECONDS", 0.5)
    url = station_env.effective_database_url
    with session_scope(url) as session:
        people.create_user(session, name="lin", role="operator", password=PASSWORD, settings=station_env)
    with serving(station_env) as base:
        for end in ("logout", "disabled", "expired"):
            with httpx.Client() as client:
                login = client.post(f"{base}/api/session", json={"name": "lin", "password": PASSWORD})
                assert login.status_code == 200, login.text
                cookie = login.cookies["scanstation_session"]
                csrf = login.json()["csrf_token"]
            with (
                httpx.Client(timeout=httpx.Timeout(10.0)) as watcher,
                watcher.stream("GET", f"{base}/api/stream", headers={"Cookie": f"scanstation_session={cookie}"}) as r,
            ):
                lines = r.iter_lines()
                assert next(lines).startswith("retry:")
                if end == "logout":
                    headers = {"Cookie": f"scanstation_session={cookie}", "X-CSRF-Token": csrf}
                    assert httpx.delete(f"{base}/api/session", headers=headers).status_code == 204
                with session_scope(url) as session:
                    if end == "disabled":
                        people.set_disabled(session, "lin", True)
                    elif end == "expired":
                        row = people.active_session(session, cookie)
                        row.expires_at = row.expires_at - timedelta(hours=station_env.session_hours)
                began = time.monotonic()
                rest = list(lines)  # the server ends the stream
                took = time.monotonic() - began
            assert took < 5 and not any(line.startswith("id:") for line in rest), (end, took, rest)
            if end == "disabled":
                with session_scope(url) as session:
                    people.set_disabled(session, "lin", False)


@pytest.mark.slow
def test_a_replay_of_old_events_does_not_wait_at_gaps(station_env: Settings, postgres_url: str, fast: None) -> None:
    settings = station_env.model_copy(update={"database_url": postgres_url})
    migrate(postgres_url)
    admin = bearer(settings)
    engine = get_engine(postgres_url)
    for n in ("first", "lost", "second", "lost", "third"):
        with Session(engine) as session:
            record_event(session, EventKind.correction, fonds="C015", detail={"n": n})
            session.flush()
            if n == "lost":
                session.rollback()  # its id is never used: a gap
            else:
                session.commit()
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET at = at - interval '1 hour'"))
    with serving(settings) as base:
        began = time.monotonic()
        got = watch(base, admin, lambda got: len(events(got)) >= 3, timeout=30, after=0)
        took = time.monotonic() - began
    assert [b.data and b.data["detail"]["n"] for b in events(got)] == ["first", "second", "third"]
    assert took < stream.GRACE_SECONDS / 2, f"a replay waited {took:.1f} s at the gaps"


@pytest.mark.slow
def test_rows_postgresql_commits_out_of_order_are_each_sent_once_in_order(
    station_env: Settings, postgres_url: str, monkeypatch: pytest.MonkeyPatch, fast: None
) -> None:
    monkeypatch.setattr(stream, "GRACE_SECONDS", 3.0)
    settings = station_env.model_copy(update={"database_url": postgres_url})
    migrate(postgres_url)
    admin = bearer(settings)
    engine = get_engine(postgres_url)
    got: list[Block] = []

    opened = threading.Event()

    def viewer(base: str) -> None:
        got.extend(watch(base, admin, lambda got: len(events(got)) >= 3, timeout=30, opened=opened))

    with serving(settings) as base:
        thread = threading.Thread(target=viewer, args=(base,))
        thread.start()
        # Connected, reading from now: on a busy machine the reply took over a second, and the stream
        # then started after the first rows below were written (CI saw only "after").
        assert opened.wait(20), "the stream answered"
        time.sleep(1.0)  # a poll or two with nothing new
        with engine.connect() as conn:
            idle = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in%'"
            assert conn.execute(text(idle)).scalar() == 0, "an open stream holds no transaction open"
        late, early, lost, after = (Session(engine) for _ in range(4))
        late_event = record_event(late, EventKind.correction, fonds="C015", detail={"n": "late"})
        late.flush()  # its id is taken now, its commit comes later
        late_id = late_event.id
        record_event(early, EventKind.correction, fonds="C015", detail={"n": "early"})
        early.commit()
        time.sleep(1.5)
        assert events(got) == [], "the row above an uncommitted id waits for it"
        late.commit()
        record_event(lost, EventKind.correction, fonds="C015", detail={"n": "lost"})
        lost.flush()
        lost.rollback()  # its id is never used
        record_event(after, EventKind.correction, fonds="C015", detail={"n": "after"})
        after.commit()
        thread.join(30)
        for s in (late, early, lost, after):
            s.close()
    sent = events(got)
    assert [b.data and b.data["detail"]["n"] for b in sent] == ["late", "early", "after"]
    assert sent[0].id == late_id and [b.id for b in sent] == sorted({b.id for b in sent})


@pytest.mark.slow
def test_the_api_with_a_stream_open_stops_on_sigterm_at_once(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("scanstation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
    data = tmp_path / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        api = subprocess.Popen(
            [str(exe), "api", "--data", str(data), "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and api.poll() is None, log.read_text()
                time.sleep(0.2)
        token = subprocess.run(
            [str(exe), "token", "create", "--data", str(data), "--role", "admin"],
            capture_output=True, text=True, check=True, env=env,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        ended = []
        with httpx.stream("GET", f"{base}/api/stream", headers={"Authorization": f"Bearer {token}"}, timeout=40) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("retry:")
            began = time.monotonic()
            api.send_signal(signal.SIGTERM)
            ended = list(lines)  # the server ends the stream: no error, no cut-off chunk
        api.wait(30)
        took = time.monotonic() - began
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
    assert took < 30 and api.returncode is not None
    assert ended == [""], "the stream ended cleanly, nothing after the retry hint"
    assert "graceful shutdown exceeded" not in log.read_text(), "the stream ended by itself, not cancelled"
