"""The catalogue on SQLite and on PostgreSQL: migrations, recording a batch, one assembly per batch."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import inspect, select

from scanner_service import intake
from scanner_service.db import get_engine, migrate, session_scope
from scanner_service.durable import sha256_of
from scanner_service.exceptions import Unauthorized
from scanner_service.models import Batch, BatchState, Page, PageState
from scanner_service.settings import build_settings
from scanner_service.tokens import authenticate, create_token
from tests.conftest import copy_sample
from workers.jobs import claim_assembly


def test_migrations_create_the_schema_and_run_twice(catalogue_url: str) -> None:
    migrate(catalogue_url)
    migrate(catalogue_url)  # every role runs it at start: must be harmless
    tables = set(inspect(get_engine(catalogue_url)).get_table_names())
    assert {"batches", "originals", "pages", "api_tokens", "alembic_version"} <= tables


def test_recording_keeps_names_sizes_and_checksums(catalogue_url: str, tmp_path: Path) -> None:
    migrate(catalogue_url)
    settings = build_settings(data=tmp_path / "data", inbox=tmp_path / "inbox", database_url=catalogue_url)
    folder = tmp_path / "inbox" / "C015-WS·2013-Y-BGS-0001"
    files = copy_sample(folder, ["scan_0001.jpg", "scan_0007.png"])
    with session_scope(catalogue_url) as session:
        batch_id = intake.record(session, settings, folder).id
    with session_scope(catalogue_url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None and batch.state == BatchState.receiving
        assert batch.name == "C015-WS·2013-Y-BGS-0001"
        assert [(o.name, o.size, o.sha256) for o in batch.originals] == [
            (f.name, f.stat().st_size, sha256_of(f).sha256) for f in files
        ]


def test_exactly_one_caller_claims_the_assembly(catalogue_url: str, tmp_path: Path) -> None:
    """Pages finishing at the same moment in many workers: the batch is assembled once."""
    migrate(catalogue_url)
    with session_scope(catalogue_url) as session:
        batch = Batch(name="b", state=BatchState.processing, source="/x", is_folder=True)
        session.add(batch)
        session.flush()
        from scanner_service.models import Original

        original = Original(batch_id=batch.id, seq=1, name="a.tif", stored_name="a.tif", size=1, sha256="0" * 64)
        session.add(original)
        session.flush()
        for seq in range(1, 9):
            session.add(
                Page(
                    batch_id=batch.id,
                    original_id=original.id,
                    seq=seq,
                    source_index=seq - 1,
                    state=PageState.queued,
                )
            )
        batch_id = batch.id
    assert not claim_assembly(catalogue_url, batch_id), "pages are still open"
    with session_scope(catalogue_url) as session:
        for page in session.scalars(select(Page).where(Page.batch_id == batch_id)):
            page.state = PageState.done
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def finish() -> None:
        barrier.wait()
        wins.append(claim_assembly(catalogue_url, batch_id))

    threads = [threading.Thread(target=finish) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_tokens_authenticate_by_hash_only(catalogue_url: str) -> None:
    migrate(catalogue_url)
    with session_scope(catalogue_url) as session:
        secret = create_token(session, role="reader", fonds="C999", name="村档案室")
    with session_scope(catalogue_url) as session:
        record = authenticate(session, secret)
        assert (record.role.value, record.fonds, record.name) == ("reader", "C999", "村档案室")
        try:
            authenticate(session, secret + "x")
        except Unauthorized:
            pass
        else:
            raise AssertionError("a wrong token was accepted")
