"""Fixity: re-read every archived file and compare it with the SHA-256 recorded when it was written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.archive.filing import file_sha256
from scanner_service.archive.models import ArchiveFile

# Folders of the archive that hold no records.
_NOT_RECORDS = (".locks",)


@dataclass
class AuditReport:
    checked: int = 0
    bytes_read: int = 0
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (path, recorded, now)
    missing: list[str] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing)

    def lines(self) -> list[str]:
        out = [f"CHANGED  {path}  recorded {old[:16]}…  now {new[:16]}…" for path, old, new in self.changed]
        out += [f"MISSING  {path}" for path in self.missing]
        out += [f"UNTRACKED {path}  (not written by filing; check where it came from)" for path in self.untracked]
        return out


def audit(session: Session, archive: Path, *, fonds: str | None = None) -> AuditReport:
    """Check every recorded file under ``archive`` (of one fonds, if given); also list files nobody recorded."""
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
            continue
        digest, size = file_sha256(path)
        report.checked += 1
        report.bytes_read += size
        if digest != row.sha256:
            report.changed.append((row.path, row.sha256, digest))
    top = archive / fonds.upper() if fonds else archive
    if top.is_dir():
        for path in sorted(top.rglob("*")):
            rel = path.relative_to(archive)
            # Files left in a .staging- folder by a filing cut off midway are listed too: someone must look.
            if path.is_file() and rel.parts[0] not in _NOT_RECORDS and str(rel) not in recorded:
                report.untracked.append(str(rel))
    return report
