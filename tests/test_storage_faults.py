"""The station against its archive's storage: a full disk or a read-only archive during filing.

A clear reason on the batch, nothing half-filed, the station goes on, and once the archive can be
written again the batch is filed, once, without anyone filing it by hand. Real jobs, real OCR, a real
small file system (tmpfs) mounted over the archive folder.
"""

from __future__ import annotations

import pikepdf
import pytest
import redis

from scanner_service.archive.db import session_scope
from scanner_service.archive.fixity import audit
from scanner_service.archive.models import Batch, BatchState, Item
from scanner_service.settings import Settings
from scanner_service.station.watcher import Watcher
from tests.conftest import PLENTY, archive_on_tmpfs, copy_sample, mount
from tests.test_pipeline import run_queue

pytestmark = pytest.mark.slow

CODE = "C015-WS·2013-Y-BGS-0031"


def _batch(settings: Settings) -> Batch:
    with session_scope(settings.effective_database_url) as session:
        batch = session.query(Batch).filter(Batch.name == CODE).one()
        _ = batch.pages
        return batch


@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
def test_a_filing_the_archive_refuses_waits_and_files_once_it_can(
    fault: str, station_env: Settings, redis_conn: redis.Redis
) -> None:
    settings = station_env.model_copy(update={"filing_retry_seconds": 0.0})
    with archive_on_tmpfs(settings, free=64 << 10 if fault == "disk_full" else None) as archive:
        if fault == "read_only":
            mount("-o", "remount,ro", str(archive))
        folder = settings.inbox / CODE
        copy_sample(folder, ["scan_0001.jpg", "scan_0003.jpg"])  # two text pages, about 2.6 MB of masters
        (folder / ".done").touch()
        watcher = Watcher(settings, redis_conn)
        watcher.poll()
        run_queue(redis_conn)

        stuck = _batch(settings)
        assert stuck.state == BatchState.needs_review
        problems = stuck.filing["problems"]
        assert [p["code"] for p in problems] == [fault], problems
        assert "archive" in problems[0]["message"].lower()
        assert stuck.archival_code is None and not stuck.filing["items"]
        assert all(p.state.value == "done" for p in stuck.pages), "the pages themselves are fine"
        with session_scope(settings.effective_database_url) as session:
            assert session.query(Item).filter(Item.pages_filed > 0).count() == 0, "nothing half-filed"

        # Space is back (or the archive writable again): the sweep files the batch, once.
        mount("-o", f"remount,rw,size={PLENTY}", str(archive))
        watcher.sweep()
        run_queue(redis_conn)
        watcher.sweep()  # a second sweep finds nothing more to do
        run_queue(redis_conn)

        filed = _batch(settings)
        assert filed.state == BatchState.done, filed.filing
        assert filed.archival_code == CODE and not filed.filing["problems"]
        item_dir = next(archive.glob(f"C015/WS/2013/{CODE}"))
        masters = sorted(p.name for p in item_dir.glob(f"{CODE}-*"))
        assert masters == [f"{CODE}-0001.jpg", f"{CODE}-0002.jpg"]
        with pikepdf.open(item_dir / f"{CODE}.pdf") as pdf:
            assert len(pdf.pages) == 2
        with session_scope(settings.effective_database_url) as session:
            report = audit(session, archive)
            assert report.ok and not report.untracked and not report.pending, report.lines()
            [item] = session.query(Item).all()
            assert item.pages_filed == 2 and item.version == 1
