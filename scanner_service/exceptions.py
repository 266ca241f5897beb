"""The station's errors. Each has a stable code, mapped once to an HTTP status and once to an exit code.

The base class and the imaging layer's errors are defined at the bottom, in :mod:`workers.errors`, and
re-exported here; this module adds the errors of the archive, the station and the API. Code decides by
``error.code``, ``error.reason_code`` or by class, never by the text of a message.
"""

from __future__ import annotations

from workers.errors import ConfigError, MissingProgram, ScanstationError, TransientError, UnusableInput

__all__ = [
    "AccountLocked",
    "CatalogueBusy",
    "ConfigError",
    "Conflict",
    "DiskFull",
    "FilingInterrupted",
    "Forbidden",
    "MissingProgram",
    "NotFound",
    "PageFailed",
    "ReadOnlyStorage",
    "ScanstationError",
    "StationBusy",
    "StorageError",
    "TransientError",
    "Unauthorized",
    "UnusableInput",
]


class PageFailed(ScanstationError):
    """A page that cannot be processed, for good."""

    code = "page_failed"
    exit_code = 6


class NotFound(ScanstationError):
    code = "not_found"
    http_status = 404
    exit_code = 7


class Unauthorized(ScanstationError):
    code = "unauthorized"
    http_status = 401
    exit_code = 8


class Forbidden(ScanstationError):
    code = "forbidden"
    http_status = 403
    exit_code = 9


class AccountLocked(ScanstationError):
    """Too many failed logins in a row: the person's account refuses every password until ``until``.

    429 (with Retry-After) rather than 403: the name and password may well be right; what is refused
    is trying again so soon, and the client is told when it may.
    """

    code = "account_locked"
    http_status = 429
    exit_code = 15

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(ScanstationError):
    """The request clashes with what is there (an item that already has pages, …)."""

    code = "conflict"
    http_status = 409
    exit_code = 10


class StationBusy(ScanstationError):
    """``scanstation up`` cannot start: its data folder, Redis socket or port is in use by a live process.

    ``reason_code``: ``running`` (a station runs on this data folder), ``redis_in_use`` or ``port_in_use``.
    """

    code = "station_busy"
    exit_code = 12

    def __init__(self, message: str, *, reason_code: str, pid: int | None = None) -> None:
        super().__init__(message, reason_code=reason_code)
        self.pid = pid


class StorageError(ScanstationError):
    """The archive's disk refused a write: nothing was filed (or it is undone at the next start)."""

    code = "storage"
    http_status = 503
    exit_code = 14


class DiskFull(StorageError):
    code = "disk_full"
    http_status = 507


class ReadOnlyStorage(StorageError):
    code = "read_only"


class CatalogueBusy(TransientError):
    """Another writer held the catalogue longer than the station waits; nothing was written."""

    code = "catalogue_busy"
    http_status = 503


class FilingInterrupted(ScanstationError):
    """A filing stopped midway and could not be undone yet; the next start (or the next filing of the
    same item) finishes undoing it from its journal."""

    code = "filing_interrupted"
    http_status = 503
    exit_code = 13
