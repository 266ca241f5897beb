"""Filing a batch's pages into an item: a plan, the slow work in a staging folder, then one journaled
change of the catalogue and the item folder together.

1. **Plan** (read only): which batch pages, the item's page order after filing, every refusal
   (wrong mode or position, a page already filed, a count that does not match, …).
2. **Stage** (no catalogue write lock held, so a long filing never blocks other writers): the new
   masters, usage images, thumbnails and the item's PDF/A, built from the planned page order, all
   in ``<item>/.staging-<token>/``. The item's lock (:func:`item_lock`) is held from the plan to
   the end, so the plan stays valid.
3. **Commit**, in one catalogue transaction: every catalogue write first, then the small files that
   name the new rows (page sidecars, item.json) into staging, then the file moves, each listed in
   the journal before any is made (:mod:`scanner_service.archive.filing.journal`), then the commit.

What is guaranteed against which fault:

- a refusal, or any failure while planning or staging (a disk full or read-only, a bad image, …):
  nothing the catalogue or the item folder holds changes; staged files are removed;
- any exception inside the transaction, commit included: the transaction rolls back and the
  journal undoes every move, last first — the item is as it was;
- a crash at any step (SIGKILL, power loss): the journal left behind is finished or undone by
  :func:`~scanner_service.archive.filing.journal.recover_journals` at the next start (or by the next filing
  of the item), as the catalogue's marker (the item's new version) says;
- a failure after the commit (rechange the staging folder): the item is fully filed; the leftovers
  are removed by recovery;
- the archive disk full or read-only: :class:`DiskFull` / :class:`ReadOnlyStorage`, saying what to
  do; if the disk turned read-only midway so the moves cannot be undone, :class:`FilingInterrupted`
  (undone once the archive is writable and recovery runs);
- the catalogue locked by another writer: the transaction waits for the write lock (SQLite's busy
  timeout, 30 s) before any file moves; :class:`CatalogueBusy` (nothing done) if it stays locked.

No existing master is ever overwritten: renamed ones keep their recorded digests, replaced ones are
kept under ``replaced/v<N>-<token>/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import shutil
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from scanner_service.archive import archival_code as ac
from scanner_service.archive.db import session_scope
from scanner_service.archive.filing import journal, steps
from scanner_service.archive.filing.change import (
    abort,
    check_planned,
    error_reason,
    filed_pdf_page,
    finish,
    make_moves,
    settle_item,
    take_write_lock,
    thumbnail,
    write_item_pdf,
)
from scanner_service.archive.filing.items import (
    DESCRIPTION,
    check_may_create,
    description_text,
    ensure_item,
    excluded_by,
    fonds_style,
    is_excluded,
    item_folder,
    item_lock,
    key_of,
    record_file,
    station_decision,
)
from scanner_service.archive.filing.masters import write_master
from scanner_service.archive.filing.order import FilingRefused, arrange, filing_mode, pages_to_file
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import (
    ArchiveFile,
    Batch,
    Event,
    FileKind,
    FilingMode,
    Item,
    ItemPage,
    SearchEntry,
)
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.exceptions import (
    CatalogueBusy,
    DiskFull,
    NotFound,
    ReadOnlyStorage,
)
from scanner_service.settings import Settings
from workers import durable
from workers.durable import Digest
from workers.pdfa import PdfPage
from workers.pipeline import PageFlag


@dataclass
class FilingResult:
    archival_code: str
    item_id: int
    pages_filed: int
    version: int
    page_check: str | None
    serials: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Existing:
    """A page the item has."""

    row_id: int
    master_name: str
    excluded: bool = False  # left out of the item PDF by a person's correction


@dataclass(eq=False)
class _Incoming:
    """A batch page being filed, and (once staged) its files in the staging folder."""

    seq: int
    source: Path  # the original in the spool
    source_index: int
    frames_used: int
    text: str | None
    confidence: float | None
    flags: list[str]
    sidecar: PageSidecar  # the batch page's sidecar: usage image, resolution, OCR lines
    image: Path  # the batch page's usage image
    details: dict[str, Any] = field(default_factory=dict)  # what the batch page's derivation did
    decision: dict[str, Any] | None = None  # the station's own decision (what undo goes back to)
    correction: dict[str, Any] = field(default_factory=dict)  # a person's correction made before filing
    staged: dict[str, tuple[Path, Digest]] = field(default_factory=dict)  # master, usage, thumbnail, ocr


@dataclass
class _Plan:
    code: ac.ArchivalCode
    written: str  # the 档号 as the item writes it
    style: ac.CodeStyle
    folder: str
    is_new: bool
    version: int  # the item's version before this filing
    existing: list[_Existing]
    batch_id: int
    mode: FilingMode
    order: list[_Existing | _Incoming]
    gone: list[_Existing]
    title: str
    author: str
    may_create: bool
    actor: str
    pdf: Digest | None = None

    @property
    def code_key(self) -> str:
        return str(self.code)

    @property
    def pdf_name(self) -> str:
        return f"{self.written}.pdf"

    @property
    def incoming(self) -> list[_Incoming]:
        return [slot for slot in self.order if isinstance(slot, _Incoming)]


def file_batch(
    settings: Settings,
    batch_id: int,
    code_text: str,
    *,
    seqs: Sequence[int] | None = None,
    mode: str = FilingMode.new,
    replace: Sequence[int] = (),
    at: int | None = None,
    actor: str = "station",
    may_create: bool = False,
    check_count: bool = False,
) -> FilingResult:
    """File pages of a finished batch into the item ``code_text``: new, append, insert (before page
    ``at``) or replace (the pages ``replace``); see the module docstring for what is guaranteed.

    ``check_count`` refuses (rather than flags) a page count that differs from the catalogue's 页数:
    used for separator runs, where a wrong count means a missing sheet and filing would mis-file.
    """
    code = ac.parse(code_text)
    how = filing_mode(mode)
    with _storage_errors(settings, str(code), batch_id), item_lock(settings, str(code)):
        journal.recover_item(settings, str(code))
        plan = _plan(settings, batch_id, code, seqs, how, replace, at, may_create, check_count, actor)
        token = uuid.uuid4().hex[:8]
        staging = f"{plan.folder}/.staging-{token}"
        keep = f"{plan.folder}/replaced/v{plan.version + 1}-{token}"
        folders = [plan.folder, f"{plan.folder}/pages"] + [f"{staging}/{d}" for d in ("new", "pages", "old", "park")]
        entry = journal.begin(
            settings,
            code_key=plan.code_key,
            archival_code=plan.written,
            folder=plan.folder,
            staging=staging,
            version_before=plan.version,
            folders=folders + ([keep] if plan.gone else []),
        )
        try:
            steps.reached(steps.PREPARE, plan.code_key)
            _stage(settings, plan, entry)
            result = _commit(settings, plan, entry, keep)
        except BaseException as err:
            abort(settings, entry, err)
            raise
        finish(settings, entry)
    return result


# ---- 1. the plan ---------------------------------------------------------------------------------


def _refuse_filed_twice(session: Session, batch_id: int, seqs: list[int]) -> None:
    already = session.execute(
        select(ItemPage.batch_seq, Item.archival_code)
        .join(Item, Item.id == ItemPage.item_id)
        .where(ItemPage.batch_id == batch_id, ItemPage.batch_seq.in_(seqs))
    ).all()
    if already:
        where = "; ".join(f"page {seq} in {filed_in}" for seq, filed_in in sorted(already))
        raise FilingRefused(
            f"Batch {batch_id}: already filed ({where}). A page is filed under one 档号 only; rescan it to "
            "file it again.",
            reason_code="page_already_filed",
        )


def _plan(
    settings: Settings,
    batch_id: int,
    code: ac.ArchivalCode,
    seqs: Sequence[int] | None,
    mode: FilingMode,
    replace: Sequence[int],
    at: int | None,
    may_create: bool,
    check_count: bool,
    actor: str,
) -> _Plan:
    """What this filing will do, or why it is refused; reads the catalogue, writes nothing."""
    with session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NotFound(f"No batch {batch_id}.")
        new_pages = pages_to_file(batch, seqs)
        _refuse_filed_twice(session, batch.id, [p.seq for p in new_pages])
        item = session.scalar(select(Item).where(Item.code_key == str(code)))
        existing: list[_Existing] = []
        if item is None:
            check_may_create(session, code, may_create=may_create)
            style = fonds_style(session, code.fonds)
            written, folder = item_folder(code, style)
            version, expected, title, author = 0, None, None, None
        else:
            # The style the item was created in, whatever its fonds says now.
            written, folder, style = item.archival_code, item.folder, ac.style_of(item.archival_code)
            existing = [_Existing(row.id, row.master_name, is_excluded(row)) for row in item.pages]
            version, expected, title, author = item.version, item.expected_pages, item.title, item.author
        if check_count and mode is FilingMode.new and expected not in (None, len(new_pages)):
            raise FilingRefused(
                f"{written}: {len(new_pages)} pages between its separator sheets, but the catalogue says "
                f"{expected} (页数); a sheet may be missing.",
                reason_code="page_count_mismatch",
            )
        frames = Counter(p.original_id for p in batch.pages)
        layout = Layout.of(settings)
        incoming = []
        for page in new_pages:
            sidecar_path = layout.sidecar(batch.id, page.seq)
            sidecar = PageSidecar.read(sidecar_path)
            incoming.append(
                _Incoming(
                    seq=page.seq,
                    source=layout.original(batch.id, page.original.stored_name),
                    source_index=page.source_index,
                    frames_used=frames[page.original_id],
                    text=page.text,
                    confidence=page.confidence,
                    flags=[f for f in (page.flags or []) if f != PageFlag.separator],
                    sidecar=sidecar,
                    image=sidecar.image_path(sidecar_path),
                    details=dict(page.details or {}),
                    decision=page.decision or station_decision(page),
                    correction=dict(page.correction or {}),
                )
            )
        order, gone = arrange(existing, incoming, mode, replace, at)
        return _Plan(
            code=code,
            written=written,
            style=style,
            folder=folder,
            is_new=item is None,
            version=version,
            existing=existing,
            batch_id=batch.id,
            mode=mode,
            order=order,
            gone=gone,
            title=title or "",
            author=author or "",
            may_create=may_create,
            actor=actor,
        )


# ---- 2. staging: everything slow, before the transaction -------------------------------------------


def _stage(settings: Settings, plan: _Plan, entry: journal.Journal) -> None:
    """New masters, usage images, thumbnails and the item's PDF/A (in the planned order), in staging."""
    staging = Layout.of(settings).archive / entry.staging
    for page in plan.incoming:
        master = write_master(page.source, page.source_index, page.frames_used, staging / "new" / f"{page.seq:04d}")
        page.staged["master"] = master
        steps.reached(steps.STAGE_MASTER, plan.code_key)
        usage = staging / "pages" / f"{page.seq:04d}{page.image.suffix}"
        page.staged["usage"] = usage, durable.copy_file(page.image, usage)
        thumb = staging / "pages" / f"{page.seq:04d}-thumb.jpg"
        page.staged["thumbnail"] = thumb, thumbnail(usage, thumb)
        steps.reached(steps.STAGE_PAGE, plan.code_key)
    filed_pages = Layout.of(settings).archive / plan.folder / "pages"
    pdf_pages = []
    for slot in plan.order:
        if slot.excluded if isinstance(slot, _Existing) else excluded_by(slot.correction):
            continue  # a person left it out of the PDF; its master is kept
        if isinstance(slot, _Existing):
            pdf_pages.append(filed_pdf_page(filed_pages, slot.row_id))
        else:
            pdf_pages.append(PdfPage(image=slot.staged["usage"][0], dpi=slot.sidecar.dpi, text=slot.sidecar.text))
    pdf = staging / "item.pdf"
    plan.pdf = write_item_pdf(pdf_pages, pdf, written=plan.written, title=plan.title, author=plan.author)
    steps.reached(steps.STAGE_PDF, plan.code_key)


# ---- 3. the transaction: catalogue, then the journaled moves, then the commit ----------------------


@dataclass
class _Change:
    """What the transaction changes, as it goes: where things are, and the rows that moved or came."""

    archive: Path
    folder: Path  # the item folder
    staging: Path
    keep: Path  # where replaced masters go
    moved: list[tuple[ItemPage, str]] = field(default_factory=list)  # (row, its master's name before)
    new_rows: list[tuple[ItemPage, _Incoming]] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.archive))


def _commit(settings: Settings, plan: _Plan, entry: journal.Journal, keep: str) -> FilingResult:
    """Every catalogue write, then the small files, then the journaled moves; commits on return."""
    archive = Layout.of(settings).archive
    change = _Change(archive, archive / plan.folder, archive / entry.staging, archive / keep)
    with session_scope(settings.effective_database_url) as session:
        item, batch = _lock_item(session, plan)
        _place_rows(session, plan, item, change)
        _record_files(session, plan, item, change)
        _update_item(session, plan, item, batch, change)
        steps.reached(steps.CATALOGUE, plan.code_key)
        _write_sidecars(session, plan, item, change)
        steps.reached(steps.STAGE_SIDECARS, plan.code_key)
        _move_files(settings, plan, entry, change)
        result = FilingResult(
            archival_code=item.archival_code,
            item_id=item.id,
            pages_filed=item.pages_filed,
            version=item.version,
            page_check=item.page_check,
            serials=[row.serial for row, _ in change.new_rows],
        )
    return result


def _lock_item(session: Session, plan: _Plan) -> tuple[Item, Batch]:
    """The item (created if new) and the batch, locked, after checking the plan still holds."""
    take_write_lock(session)
    item = session.scalar(select(Item).where(Item.code_key == plan.code_key))
    check_planned(
        session,
        item,
        plan.version,
        [e.row_id for e in plan.existing],
        f"{plan.written} changed while this filing was prepared; nothing was filed. File the batch again.",
    )
    _refuse_filed_twice(session, plan.batch_id, [p.seq for p in plan.incoming])
    if item is None:
        item = ensure_item(session, plan.code, may_create=plan.may_create)
    batch = session.get(Batch, plan.batch_id)
    if batch is None:
        raise NotFound(f"No batch {plan.batch_id}.")
    return item, batch


def _place_rows(session: Session, plan: _Plan, item: Item, change: _Change) -> None:
    """The item's page rows in their new order: replaced rows go, rows that move are parked on a
    negative serial first (so the (item, serial) constraint never sees two at once), new rows come."""
    rows = {row.id: row for row in item.pages}
    for serial, slot in enumerate(plan.order, start=1):
        if isinstance(slot, _Existing) and rows[slot.row_id].serial != serial:
            row = rows[slot.row_id]
            change.moved.append((row, row.master_name))
            row.serial = -row.id
    for old in plan.gone:
        session.delete(rows[old.row_id])
    session.flush()
    for serial, slot in enumerate(plan.order, start=1):
        if isinstance(slot, _Existing):
            rows[slot.row_id].serial = serial
            continue
        row = ItemPage(
            item_id=item.id,
            serial=serial,
            batch_id=plan.batch_id,
            batch_seq=slot.seq,
            master_name=plan.code.master_stem(serial, plan.style) + slot.staged["master"][0].suffix,
            text=slot.text,
            confidence=slot.confidence,
            flags=slot.flags,
            details=slot.details,
            decision=slot.decision,
            correction=slot.correction,
        )
        session.add(row)
        change.new_rows.append((row, slot))
    for row, name in change.moved:
        row.master_name = plan.code.master_stem(row.serial, plan.style) + Path(name).suffix
    session.flush()


def _record_files(session: Session, plan: _Plan, item: Item, change: _Change) -> None:
    """Fixity records follow the files: a replaced master's to replaced/, a renamed one's to its new name
    with its recorded digest (a master changed before this rescan stays reported); new files' digests
    as staged."""
    folder, pages, rel = change.folder, change.folder / "pages", change.rel
    recorded = {
        r.path: Digest(r.sha256, r.size)
        for r in session.scalars(
            select(ArchiveFile).where(ArchiveFile.item_id == item.id, ArchiveFile.kind == FileKind.master)
        )
    }
    for old in plan.gone:
        session.execute(
            update(ArchiveFile)
            .where(ArchiveFile.path == rel(folder / old.master_name))
            .values(path=rel(change.keep / old.master_name), kind=FileKind.replaced)
        )
    carried = {}
    for row, name in change.moved:
        carried[row.id] = recorded.get(rel(folder / name)) or durable.sha256_of(folder / name)
        session.execute(delete(ArchiveFile).where(ArchiveFile.path == rel(folder / name)))
    session.flush()
    for row, _ in change.moved:
        record_file(session, rel(folder / row.master_name), FileKind.master, item.id, carried[row.id])
    for row, page in change.new_rows:
        k = key_of(row.id)
        record_file(session, rel(folder / row.master_name), FileKind.master, item.id, page.staged["master"][1])
        record_file(session, rel(pages / (k + page.image.suffix)), FileKind.usage, item.id, page.staged["usage"][1])
        record_file(session, rel(pages / f"{k}-thumb.jpg"), FileKind.thumbnail, item.id, page.staged["thumbnail"][1])
    assert plan.pdf is not None
    record_file(session, rel(folder / plan.pdf_name), FileKind.pdf, item.id, plan.pdf)


def _update_item(session: Session, plan: _Plan, item: Item, batch: Batch, change: _Change) -> None:
    """The item's own fields (its new version is the journal's commit marker), search, the event."""
    version = plan.version + 1
    assert plan.pdf is not None
    item.filed_at = datetime.now(UTC)
    settle_item(session, item, version=version, pdf_name=plan.pdf_name, pdf=plan.pdf)
    filed_seqs = [page.seq for _, page in change.new_rows]
    session.execute(
        delete(SearchEntry).where(SearchEntry.batch_id == plan.batch_id, SearchEntry.page_no.in_(filed_seqs))
    )
    session.add(
        Event(
            kind="item_filed" if version == 1 else "item_pages_changed",
            archival_code=item.archival_code,
            fonds=item.fonds,
            item_id=item.id,
            batch_id=plan.batch_id,
            detail={
                "mode": plan.mode.value,
                "version": version,
                "pages": item.pages_filed,
                "batch_pages": filed_seqs,
                "replaced": len(plan.gone),
                "page_check": item.page_check,
                "by": plan.actor,
            },
        )
    )
    if batch.archival_code is None:
        batch.archival_code = item.archival_code
    session.flush()


def _write_sidecars(session: Session, plan: _Plan, item: Item, change: _Change) -> None:
    """The small files that name the new rows, into staging: each page's sidecar, and item.json."""
    pages = change.folder / "pages"
    for row, page in change.new_rows:
        filed = dataclasses.replace(page.sidecar, image=key_of(row.id) + page.image.suffix)
        sidecar = change.staging / "pages" / f"{page.seq:04d}.json"
        page.staged["ocr"] = sidecar, filed.write(sidecar)
        record_file(session, change.rel(pages / f"{key_of(row.id)}.json"), FileKind.ocr, item.id, page.staged["ocr"][1])
    description = durable.write_text(change.staging / DESCRIPTION, description_text(item))
    record_file(session, change.rel(change.folder / DESCRIPTION), FileKind.description, item.id, description)
    session.flush()


def _move_files(settings: Settings, plan: _Plan, entry: journal.Journal, change: _Change) -> None:
    """Existing files out of the way first, then every staged file to its place; each move journaled
    before any is made, all flushed to disk before the commit."""
    folder, staging, pages = change.folder, change.staging, change.folder / "pages"
    moves: list[tuple[Path, Path, bool]] = []
    for name in (plan.pdf_name, DESCRIPTION):
        if (folder / name).exists():
            moves.append((folder / name, staging / "old" / name, True))
    moves += [(folder / old.master_name, change.keep / old.master_name, True) for old in plan.gone]
    parked = {row.id: staging / "park" / f"{row.id}{Path(name).suffix}" for row, name in change.moved}
    moves += [(folder / name, parked[row.id], True) for row, name in change.moved]
    moves += [(parked[row.id], folder / row.master_name, False) for row, _ in change.moved]
    for row, page in change.new_rows:
        k = key_of(row.id)
        moves += [
            (page.staged["master"][0], folder / row.master_name, False),
            (page.staged["usage"][0], pages / (k + page.image.suffix), False),
            (page.staged["thumbnail"][0], pages / f"{k}-thumb.jpg", False),
            (page.staged["ocr"][0], pages / f"{k}.json", False),
        ]
    moves += [
        (staging / "item.pdf", folder / plan.pdf_name, False),
        (staging / DESCRIPTION, folder / DESCRIPTION, False),
    ]
    make_moves(settings, entry, moves)


@contextlib.contextmanager
def _storage_errors(settings: Settings, code_key: str, batch_id: int) -> Iterator[None]:
    """Disk and catalogue failures as errors an operator can act on (raised once the filing is undone)."""
    archive = Layout.of(settings).archive
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            try:
                free = f"{shutil.disk_usage(archive).free / 2**20:.1f} MiB free"
            except OSError:
                free = "free space unknown"
            raise DiskFull(
                f"The archive disk is full ({archive}: {free}): {code_key} was not filed, and nothing of this "
                f"filing was kept. Free some space on that disk, then file batch {batch_id} again."
            ) from err
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise ReadOnlyStorage(
                f"The archive folder {archive} cannot be written ({error_reason(err)}): {code_key} was not filed, "
                "and nothing of this filing was kept. Check the disk (a disk with errors is often remounted "
                f"read-only) and the folder's permissions, then file batch {batch_id} again."
            ) from err
        raise
    except OperationalError as err:
        if isinstance(err.orig, sqlite3.Error):
            base = err.orig.sqlite_errorcode & 0xFF
            if base in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise CatalogueBusy(
                    f"The catalogue stayed locked by another writer: {code_key} was not filed, and nothing of "
                    f"this filing was kept. File batch {batch_id} again."
                ) from err
            if base == sqlite3.SQLITE_FULL:
                raise DiskFull(
                    f"The catalogue's disk is full: {code_key} was not filed, and nothing of this filing was "
                    f"kept. Free some space, then file batch {batch_id} again."
                ) from err
        raise
