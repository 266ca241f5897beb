"""The inbox watcher: notices complete batches, hands them to intake, and keeps the queue honest.

It only records and queues; it never processes a page. Polling (not inotify) so it works on
network shares.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from sqlalchemy import select

from scanner_service.archive import filing
from scanner_service.archive.batches import claim_assembly
from scanner_service.archive.corrections import item as item_corrections
from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import stored_path
from scanner_service.archive.models import Batch, BatchState, Page, PageState, as_utc
from scanner_service.exceptions import CatalogueBusy, DiskFull, ReadOnlyStorage
from scanner_service.settings import Settings
from scanner_service.station import intake
from scanner_service.station import queue as q

log = logging.getLogger(__name__)

# Problems that pass by themselves: the filing is tried again (see Watcher._retry_filing).
RETRY_FILING = frozenset({DiskFull.code, ReadOnlyStorage.code, CatalogueBusy.code})

Signature = tuple[tuple[str, int, int], ...]


def signature(path: Path) -> Signature:
    """Size and mtime of everything in a batch, temporary files included (they mean "still writing")."""
    if path.is_symlink() or not path.is_dir():
        st = path.lstat()
        return ((path.name, st.st_size, st.st_mtime_ns),)
    items = []
    for root, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            if name == intake.DONE_MARKER:
                continue
            full = Path(root) / name
            try:
                st = full.lstat()
            except FileNotFoundError:
                continue  # renamed while we looked: the next poll sees the new name
            items.append((str(full.relative_to(path)), st.st_size, st.st_mtime_ns))
    return tuple(sorted(items))


@dataclass
class _Seen:
    signature: Signature
    since: float


@dataclass
class _Trouble:
    """A batch (or an inbox entry) whose intake keeps failing: logged in full once, then counted quietly."""

    first: float
    attempts: int = 0
    give_up_failed: bool = False


class Watcher:
    """Polls the inbox; a batch is complete on ``.done`` or after ``quiet_seconds`` without change.

    A batch whose intake fails is tried again at each poll or sweep, with its traceback logged once; after
    ``give_up_after`` seconds (and three attempts) it ends ``failed`` with the reason instead of looping.
    """

    def __init__(self, settings: Settings, connection: redis.Redis, *, give_up_after: float = 60.0) -> None:
        self.settings = settings
        self.connection = connection
        self.queue = q.get_queue(connection)
        self.give_up_after = give_up_after
        self._seen: dict[str, _Seen] = {}
        self._troubles: dict[object, _Trouble] = {}
        # Inbox entries whose batch failed while they could not be moved out: left alone until they change.
        self._left_alone: dict[str, Signature] = {}

    def complete_batches(self, now: float | None = None) -> list[Path]:
        """The inbox entries that are complete now."""
        now = time.monotonic() if now is None else now
        inbox = self.settings.inbox
        ready: list[Path] = []
        present: set[str] = set()
        try:
            entries = sorted(os.scandir(inbox), key=lambda e: os.fsencode(e.name))
        except FileNotFoundError:
            inbox.mkdir(parents=True, exist_ok=True)
            return []
        for entry in entries:
            if intake.is_ignored(entry.name):
                continue
            path = Path(entry.path)
            present.add(entry.name)
            try:
                if entry.name in self._left_alone:
                    if signature(path) == self._left_alone[entry.name]:
                        continue
                    del self._left_alone[entry.name]
                if entry.is_dir(follow_symlinks=False) and (path / intake.DONE_MARKER).exists():
                    ready.append(path)
                    continue
                sig = signature(path)
            except FileNotFoundError:
                continue
            seen = self._seen.get(entry.name)
            if seen is None or seen.signature != sig:
                self._seen[entry.name] = _Seen(sig, now)
            elif sig and now - seen.since >= self.settings.quiet_seconds:
                ready.append(path)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        for gone in set(self._left_alone) - present:
            del self._left_alone[gone]
        return ready

    def poll(self, now: float | None = None) -> list[int]:
        """Receive every complete batch; one bad batch never stops the others."""
        received = []
        for path in self.complete_batches(now):
            self._seen.pop(path.name, None)
            try:
                batch_id = intake.record_batch(self.settings, path)
            except Exception as err:
                # Nothing is recorded (the catalogue is down, a file cannot be read): it stays in the inbox.
                self._failed(("inbox", path.name), err, f"could not record {path}; it stays in the inbox")
                continue
            self._troubles.pop(("inbox", path.name), None)
            if self._resume(batch_id, source=path):
                received.append(batch_id)
        return received

    def _resume(self, batch_id: int, *, source: Path | None = None) -> bool:
        """Carry a batch on; on failure count it, and after ``give_up_after`` fail it with the reason."""
        try:
            intake.resume(self.settings, self.queue, batch_id, source=source)
        except Exception as err:
            trouble = self._failed(batch_id, err, f"could not take in batch {batch_id}")
            if trouble.attempts >= 3 and time.monotonic() - trouble.first >= self.give_up_after:
                self._give_up(batch_id, err, trouble)
            return False
        self._troubles.pop(batch_id, None)
        return True

    def _failed(self, key: object, err: Exception, what: str) -> _Trouble:
        trouble = self._troubles.setdefault(key, _Trouble(first=time.monotonic()))
        trouble.attempts += 1
        if trouble.attempts == 1:
            log.exception("%s; trying again (logged once)", what)
        else:
            log.debug("%s again (%d attempts): %s", what, trouble.attempts, err)
        return trouble

    def _give_up(self, batch_id: int, err: Exception, trouble: _Trouble) -> None:
        try:
            inbox_clear = intake.give_up(self.settings, batch_id, err, trouble.attempts)
        except Exception:
            if not trouble.give_up_failed:
                log.exception("batch %s: could not even be marked failed; trying again (logged once)", batch_id)
                trouble.give_up_failed = True
            return
        del self._troubles[batch_id]
        log.error(
            "batch %s failed: its intake failed %d times in %.0f s (%s: %s)",
            batch_id,
            trouble.attempts,
            time.monotonic() - trouble.first,
            type(err).__name__,
            err,
        )
        if not inbox_clear:
            with session_scope(self.settings.effective_database_url) as session:
                batch = session.get(Batch, batch_id)
                source = stored_path(Path("/"), batch.source) if batch is not None else None
            if source is not None and source.parent == self.settings.inbox:
                with contextlib.suppress(FileNotFoundError):
                    self._left_alone[source.name] = signature(source)

    def sweep(self) -> None:
        """Repair what a crash may have left: half-received batches, lost jobs, a missing assembly."""
        q.requeue_abandoned(self.connection)
        url = self.settings.effective_database_url
        with session_scope(url) as session:
            receiving = session.scalars(select(Batch.id).where(Batch.state == BatchState.receiving)).all()
        for batch_id in receiving:
            self._resume(batch_id)
        self._requeue_lost_pages()
        self._requeue_lost_item_pages()
        self._ensure_assembly()
        for code, outcome in filing.recover_journals(self.settings, wait=False):
            log.warning("filing of %s cut off by a crash: %s", code, outcome)
        self._retry_filing()

    def _retry_filing(self) -> None:
        """A batch whose filing stopped on the archive's storage or a busy catalogue (disk full, read-only,
        locked) is assembled and filed again once it has waited ``filing_retry_seconds``: when space is
        back it is filed, once. Filing is all or nothing, so nothing of it is half there meanwhile."""
        url = self.settings.effective_database_url
        due = datetime.now(UTC) - timedelta(seconds=self.settings.filing_retry_seconds)
        with session_scope(url) as session:
            waiting = session.execute(
                select(Batch.id, Batch.filing, Batch.finished_at).where(Batch.state == BatchState.needs_review)
            ).all()
        for batch_id, report, finished in waiting:
            problems = (report or {}).get("problems") or []
            if not problems or any(p.get("code") not in RETRY_FILING for p in problems):
                continue
            if finished is not None and as_utc(finished) > due:
                continue
            if q.job_is_active(self.connection, q.assembly_job_id(batch_id)):
                continue
            log.info("batch %s: filing stopped by %s; trying again", batch_id, problems[0].get("code"))
            q.enqueue_assembly(self.queue, self.settings, batch_id)

    def _requeue_lost_pages(self) -> None:
        url = self.settings.effective_database_url
        with session_scope(url) as session:
            open_pages = session.scalars(
                select(Page.id).where(Page.state.in_([PageState.queued, PageState.processing]))
            ).all()
        for page_id in open_pages:
            if q.job_is_active(self.connection, q.page_job_id(page_id)):
                continue
            with session_scope(url) as session:
                page = session.get(Page, page_id)
                still_open = page is not None and page.state in (PageState.queued, PageState.processing)
            if still_open:
                log.warning("page %s had no job (lost with Redis?); queued again", page_id)
                q.enqueue_page(self.queue, self.settings, page_id)

    def _requeue_lost_item_pages(self) -> None:
        """A filed item with pages queued for derivation and no active job (lost with Redis, or the
        API stopped between the correction's commit and queuing the job): its job is queued again."""
        url = self.settings.effective_database_url
        with session_scope(url) as session:
            items = item_corrections.items_with_queued_pages(session)
        for item_id in items:
            if not q.item_job_active(self.connection, item_id):
                log.warning("item %s had queued pages and no job (lost with Redis?); queued again", item_id)
                q.enqueue_item_pages(self.queue, self.settings, item_id)

    def _ensure_assembly(self) -> None:
        """Queue the assembly of every batch that waits for one with no job: one being processed whose
        pages are all final, and one whose assembly was claimed (``assembly_queued``, whatever its state)
        but never queued or lost with Redis (a correction's queueing failed after its commit)."""
        url = self.settings.effective_database_url
        with session_scope(url) as session:
            due = session.scalars(
                select(Batch.id).where(
                    Batch.state != BatchState.discarded,
                    Batch.state.in_([BatchState.queued, BatchState.processing]) | Batch.assembly_queued.is_(True),
                )
            ).all()
        for batch_id in due:
            if claim_assembly(url, batch_id, reclaim=True) and not q.job_is_active(
                self.connection, q.assembly_job_id(batch_id)
            ):
                with session_scope(url) as session:
                    batch = session.get(Batch, batch_id)
                    still_due = batch is not None and batch.state != BatchState.discarded
                if still_due:
                    log.warning("batch %s waited for an assembly with no job; queued", batch_id)
                    q.enqueue_assembly(self.queue, self.settings, batch_id)

    def run(self, stop: threading.Event, sweep_every: float = 5.0) -> None:
        """Poll until ``stop`` is set. A second watcher on the same Redis waits for the first to stop."""
        lock = self.connection.lock(q.WATCHER_LOCK, timeout=60, blocking=True)
        while not stop.is_set() and not lock.acquire(blocking_timeout=5):
            log.info("another watcher is running; waiting")
        if stop.is_set():
            return
        try:
            self.settings.inbox.mkdir(parents=True, exist_ok=True)
            self.sweep()
            last_sweep = time.monotonic()
            while not stop.is_set():
                self.poll()
                if time.monotonic() - last_sweep >= sweep_every:
                    self.sweep()
                    last_sweep = time.monotonic()
                lock.extend(60, replace_ttl=True)
                stop.wait(self.settings.poll_seconds)
        finally:
            with contextlib.suppress(Exception):  # the lock may have expired: nothing to release
                lock.release()
