"""Fixity: re-read every archived file and compare it with the SHA-256 recorded when it was written.

Also lists files nobody recorded (a stray copy, or what a filing cut off left in its staging folder)
and filings under way or cut off (their journals): recovery at the next start resolves those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.archive.filing.items import LOCK_DIR
from scanner_service.archive.filing.journal import JOURNAL_DIR, pending
from scanner_service.archive.models import ArchiveFile, FileKind
from workers.durable import sha256_of

# Folders of the archive that hold no records.
_NOT_RECORDS = (LOCK_DIR, JOURNAL_DIR)


@dataclass
class AuditReport:
    checked: int = 0
    bytes_read: int = 0
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (path, recorded, now)
    missing: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # 档号 of filings under way or cut off
    kinds: dict[str, FileKind] = field(default_factory=dict)  # what each changed or missing file is

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing)

    def lines(self) -> list[str]:
        out = [
            f"CHANGED  {path}  ({self.kinds[path].value}) recorded {old[:16]}…  now {new[:16]}…"
            for path, old, new in self.changed
        ]
        out += [f"MISSING  {path}  ({self.kinds[path].value})" for path in self.missing]
        out += [f"UNTRACKED {path}  (not written by filing; check where it came from)" for path in self.untracked]
        out += [
            f"PENDING  {code}  (a filing under way or cut off; the next start finishes or undoes it)"
            for code in self.pending
        ]
        return out


def audit(session: Session, archive: Path, *, fonds: str | None = None) -> AuditReport:
    """Check every recorded file under ``archive`` (of one fonds, if given); also list files nobody
    recorded and filings under way or cut off."""
    report = AuditReport()
    recorded: set[str] = set()
    stmt = select(ArchiveFile).order_by(ArchiveFile.path)
    if fonds:
        stmt = stmt.where(ArchiveFile.path.startswith(fonds.upper() + "/"))
    for row in session.scalars(stmt):
        recorded.add(row.path)
        path = archive / row.path
        if not path.is_file():
            report.missing.append(row.path)
            report.kinds[row.path] = row.kind
            continue
        digest = sha256_of(path)
        report.checked += 1
        report.bytes_read += digest.size
        if digest.sha256 != row.sha256:
            report.changed.append((row.path, row.sha256, digest.sha256))
            report.kinds[row.path] = row.kind
    top = archive / fonds.upper() if fonds else archive
    if top.is_dir():
        for path in sorted(top.rglob("*")):
            rel = path.relative_to(archive)
            # Files left in a .staging- folder by a filing cut off midway are listed too: someone must look.
            if path.is_file() and rel.parts[0] not in _NOT_RECORDS and str(rel) not in recorded:
                report.untracked.append(str(rel))
    report.pending = [
        j.archival_code for j in pending(archive) if not fonds or j.folder.startswith(fonds.upper() + "/")
    ]
    return report
