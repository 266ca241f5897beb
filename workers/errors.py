"""The errors of the imaging layer, and the base of every error the station raises on purpose.

They live at the bottom so that page stages, PDF building, the wrappers of external programs and the
OCR engines raise the station's own errors without importing anything above them.
:mod:`scanner_service.exceptions` re-exports these and adds the errors of the archive, the station and
the API; each error has a stable ``code``, mapped once to an HTTP status and once to an exit code.

Code decides by ``error.code``, ``error.reason_code`` or by class, never by the text of a message.
"""

from __future__ import annotations


class ScanstationError(Exception):
    """Base of every error the station raises on purpose; ``str()`` is a message for a person.

    ``reason_code`` says more precisely why (for example which check refused a filing); it is the
    error's ``code`` unless the error names a narrower reason.
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


class ConfigError(ScanstationError):
    """A setting, a model file or a value chosen by the operator is wrong; the message says which."""

    code = "config"
    exit_code = 2
