"""Filing under faults: whatever breaks, no page is lost or duplicated, the catalogue and the archive
agree (``scanstation audit`` clean) and the item is either as it was or fully filed.

The batches are scanned once per module through the real jobs (real OCR, real Redis); each test
works on its own copy of that data folder, with the real file system and a real SQLite catalogue.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pikepdf
import pytest
import redis
from sqlalchemy import select

from scanner_service import filing
from scanner_service.db import get_engine, migrate, session_scope
from scanner_service.fixity import audit
from scanner_service.models import Batch, Item, Original
from scanner_service.settings import Settings, build_settings
from scanner_service.watcher import Watcher
from tests.conftest import copy_sample
from tests.test_pipeline import run_queue

pytestmark = pytest.mark.slow

CODE = "C015-WS·2013-Y-BGS-0001"
BATCH_A = ["scan_0004.jpg", "scan_0002.jpg"]  # filed first: the item's two pages
BATCH_B = ["scan_0001.jpg", "scan_0003.jpg"]  # the rescan


@dataclass
class Template:
    unfiled: Path  # data folder: batches a and b processed, nothing filed
    filed: Path  # the same with batch a filed as the item's two pages
    a: int
    b: int


def _settings(data: Path) -> Settings:
    return build_settings(data=data, inbox=data.parent / "inbox")


def _scan(settings: Settings, conn: redis.Redis, name: str, pages: list[str]) -> int:
    folder = settings.inbox / name
    copy_sample(folder, pages)
    (folder / ".done").touch()
    watcher = Watcher(settings, conn)
    watcher.poll()
    run_queue(conn, watcher)
    with session_scope(settings.effective_database_url) as session:
        return session.scalars(select(Batch.id).where(Batch.name == name)).one()


def _release(settings: Settings) -> None:
    """Close the catalogue's connections so the folder can be copied (or thrown away) whole."""
    get_engine(settings.effective_database_url).dispose()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Template]:
    root = tmp_path_factory.mktemp("template")
    (root / "inbox").mkdir()
    conn = redis.Redis.from_url(redis_url)
    conn.flushall()
    with pytest.MonkeyPatch.context() as env:
        # The jobs read their settings from the environment, as a worker does.
        for key, value in {
            "SCANSTATION_DATA": str(root / "data"),
            "SCANSTATION_INBOX": str(root / "inbox"),
            "SCANSTATION_REDIS_URL": redis_url,
            "SCANSTATION_QUIET_SECONDS": "1.5",
            "SCANSTATION_POLL_SECONDS": "0.2",
            "SCANSTATION_RETRY_BACKOFF": "0",
            "OMP_THREAD_LIMIT": "1",
        }.items():
            env.setenv(key, value)
        settings = build_settings()
        migrate(settings.effective_database_url)
        a = _scan(settings, conn, "a", BATCH_A)  # not named by a 档号: processed, not filed
        b = _scan(settings, conn, "b", BATCH_B)
    conn.close()
    _release(settings)
    filed = root / "filed"
    shutil.copytree(settings.data, filed)
    filed_settings = _settings(filed)
    filing.file_batch(filed_settings, a, CODE, may_create=True)
    _release(filed_settings)
    yield Template(unfiled=settings.data, filed=filed, a=a, b=b)


@pytest.fixture
def filed_item(template: Template, tmp_path: Path) -> Iterator[Settings]:
    """A station whose item CODE has batch a's two pages; batch b is processed and not filed."""
    data = tmp_path / "data"
    shutil.copytree(template.filed, data)
    (tmp_path / "inbox").mkdir()
    settings = _settings(data)
    yield settings
    _release(settings)


# ---- what a user would check -------------------------------------------------------------------


def _pages(settings: Settings) -> list[tuple[int, int | None, int | None, str]]:
    """The item's pages as the catalogue has them: (serial, batch, batch page, master)."""
    with session_scope(settings.effective_database_url) as session:
        item = session.scalars(select(Item).where(Item.archival_code == CODE)).one_or_none()
        return [] if item is None else [(p.serial, p.batch_id, p.batch_seq, p.master_name) for p in item.pages]


def _agree(settings: Settings) -> None:
    """The catalogue and the archive agree: audit clean, each master holds its own page, the PDF has them all."""
    with session_scope(settings.effective_database_url) as session:
        report = audit(session, settings.archive_dir)
        assert (report.changed, report.missing, report.untracked) == ([], [], []), report.lines()
        for item in session.scalars(select(Item)):
            folder = settings.archive_dir / item.folder
            masters = sorted(p.name for p in folder.glob(f"{item.archival_code}-*"))
            assert masters == sorted(p.master_name for p in item.pages), "one master per page, no more"
            for page in item.pages:
                original = session.scalars(
                    select(Original).join(Batch).where(Batch.id == page.batch_id).order_by(Original.seq)
                ).all()[(page.batch_seq or 0) - 1]
                stored = settings.spool_dir / str(page.batch_id) / "originals" / original.stored_name
                assert (folder / page.master_name).read_bytes() == stored.read_bytes(), (
                    f"{page.master_name} must be batch {page.batch_id}'s page {page.batch_seq}"
                )
            if item.pages:
                with pikepdf.open(folder / f"{item.archival_code}.pdf") as pdf:
                    assert len(pdf.pages) == len(item.pages)


# ---- the defect of issue 9 ---------------------------------------------------------------------


def test_a_failure_after_the_renames_of_an_insert_leaves_the_item_as_it_was(
    filed_item: Settings, template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = filed_item
    before = _pages(settings)
    assert [(serial, batch) for serial, batch, _, _ in before] == [(1, template.a), (2, template.a)]
    _agree(settings)

    def disk_fails(*_args: object, **_kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(filing, "write_description", disk_fails)  # item.json cannot be written
    with pytest.raises(OSError):
        filing.file_batch(settings, template.b, CODE, seqs=[1], mode="insert", at=1)
    monkeypatch.undo()

    assert _pages(settings) == before, "the catalogue is as it was"
    _agree(settings)
    result = filing.file_batch(settings, template.b, CODE, seqs=[1], mode="insert", at=1)
    assert result.pages_filed == 3
    assert [(batch, seq) for _, batch, seq, _ in _pages(settings)] == [
        (template.b, 1),
        (template.a, 1),
        (template.a, 2),
    ]
    _agree(settings)
