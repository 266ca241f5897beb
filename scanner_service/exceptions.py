"""The station's errors. Each has a stable code, mapped once to an HTTP status and once to an exit code.

Code decides by ``error.code`` or by class, never by the text of a message.
"""

from __future__ import annotations


class ScanstationError(Exception):
    """Base of every error the station raises on purpose; ``str()`` is a message for a person.

    ``code`` names the kind of error; ``reason_code`` the precise reason within it (the same as
    ``code`` unless a subclass says more, e.g. why a file was quarantined or a filing refused).
    """

    code = "error"
    http_status = 500
    exit_code = 1

    def __init__(self, message: str, *, reason_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason_code = reason_code or self.code


class MissingProgram(ScanstationError):
    """An external program (tesseract, ghostscript, redis-server, …) is not installed or too old."""

    code = "missing_program"
    exit_code = 3


class UnusableInput(ScanstationError):
    """A file the station cannot use: quarantined with this reason; the rest of the batch goes on."""

    code = "unusable_input"
    http_status = 422
    exit_code = 4

    def __init__(self, message: str, *, reason_code: str = "unusable") -> None:
        super().__init__(message, reason_code=reason_code)


class TransientError(ScanstationError):
    """An error that can pass (a program crashed, a timeout): the job is retried with back-off."""

    code = "transient"
    exit_code = 5


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


class Conflict(ScanstationError):
    """The request clashes with what is there (an item that already has pages, …)."""

    code = "conflict"
    http_status = 409
    exit_code = 10


class ConfigError(ScanstationError):
    code = "config"
    exit_code = 2


class StorageError(ScanstationError):
    """The archive's disk refused a write: nothing was filed (or it is undone at the next start)."""

    code = "storage"
    http_status = 503
    exit_code = 12


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
