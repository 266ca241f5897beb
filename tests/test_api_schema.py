"""Schemathesis against the app's own OpenAPI, in process: no request a client can send gives a 5xx, and
every answer conforms to the documented statuses, media types and schemas.

A real catalogue (SQLite in tmp) with a filed item (one page through the real jobs), a catalogue entry and
a batch, and real Redis with a worker registered, so that the routes have data to answer with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import schemathesis
from rq import Worker
from schemathesis.engine import Status, events

from scanner_service.api.app import create_app
from scanner_service.archive.catalogue_import import read_catalogue
from scanner_service.archive.catalogue_store import import_catalogue
from scanner_service.archive.db import migrate, session_scope
from scanner_service.archive.tokens import create_token
from scanner_service.settings import build_settings
from scanner_service.station import queue as q
from tests.test_archive import accept, scan

pytestmark = pytest.mark.slow

FILED = "C015-WS·2013-Y-BGS-0001"
CATALOGUED = "C015-WS·2013-Y-BGS-0002"
MAX_EXAMPLES = 15  # per operation and phase: the whole run stays under about two minutes on 2 cores

# Random strings are almost never a 档号, so the generated paths also pick known ones half of the time.
CONFIG = {
    "seed": 2026,  # the same requests every run: a failure here is a bug, not bad luck
    "dictionaries": {"codes": {"values": [FILED, CATALOGUED, "C015-WS·2013·Y·BGS-0001", "C016-WS·2014-D30-0001"]}},
    "parameters": {"path.code": {"dictionary": "codes", "probability": 0.5}},
    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
    # Not positive_data_acceptance: a 档号 or a search text can match its JSON Schema and still be refused
    # with a reason (422 invalid_archival_code, bad_query).
    "checks": {
        "enabled": False,
        **{
            name: {"enabled": True}
            for name in (
                "not_a_server_error",
                "status_code_conformance",
                "content_type_conformance",
                "response_schema_conformance",
                "negative_data_rejection",
                "unsupported_method",
                "allow_header_conformance",
            )
        },
    },
}


@pytest.fixture
def api_schema(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[schemathesis.BaseSchema]:
    data, inbox = tmp_path / "data", tmp_path / "inbox"
    inbox.mkdir()
    for key, value in {
        "SCANSTATION_DATA": str(data),
        "SCANSTATION_INBOX": str(inbox),
        "SCANSTATION_REDIS_URL": redis_url,
        "SCANSTATION_RETRY_BACKOFF": "0",
        "OMP_THREAD_LIMIT": "1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SCANSTATION_DATABASE_URL", raising=False)
    settings = build_settings()
    migrate(settings.effective_database_url)
    conn = redis.Redis.from_url(redis_url)
    conn.flushall()
    batch = scan(settings, conn, FILED, ["scan_0001.jpg", "scan_0006.jpg"])
    accept(settings, conn, batch.id)  # the blank back accepted: the item is filed
    sheet = tmp_path / "目录.csv"
    sheet.write_text(f"序号,档号,题名,页数\n1,{CATALOGUED},村民委员会会议记录,3\n", encoding="utf-8")
    with session_scope(settings.effective_database_url) as session:
        import_catalogue(session, read_catalogue(sheet), actor="test", settings=settings)
        secret = create_token(session, role="admin", name="schemathesis")
    worker = Worker([q.get_queue(conn)], connection=conn)
    worker.register_birth()  # /healthz answers 200 (a 503 without a worker is right, but a 5xx all the same)
    try:
        config = schemathesis.Config.from_dict({**CONFIG, "headers": {"Authorization": f"Bearer {secret}"}})
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings), config=config)
        yield schema.exclude(path="/api/stream")  # it never ends by itself: tests/test_stream.py, on a real server
    finally:
        worker.register_death()
        conn.close()


def test_no_request_gives_a_server_error_or_an_undocumented_answer(api_schema: schemathesis.BaseSchema) -> None:
    failures: list[str] = []
    tested: set[str] = set()
    for event in schemathesis.engine.from_schema(api_schema).execute():
        if isinstance(event, events.ScenarioFinished):
            tested.add(event.recorder.label)
            for nodes in event.recorder.checks.values():
                failures += [
                    f"{event.recorder.label} [{event.phase.value}] {node.name}: {node.failure_info.failure.title}\n"
                    f"{node.failure_info.failure.message}\n{node.failure_info.code_sample}"
                    for node in nodes
                    if node.status == Status.FAILURE and node.failure_info is not None
                ]
        elif isinstance(event, events.NonFatalError):
            # In process, an exception in a route reaches the test instead of becoming a 500.
            failures.append(f"{event.label}: {type(event.value).__name__}: {event.value}")
        elif isinstance(event, events.FatalError):
            failures.append(f"{type(event.exception).__name__}: {event.exception}")
    assert "GET /api/items/{code}/pdf" in tested and "HEAD /api/batches/{batch_id}/pdf" in tested, tested
    assert not failures, "\n\n".join(sorted(set(failures)))
