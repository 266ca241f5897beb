"""The station at a glance (``GET /api/station``): the queue, the workers, and the disk the archive is on.

The disk warning is decided here, from the file system's own numbers (``os.statvfs``), so that the
rule can be tested with made-up numbers:

- A page takes up to about 3 MiB once filed (the master as scanned, its usage image, thumbnail and OCR,
  its share of the PDF; a 300 dpi colour JPEG master is 1–3 MB), and a batch waits in the spool while
  it is processed, so :data:`PAGE_BYTES` is 3 MiB: "pages that still fit" is an estimate on the safe side.
- The warning comes on when what is left would hold fewer than :data:`WARN_PAGES` (2,000) pages, about
  6 GiB or a day or two of scanning, or when less than :data:`WARN_FRACTION` (5 %) of the file system is
  free: file systems slow down and ext4 keeps its last 5 % for root. Either is time to free space or
  move the archive before a filing stops with ``disk_full``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from rq import Worker
from rq.worker import WorkerStatus

from scanner_service.archive.layout import Layout
from scanner_service.settings import Settings
from scanner_service.station import queue as q

PAGE_BYTES = 3 * 2**20
"""What one page is reckoned to take on the archive's disk, filed (see the module's docstring)."""
WARN_PAGES = 2000
"""Warn when fewer pages than this still fit."""
WARN_FRACTION = 0.05
"""Warn when less than this share of the file system is free."""


@dataclass(frozen=True)
class DiskStatus:
    """The file system the archive is written to."""

    path: str
    total_bytes: int
    free_bytes: int  # what the station (not root) may still write
    pages_fit: int  # about how many more pages, at PAGE_BYTES each
    warning: bool
    reason: str | None  # "few_pages" or "low_fraction" when warning


@dataclass(frozen=True)
class QueueStatus:
    """The RQ side: reachable or not, jobs waiting, workers alive and those at work."""

    redis: bool
    queued: int  # jobs waiting in the queue (pages, assemblies, corrections)
    running: int  # jobs being worked on now
    scheduled: int  # jobs waiting for a retry at a later time
    workers: int
    busy: int


def disk_decision(total_bytes: int, free_bytes: int) -> tuple[int, bool, str | None]:
    """(pages that still fit, warn?, why) for a file system of ``total_bytes`` with ``free_bytes`` free."""
    pages = max(free_bytes, 0) // PAGE_BYTES
    if pages < WARN_PAGES:
        return pages, True, "few_pages"
    if total_bytes > 0 and free_bytes < WARN_FRACTION * total_bytes:
        return pages, True, "low_fraction"
    return pages, False, None


def _existing(path: Path) -> Path:
    # The archive folder is made at the first filing; until then its file system is its parent's.
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_status(settings: Settings, statvfs: Callable[[Path], os.statvfs_result] = os.statvfs) -> DiskStatus:
    """The archive's file system: its size, what is free, how many pages fit, and whether to warn."""
    path = _existing(Layout.of(settings).archive)
    numbers = statvfs(path)
    total = numbers.f_blocks * numbers.f_frsize
    free = numbers.f_bavail * numbers.f_frsize
    pages, warning, reason = disk_decision(total, free)
    return DiskStatus(str(path), total, free, pages, warning, reason)


def queue_status(connection: redis.Redis) -> QueueStatus:
    """The queue and the workers; Redis unreachable gives ``redis: False`` and zeros, never an error
    (the panel is how a person finds out)."""
    try:
        queue = q.get_queue(connection)
        workers = Worker.all(queue=queue)
        busy = sum(w.get_state() == WorkerStatus.BUSY for w in workers)
        return QueueStatus(
            redis=True,
            queued=queue.count,
            running=queue.started_job_registry.count,
            scheduled=queue.scheduled_job_registry.count,
            workers=len(workers),
            busy=busy,
        )
    except redis.RedisError:
        return QueueStatus(redis=False, queued=0, running=0, scheduled=0, workers=0, busy=0)


def station_status(settings: Settings) -> dict[str, Any]:
    """``queue`` (:class:`QueueStatus`), ``disk`` (:class:`DiskStatus`) and the OCR settings, as plain data."""
    connection = q.connect(settings)
    try:
        queue = queue_status(connection)
    finally:
        connection.close()
    ocr = {"engine": settings.ocr_engine, "runtime": settings.ocr_runtime}
    return {"queue": asdict(queue), "disk": asdict(disk_status(settings)), "ocr": ocr}
