"""An export from start to end: choose the items, lay them on volumes, write each volume's folder and
manifest, then its ISO image if asked; record it (``ExportRecord``, and one 利用登记 line per item).

The folder is written under a temporary name beside ``to`` and renamed when complete: an export cut
off midway never looks like a finished one, and nothing is ever written over an existing folder.
The catalogue is read in one short transaction before any file is written, so a long copy holds no
transaction open.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from scanner_service.archive import access
from scanner_service.archive import archival_code as ac
from scanner_service.archive.db import session_scope
from scanner_service.archive.export import disc, site
from scanner_service.archive.export.choose import ExportSpec, LeftOut, Selection, choose_items
from scanner_service.archive.export.manifest import VOLUME_PREFIX, write_manifest
from scanner_service.archive.filing import describe, pdf_page_numbers
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ExportRecord, ExportState, Fonds, Item
from scanner_service.exceptions import Conflict, NotFound, UnusableInput
from scanner_service.settings import Settings

log = logging.getLogger(__name__)

PROGRESS_EVERY = 2.0  # seconds between progress writes to the export's record
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


@dataclass
class VolumeReport:
    folder: Path
    items: int
    pages: int
    bytes: int  # of every file written into it
    iso: Path | None = None


@dataclass
class ExportReport:
    export_id: int
    folder: Path
    volumes: list[VolumeReport] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    isos_written: list[Path] = field(default_factory=list)  # begun, in volume order (removed if it fails)

    @property
    def items(self) -> int:
        return sum(v.items for v in self.volumes)

    @property
    def pages(self) -> int:
        return sum(v.pages for v in self.volumes)

    @property
    def bytes(self) -> int:
        return sum(v.bytes for v in self.volumes)


def check_target(to: Path) -> None:
    """Conflict if ``to`` is a file or a folder with something in it; NotFound if its parent is missing."""
    if to.is_symlink() or to.is_file() or (to.is_dir() and any(to.iterdir())):
        raise Conflict(f"{to} already exists and is not empty: an export is never written over anything.")
    if not to.parent.is_dir():
        raise NotFound(f"{to.parent}: no such folder to write the export in.")


def check_iso(iso: Path, to: Path) -> None:
    """The ISO image is written beside the export, never inside it, never over a file, in a folder that is."""
    if to == iso or to in iso.parents:
        raise UnusableInput(f"{iso}: the ISO image cannot be inside the export folder {to}.", reason_code="iso_inside")
    if not iso.parent.is_dir():
        raise NotFound(f"{iso.parent}: no such folder to write the ISO image in.")
    taken = [p for p in (iso, *iso.parent.glob(f"{iso.stem}-*{iso.suffix or '.iso'}")) if p.exists()]
    if taken:
        raise Conflict(f"{taken[0]} already exists: an export is never written over anything.")


def fonds_touched(spec: ExportSpec, selection: Selection) -> list[str]:
    """Every fonds an export's record speaks of (asked, exported, left out): who may read the record."""
    codes = {item.fonds for item in selection.items} | {ac.parse(x.archival_code).fonds for x in selection.left_out}
    return sorted(codes | ({spec.fonds.upper()} if spec.fonds else set()))


def iso_paths(iso: Path, volumes: int) -> list[Path]:
    """The ISO image of each volume: ``iso`` itself for one volume, ``<stem>-N.iso`` beside it for more."""
    if volumes == 1:
        return [iso]
    return [iso.with_name(f"{iso.stem}-{n}{iso.suffix or '.iso'}") for n in range(1, volumes + 1)]


def export_archive(
    settings: Settings,
    caller: access.Caller,
    spec: ExportSpec,
    to: Path,
    *,
    iso: Path | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Export what ``spec`` asks and ``caller`` may export to the folder ``to`` (and ISO images)."""
    return prepare_export(settings, caller, spec, to, iso=iso).write(progress)


@dataclass
class PreparedExport:
    """An export chosen and recorded (state running), its files not written yet: the API answers with its
    record at once and writes it in the background."""

    settings: Settings
    caller: access.Caller
    spec: ExportSpec
    items: list[site.ExportItem]
    report: ExportReport
    iso: Path | None

    @property
    def export_id(self) -> int:
        return self.report.export_id

    def write(self, progress: Progress | None = None) -> ExportReport:
        """Write the export; on any failure nothing is left under its name and its record says why."""
        to = self.report.folder
        tmp = to.with_name(f".{to.name}.part-{uuid.uuid4().hex[:8]}")
        try:
            _write(self.settings, self.spec, self.caller, self.items, self.report, tmp, self.iso, progress)
        except BaseException as err:
            shutil.rmtree(tmp, ignore_errors=True)
            for path in self.report.isos_written:
                path.unlink(missing_ok=True)
            self.report.isos_written.clear()
            with session_scope(self.settings.effective_database_url) as session:
                session.execute(
                    update(ExportRecord)
                    .where(ExportRecord.id == self.export_id)
                    .values(
                        state=ExportState.failed, error=str(err) or type(err).__name__, finished_at=datetime.now(UTC)
                    )
                )
            raise
        return self.report


def prepare_export(
    settings: Settings, caller: access.Caller, spec: ExportSpec, to: Path, *, iso: Path | None = None
) -> PreparedExport:
    """Check the target, choose the items (errors here are the caller's: unknown items, a fonds not its
    own), read what the files need from the catalogue and record the export as running."""
    to = to.absolute()
    check_target(to)
    if iso is not None:
        iso = iso.absolute()
        check_iso(iso, to)
        disc.xorriso()  # before hours of copying, not after
    with session_scope(settings.effective_database_url) as session:
        selection = choose_items(session, caller, spec)
        if not selection.items:
            reasons = "; ".join(f"{x.archival_code}: {x.reason}" for x in selection.left_out[:5])
            raise UnusableInput(
                "Nothing to export: no open item with pages filed matches"
                + (
                    f" ({len(selection.left_out)} left out: {reasons}{' …' if len(selection.left_out) > 5 else ''})."
                    if reasons
                    else "."
                ),
                reason_code="nothing_to_export",
            )
        items = [_load(settings, session, item) for item in selection.items]
        record = ExportRecord(
            who=caller.name,
            role=caller.role.value,
            token_id=caller.token_id,
            user_id=caller.user_id,
            recipient=spec.recipient,
            purpose=spec.purpose,
            request={**spec.describe(), "fonds_touched": fonds_touched(spec, selection)},
            state=ExportState.running,
            folder=str(to),
            total_bytes=sum(item.pdf_size for item in items),
            left_out=[vars(x) for x in selection.left_out],
        )
        session.add(record)
        session.flush()
        report = ExportReport(record.id, to, left_out=list(selection.left_out))
    return PreparedExport(settings, caller, spec, items, report, iso)


def _write(
    settings: Settings,
    spec: ExportSpec,
    caller: access.Caller,
    items: list[site.ExportItem],
    report: ExportReport,
    tmp: Path,
    iso: Path | None,
    progress: Progress | None,
) -> None:
    url = settings.effective_database_url
    volumes, too_big = disc.plan_volumes(items, spec.volume_size)
    for item in too_big:
        report.left_out.append(
            LeftOut(item.archival_code, "too_big", f"its PDF ({item.pdf_size / 1e6:.0f} MB) does not fit on one volume")
        )
    if not volumes:
        raise UnusableInput(
            "Nothing to export: no item fits on a volume of that size.", reason_code="nothing_to_export"
        )
    single = len(volumes) <= 1
    folders = [tmp if single else tmp / f"{VOLUME_PREFIX}{n}" for n in range(1, len(volumes) + 1)] or [tmp]
    tmp.mkdir()
    written = [site.Volume(folder, n) for n, folder in enumerate(folders, 1)]
    total = sum(item.pdf_size for volume in volumes for item in volume)
    done = 0
    last_write = time.monotonic()

    def copied(size: int) -> None:
        nonlocal done, last_write
        done += size
        if progress is not None:
            progress(done, total)
        if time.monotonic() - last_write >= PROGRESS_EVERY:
            last_write = time.monotonic()
            with session_scope(url) as session:
                session.execute(
                    update(ExportRecord)
                    .where(ExportRecord.id == report.export_id)
                    .values(done_bytes=done, total_bytes=total)
                )

    kept: list[list[site.ExportItem]] = []
    for volume, on in zip(written, volumes, strict=False):
        volume.folder.mkdir(parents=True, exist_ok=True)
        bad = site.copy_pdfs(volume, on, copied)
        for item in bad:
            report.left_out.append(
                LeftOut(
                    item.archival_code,
                    "pdf_changed",
                    "its PDF is missing or changed since filing (run scanstation audit)",
                )
            )
        kept.append([item for item in on if item not in bad])
    everything = [item for on in kept for item in on]
    meta = _meta(caller, spec, everything, report.export_id)
    for volume, on in zip(written, kept, strict=False):
        site.write_volume(volume, on, everything, meta, len(written))
        write_manifest(volume)
    if iso is not None:  # from the folder still under its temporary name: a failure here leaves no export
        fonds = sorted({item.fonds for item in everything})
        day = str(meta["made_at"])[:10].replace("-", "")
        for number, (volume, path) in enumerate(zip(written, iso_paths(iso, len(written)), strict=True), 1):
            report.isos_written.append(path)
            disc.make_iso(volume.folder, path, disc.volume_label(fonds, day, number, len(written)))
    tmp.rename(report.folder)
    for number, (volume, on) in enumerate(zip(written, kept, strict=False)):
        final = report.folder if single else report.folder / volume.folder.name
        report.volumes.append(
            VolumeReport(
                final,
                len(on),
                sum(i.pages for i in on),
                sum(d.size for d in volume.files.values()),
                report.isos_written[number] if report.isos_written else None,
            )
        )
    _record_done(settings, caller, spec, report, everything, total)


def _load(settings: Settings, session: Session, item: Item) -> site.ExportItem:
    numbers = pdf_page_numbers(item)
    texts = [row.text or "" for row in sorted(item.pages, key=lambda r: r.serial) if numbers.get(row.id) is not None]
    fonds = session.get(Fonds, item.fonds)
    return site.ExportItem(
        archival_code=item.archival_code,
        code_key=item.code_key,
        fonds=item.fonds,
        fonds_name=fonds.name if fonds else None,
        category=item.category,
        year=item.year,
        description=describe(item),
        pdf=Layout.of(settings).item_dir(item.folder) / (item.pdf_name or ""),
        pdf_sha256=item.pdf_sha256 or "",
        pdf_size=item.pdf_size or 0,
        texts=texts,
    )


def _meta(caller: access.Caller, spec: ExportSpec, items: list[site.ExportItem], export_id: int) -> dict[str, object]:
    fonds = {i.fonds: i.fonds_name for i in items}
    names = [fonds[code] or f"{code} 全宗" for code in sorted(fonds)]
    title = ("、".join(names[:3]) + ("等" if len(names) > 3 else "") if names else "档案") + " 档案（离线查阅版）"
    return {
        "title": title,
        "export_id": export_id,
        "made_at": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M"),
        "made_by": caller.name,
        "recipient": spec.recipient,
    }


def _record_done(
    settings: Settings,
    caller: access.Caller,
    spec: ExportSpec,
    report: ExportReport,
    items: list[site.ExportItem],
    total: int,
) -> None:
    purpose = (
        "送档下乡" + (f" → {spec.recipient}" if spec.recipient else "") + (f"：{spec.purpose}" if spec.purpose else "")
    )
    with session_scope(settings.effective_database_url) as session:
        record = session.get(ExportRecord, report.export_id)
        assert record is not None
        record.state = ExportState.done
        record.finished_at = datetime.now(UTC)
        record.items, record.pages, record.bytes = report.items, report.pages, report.bytes
        record.volumes = len(report.volumes)
        record.done_bytes = record.total_bytes = total
        record.isos = [str(v.iso) for v in report.volumes if v.iso is not None]
        record.left_out = [vars(x) for x in report.left_out]
        keys = [item.code_key for item in items]
        for start in range(0, len(keys), 500):
            for item in session.scalars(select(Item).where(Item.code_key.in_(keys[start : start + 500]))):
                access.log_access(
                    session, caller, item, "export", purpose=purpose, client=f"export #{report.export_id}"
                )


def mark_cut_off(settings: Settings) -> int:
    """Mark the exports the API ran that a stop cut off as failed (at the station's start); how many.

    An export from the command line (no token, no person) runs in a process of its own, which may still
    be writing: it marks itself failed when it fails."""
    with session_scope(settings.effective_database_url) as session:
        result = session.execute(
            update(ExportRecord)
            .where(
                ExportRecord.state == ExportState.running,
                or_(ExportRecord.token_id.is_not(None), ExportRecord.user_id.is_not(None)),
            )
            .values(
                state=ExportState.failed,
                error="cut off: the station stopped while it ran",
                finished_at=datetime.now(UTC),
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
