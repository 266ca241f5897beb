"""A change of a filed item's pages that files no new page: pages derived again from their masters (a
person's correction), a new page order, pages left out of the PDF, withdrawn, or moved to another item.

Like a filing (:mod:`.files`), it is a plan, staging, then ONE journaled change of the catalogue and the
item folder(s): every catalogue write, then the small files into staging, then the journaled moves, then
the commit, whose new item version is the journal's marker. Whatever stops it (an exception, SIGKILL,
power loss), the item ends as it was or fully changed, and ``scanstation audit`` is clean once
recovery has run (:func:`~scanner_service.archive.filing.journal.recover_journals`).

- Masters are never altered. They are renamed only when serials change (order, withdraw, move); a
  withdrawn master goes to ``withdrawn/v<N>-<token>/`` with its recorded digest (kind ``withdrawn``).
- A page derived again gets new files under its stable key (usage image, OCR sidecar, thumbnail); the
  old ones are moved aside into staging and removed with it once the change has committed.
- The item PDF is rebuilt once per change, from every page in serial order but the excluded ones.
- Pages moved to another item: ONE catalogue transaction changes both items (both versions go up), and
  ONE journal, kept under the source item and naming the target (``also``), lists the moves of both
  folders. So a move is never half made: after a fault both items are as they were, or both changed;
  recovery of either item resolves the journal (taking both items' locks).
- Every page edit carries the page version it was made on, and a change may carry the item version it
  was made on (``item_version``: the serials a person named are the pages they saw): if the page or the
  item changed since, the whole change is refused (:class:`Conflict` ``stale_version``) and nothing
  changes. Both are checked again in the transaction, with the item locked.
- A page queued for derivation (state ``queued``) is never moved to another item (409 ``page_queued``,
  checked in the transaction too): its derivation job is the job of the item it is in.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.archive import archival_code as ac
from scanner_service.archive.db import session_scope
from scanner_service.archive.events import record_event
from scanner_service.archive.filing import journal, steps
from scanner_service.archive.filing.change import (
    abort,
    check_planned,
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
    description_text,
    excluded_by,
    is_excluded,
    item_lock,
    key_of,
    record_file,
)
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ArchiveFile, EventKind, FileKind, Item, ItemPage
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.exceptions import Conflict, NotFound
from scanner_service.settings import Settings
from workers import durable
from workers.durable import Digest
from workers.pdfa import PdfPage


@dataclass
class Derivation:
    """A page derived again from its master; its usage image and sidecar in a work folder (any disk)."""

    usage: Path
    sidecar: PageSidecar
    text: str | None
    confidence: float | None
    flags: list[str]
    details: dict[str, Any]


@dataclass
class PageEdit:
    """What the change does to one page: ``version`` is the page version the edit was made on."""

    row_id: int
    version: int
    correction: dict[str, Any] | None = None  # the page's new correction (None: unchanged)
    bump: bool = False  # the page's version goes up (a person's edit; a derivation keeps it)
    derived: Derivation | None = None
    state: str | None = None


Record = Callable[[Session, Item, dict[int, ItemPage]], None]


@dataclass
class Rework:
    """One change of the item ``code``. ``order``: the row ids that stay, in their new order (None keeps
    the order); ``withdraw``: rows that leave it, masters kept; ``move``: rows that go to the item
    ``move_to``, before its page ``move_at`` (None: at its end). ``record`` writes the caller's own rows
    (history) inside the transaction, before withdrawn rows are deleted."""

    code: str
    action: str
    by: str
    edits: list[PageEdit] = field(default_factory=list)
    order: list[int] | None = None
    withdraw: list[int] = field(default_factory=list)
    move: list[int] = field(default_factory=list)
    move_to: str | None = None
    move_at: int | None = None
    record: Record | None = None
    item_version: int | None = None  # the item's version the change was made on (None: not checked)


QUEUED = "queued"  # ItemPage.state of a page waiting for its derivation job


@dataclass
class ReworkResult:
    archival_code: str
    version: int
    target_version: int | None = None


@dataclass
class _Side:
    """One item the change alters, as planned: its rows after the change, in order."""

    item_id: int
    code_key: str
    code: ac.ArchivalCode
    style: ac.CodeStyle
    written: str
    folder: str
    version: int
    rows_before: list[int]
    order: list[int]  # row ids after the change
    excluded: set[int]
    title: str
    author: str
    tag: str  # its subfolder in staging: "a" (the item) or "b" (the target of a move)
    pdf: Digest | None = None

    @property
    def pdf_name(self) -> str:
        return f"{self.written}.pdf"


@dataclass
class _RowFiles:
    master: str
    usage: str  # file names in the item's pages/ folder
    sidecar: str
    thumbnail: str


def rework_item(settings: Settings, rework: Rework) -> ReworkResult:
    """Make the change ``rework`` as one journaled change (see the module docstring)."""
    key = str(ac.parse(rework.code))
    target = str(ac.parse(rework.move_to)) if rework.move_to else None
    if target == key:
        raise Conflict(
            "The pages are already in this item; name another item to move them to.",
            reason_code="same_item",
        )
    with contextlib.ExitStack() as locks:
        for code_key in sorted({key, *([target] if target else [])}):
            locks.enter_context(item_lock(settings, code_key))
            journal.recover_item(settings, code_key)
        side, other, files = _plan(settings, rework, key, target)
        token = uuid.uuid4().hex[:8]
        staging = f"{side.folder}/.staging-{token}"
        keep = f"{side.folder}/withdrawn/v{side.version + 1}-{token}"
        folders = [f"{staging}/{d}" for d in ("a", "b", "pages", "old", "old/a", "old/b", "park")]
        if other is not None:
            folders = [other.folder, f"{other.folder}/pages", *folders]
        entry = journal.begin(
            settings,
            code_key=side.code_key,
            archival_code=side.written,
            folder=side.folder,
            staging=staging,
            version_before=side.version,
            folders=folders + ([keep] if rework.withdraw else []),
            also=[other.code_key] if other is not None else [],
        )
        try:
            steps.reached(steps.PREPARE, side.code_key)
            staged = _stage(settings, rework, entry, side, other, files)
            result = _commit(settings, rework, entry, side, other, files, staged, keep)
        except BaseException as err:
            abort(settings, entry, err)
            raise
        finish(settings, entry)
    return result


# ---- 1. the plan ---------------------------------------------------------------------------------


def _side(session: Session, item: Item, order: list[int], excluded: set[int], tag: str) -> _Side:
    return _Side(
        item_id=item.id,
        code_key=item.code_key,
        code=ac.parse(item.code_key),
        style=ac.style_of(item.archival_code),
        written=item.archival_code,
        folder=item.folder,
        version=item.version,
        rows_before=[r.id for r in item.pages],
        order=order,
        excluded=excluded,
        title=item.title or "",
        author=item.author or "",
        tag=tag,
    )


def _plan(
    settings: Settings, rework: Rework, key: str, target: str | None
) -> tuple[_Side, _Side | None, dict[int, _RowFiles]]:
    """The items after the change, or why it is refused; reads the catalogue, writes nothing."""
    with session_scope(settings.effective_database_url) as session:
        item = session.scalar(select(Item).where(Item.code_key == key))
        if item is None or not item.pages:
            raise NotFound(f"No filed item {rework.code}.")
        _check_item_version(item, rework)
        rows = {r.id: r for r in item.pages}
        _refuse_queued_moves(rows, rework)
        named = [e.row_id for e in rework.edits] + rework.withdraw + rework.move + (rework.order or [])
        unknown = [r for r in named if r not in rows]
        if unknown:
            raise NotFound(f"{item.archival_code} has no such page (rows {unknown}); reload the item.")
        leaving = set(rework.withdraw) | set(rework.move)
        stays = [r.id for r in item.pages if r.id not in leaving]
        order = stays
        if rework.order is not None:
            if sorted(rework.order) != sorted(stays) or len(set(rework.order)) != len(rework.order):
                raise Conflict(
                    f"{item.archival_code}: the new order must name each of its {len(stays)} pages once.",
                    reason_code="bad_order",
                )
            order = list(rework.order)
        edits = {e.row_id: e for e in rework.edits}

        def excluded_after(row: ItemPage) -> bool:
            edit = edits.get(row.id)
            correction = edit.correction if edit is not None and edit.correction is not None else row.correction
            return excluded_by(correction)

        side = _side(session, item, order, {r for r in order if excluded_after(rows[r])}, "a")
        other = None
        moved_rows = [rows[r] for r in rework.move]
        if target is not None:
            dest = session.scalar(select(Item).where(Item.code_key == target))
            if dest is None:
                raise NotFound(f"No item {rework.move_to} in the catalogue; describe it first (PUT /api/items/…).")
            there = [r.id for r in dest.pages]
            at = len(there) + 1 if rework.move_at is None else rework.move_at
            if not 1 <= at <= len(there) + 1:
                raise Conflict(
                    f"{dest.archival_code} has {len(there)} pages: the moved pages go before a page 1…{len(there)}, "
                    "or at its end (at: null).",
                    reason_code="bad_position",
                )
            new_order = there[: at - 1] + rework.move + there[at - 1 :]
            excl = {r.id for r in dest.pages if is_excluded(r)}
            excl |= {r.id for r in moved_rows if excluded_after(r)}
            other = _side(session, dest, new_order, excl, "b")
        files = {row.id: _row_files(settings, item, row) for row in item.pages}
    return side, other, files


def _check_item_version(item: Item, rework: Rework) -> None:
    if rework.item_version is not None and item.version != rework.item_version:
        raise Conflict(
            f"{item.archival_code} is at version {item.version}, not {rework.item_version}: its pages were "
            "changed meanwhile, so the page numbers sent may name other pages now. Reload the item and try again.",
            reason_code="stale_version",
        )


def _refuse_queued_moves(rows: dict[int, ItemPage], rework: Rework) -> None:
    busy = sorted(rows[r].serial for r in rework.move if r in rows and rows[r].state == QUEUED)
    if busy:
        raise Conflict(f"Pages {busy} are being derived again; move them once that is done.", reason_code="page_queued")


def _row_files(settings: Settings, item: Item, row: ItemPage) -> _RowFiles:
    key = key_of(row.id)
    sidecar = PageSidecar.read(Layout.of(settings).item_dir(item.folder) / "pages" / f"{key}.json")
    return _RowFiles(master=row.master_name, usage=sidecar.image, sidecar=f"{key}.json", thumbnail=f"{key}-thumb.jpg")


# ---- 2. staging ---------------------------------------------------------------------------------


@dataclass
class _Staged:
    """A derived page's files in staging, named as they will be in the item's pages/ folder."""

    usage: tuple[Path, Digest]
    thumbnail: tuple[Path, Digest]
    sidecar: PageSidecar


def _stage(
    settings: Settings,
    rework: Rework,
    entry: journal.Journal,
    side: _Side,
    other: _Side | None,
    files: dict[int, _RowFiles],
) -> dict[int, _Staged]:
    """The derived pages' new files, and each item's PDF, in staging."""
    archive = Layout.of(settings).archive
    staging = archive / entry.staging
    staged: dict[int, _Staged] = {}
    for edit in rework.edits:
        if edit.derived is None:
            continue
        key = key_of(edit.row_id)
        usage = staging / "pages" / (key + edit.derived.usage.suffix)
        digest = durable.copy_file(edit.derived.usage, usage)
        thumb = staging / "pages" / f"{key}-thumb.jpg"
        sidecar = PageSidecar(image=usage.name, dpi=edit.derived.sidecar.dpi, text=edit.derived.sidecar.text)
        staged[edit.row_id] = _Staged((usage, digest), (thumb, thumbnail(usage, thumb)), sidecar)
        steps.reached(steps.STAGE_PAGE, side.code_key)
    for s in (side, other):
        if s is None:
            continue
        pdf_pages = []
        for row_id in s.order:
            if row_id in s.excluded:
                continue
            if row_id in staged:
                page = staged[row_id]
                pdf_pages.append(PdfPage(image=page.usage[0], dpi=page.sidecar.dpi, text=page.sidecar.text))
                continue
            pdf_pages.append(filed_pdf_page(archive / (side.folder if row_id in files else s.folder) / "pages", row_id))
        if pdf_pages:
            pdf = staging / s.tag / "item.pdf"
            s.pdf = write_item_pdf(pdf_pages, pdf, written=s.written, title=s.title, author=s.author)
    steps.reached(steps.STAGE_PDF, side.code_key)
    return staged


# ---- 3. the transaction -------------------------------------------------------------------------


def _lock(session: Session, s: _Side) -> Item:
    item = session.get(Item, s.item_id)
    refusal = f"{s.written} changed while this change was prepared; nothing was changed. Reload it and try again."
    if item is None:
        raise Conflict(refusal, reason_code="item_changed")
    check_planned(session, item, s.version, s.rows_before, refusal)
    return item


def _check_versions(session: Session, rows: dict[int, ItemPage], rework: Rework) -> None:
    """Compare-and-set: every edited page must still be at the version the edit was made on."""
    for edit in rework.edits:
        row = rows[edit.row_id]
        if session.get_bind().dialect.name == "postgresql":
            session.refresh(row, with_for_update=True)
        if row.version != edit.version:
            raise Conflict(
                f"Page {row.serial} was changed by someone else meanwhile (version {row.version}, not "
                f"{edit.version}); nothing was changed. Reload the page and correct it again.",
                reason_code="stale_version",
            )


def _commit(
    settings: Settings,
    rework: Rework,
    entry: journal.Journal,
    side: _Side,
    other: _Side | None,
    files: dict[int, _RowFiles],
    staged: dict[int, _Staged],
    keep: str,
) -> ReworkResult:
    archive = Layout.of(settings).archive
    staging = archive / entry.staging
    with session_scope(settings.effective_database_url) as session:
        take_write_lock(session)
        item = _lock(session, side)
        _check_item_version(item, rework)
        dest = _lock(session, other) if other is not None else None
        rows = {r.id: r for r in item.pages}
        _check_versions(session, rows, rework)
        _refuse_queued_moves(rows, rework)
        _edit_rows(rows, rework, staged)
        if rework.record is not None:
            rework.record(session, item, rows)
        changed = sorted({e.row_id for e in rework.edits} | set(rework.withdraw) | set(rework.move))
        serials = {r.id: r.serial for r in rows.values()}
        renamed = _place(session, rows, side, other, rework)
        _record_withdrawn(session, side, files, keep, rework)  # first: a renamed master may take its name
        _record_masters(session, archive, renamed)
        moves = _record_files(session, side, other, files, staged, keep, rework)
        moves = [(r.before, f"park:{i}{Path(r.before).suffix}") for i, r in enumerate(renamed)] + moves
        moves += [(f"park:{i}{Path(r.before).suffix}", r.after) for i, r in enumerate(renamed)]
        for s, it in ((side, item), (other, dest)):
            if s is not None and it is not None:
                _update_item(session, it, s, rework, [serials[r] for r in changed])
        steps.reached(steps.CATALOGUE, side.code_key)
        for s, it in ((side, item), (other, dest)):
            if s is not None and it is not None:
                digest = durable.write_text(staging / s.tag / DESCRIPTION, description_text(it))
                record_file(session, str(Path(s.folder, DESCRIPTION)), FileKind.description, it.id, digest)
        for row_id, page in staged.items():
            digest = page.sidecar.write(staging / "pages" / files[row_id].sidecar)
            record_file(session, str(Path(side.folder, "pages", files[row_id].sidecar)), FileKind.ocr, item.id, digest)
        session.flush()
        steps.reached(steps.STAGE_SIDECARS, side.code_key)
        _move(settings, entry, side, other, moves, staged, files)
        result = ReworkResult(item.archival_code, item.version, dest.version if dest is not None else None)
    return result


def _edit_rows(rows: dict[int, ItemPage], rework: Rework, staged: dict[int, _Staged]) -> None:
    for edit in rework.edits:
        row = rows[edit.row_id]
        if edit.correction is not None:
            row.correction = dict(edit.correction)
        if edit.bump:
            row.version = row.version + 1
        if edit.state is not None:
            row.state = edit.state
        if edit.derived is not None:
            row.text, row.confidence = edit.derived.text, edit.derived.confidence
            row.flags, row.details = list(edit.derived.flags), dict(edit.derived.details)


# The file moves of the change, as (from, to) relative to the archive, in the order they are made;
# "park:<name>" and "old:<name>" are in the change's staging folder.
_Moves = list[tuple[str, str]]


@dataclass
class _Renamed:
    """A master whose name (or item folder) changes: its path before and after, the item it is in after."""

    before: str
    after: str
    item_id: int


def _place(
    session: Session, rows: dict[int, ItemPage], side: _Side, other: _Side | None, rework: Rework
) -> list[_Renamed]:
    """Rows to their new serials (and item), withdrawn rows deleted, masters' new names. Rows that move
    are parked on a negative serial first, so the (item, serial) constraint never sees two at once."""
    every = dict(rows)
    if other is not None:
        target = session.get(Item, other.item_id)
        assert target is not None
        every |= {r.id: r for r in target.pages}
    layout = [(side, side.order)] + ([(other, other.order)] if other is not None else [])
    changing: list[tuple[ItemPage, str, _Side, int]] = []  # (row, master path before, side after, serial)
    for s, order in layout:
        for serial, row_id in enumerate(order, start=1):
            row = every[row_id]
            if row.serial != serial or row.item_id != s.item_id:
                folder = side.folder if row_id in rows else s.folder
                changing.append((row, str(Path(folder, row.master_name)), s, serial))
                row.serial = -row.id
    for row_id in rework.withdraw:
        session.delete(rows[row_id])
    session.flush()
    renamed = []
    for row, before, s, serial in changing:
        row.serial, row.item_id = serial, s.item_id
        row.master_name = s.code.master_stem(serial, s.style) + Path(before).suffix
        renamed.append(_Renamed(before, str(Path(s.folder, row.master_name)), s.item_id))
    session.flush()
    return renamed


def _record_masters(session: Session, archive: Path, renamed: list[_Renamed]) -> None:
    """A renamed master's record follows it, with the digest recorded when it was written (a master
    changed since stays reported as changed)."""
    carried = {}
    for r in renamed:
        rec = session.scalar(select(ArchiveFile).where(ArchiveFile.path == r.before))
        carried[r.after] = Digest(rec.sha256, rec.size) if rec is not None else durable.sha256_of(archive / r.before)
        if rec is not None:
            session.delete(rec)
    session.flush()
    for r in renamed:
        record_file(session, r.after, FileKind.master, r.item_id, carried[r.after])


def _record_withdrawn(session: Session, side: _Side, files: dict[int, _RowFiles], keep: str, rework: Rework) -> None:
    """A withdrawn master's record goes with it to ``keep`` (kind ``withdrawn``), before any renamed
    master's record takes its old name."""
    for row_id in rework.withdraw:
        name = files[row_id].master
        master = session.scalar(select(ArchiveFile).where(ArchiveFile.path == str(Path(side.folder, name))))
        if master is not None:
            master.path, master.kind = str(Path(keep, name)), FileKind.withdrawn
    session.flush()


def _record_files(
    session: Session,
    side: _Side,
    other: _Side | None,
    files: dict[int, _RowFiles],
    staged: dict[int, _Staged],
    keep: str,
    rework: Rework,
) -> _Moves:
    """Fixity records of withdrawn, moved and derived pages' files and of the PDFs; those pages' moves."""
    moves: _Moves = []
    pages_a = Path(side.folder, "pages")

    def record(path: Path | str) -> ArchiveFile | None:
        return session.scalar(select(ArchiveFile).where(ArchiveFile.path == str(path)))

    for row_id in rework.withdraw:
        f = files[row_id]
        moves.append((str(Path(side.folder, f.master)), str(Path(keep, f.master))))
        for name in (f.usage, f.sidecar, f.thumbnail):  # derived files: made again from the master if wanted
            _forget(session, record(pages_a / name))
            moves.append((str(pages_a / name), f"old:{name}"))
    if other is not None:
        pages_b = Path(other.folder, "pages")
        for row_id in rework.move:
            f = files[row_id]
            for name in (f.usage, f.sidecar, f.thumbnail):
                rec = record(pages_a / name)
                if rec is not None:
                    rec.path, rec.item_id = str(pages_b / name), other.item_id
                moves.append((str(pages_a / name), str(pages_b / name)))
    for row_id, page in staged.items():
        f = files[row_id]
        for name in (f.usage, f.sidecar, f.thumbnail):
            moves.append((str(pages_a / name), f"old:{name}"))
        if page.usage[0].name != f.usage:
            _forget(session, record(pages_a / f.usage))
        record_file(session, str(pages_a / page.usage[0].name), FileKind.usage, side.item_id, page.usage[1])
        record_file(session, str(pages_a / f.thumbnail), FileKind.thumbnail, side.item_id, page.thumbnail[1])
    for s in (side, other):
        if s is None:
            continue
        pdf = Path(s.folder, s.pdf_name)
        if s.pdf is not None:
            record_file(session, str(pdf), FileKind.pdf, s.item_id, s.pdf)
        else:
            _forget(session, record(pdf))
    session.flush()
    return moves


def _forget(session: Session, rec: ArchiveFile | None) -> None:
    if rec is not None:
        session.delete(rec)


def _update_item(session: Session, item: Item, s: _Side, rework: Rework, pages: list[int]) -> None:
    """The item's own fields (its new version is the journal's commit marker), search, the event."""
    settle_item(session, item, version=s.version + 1, pdf_name=s.pdf_name, pdf=s.pdf)
    record_event(
        session,
        EventKind.item_pages_changed,
        item_id=item.id,
        archival_code=item.archival_code,
        fonds=item.fonds,
        detail={
            "action": rework.action,
            "version": item.version,
            "pages": item.pages_filed,
            "changed": pages,
            "by": rework.by,
        },
    )
    session.flush()


def _move(
    settings: Settings,
    entry: journal.Journal,
    side: _Side,
    other: _Side | None,
    moves: _Moves,
    staged: dict[int, _Staged],
    files: dict[int, _RowFiles],
) -> None:
    """Every move journaled before any is made: existing files out of the way first, then the staged
    and renamed ones to their places; all flushed to disk before the commit."""
    archive = Layout.of(settings).archive
    staging = archive / entry.staging

    def where(rel: str) -> Path:
        if rel.startswith("park:"):
            return staging / "park" / rel[5:]
        if rel.startswith("old:"):
            return staging / "old" / rel[4:]
        return archive / rel

    planned: list[tuple[Path, Path, bool]] = []
    for s in (side, other):
        if s is None:
            continue
        for name in (s.pdf_name, DESCRIPTION):
            if (archive / s.folder / name).exists():
                planned.append((archive / s.folder / name, staging / "old" / s.tag / name, True))
    asides = [m for m in moves if m[1].startswith(("park:", "old:"))]
    planned += [(where(a), where(b), True) for a, b in asides]
    planned += [(where(a), where(b), False) for a, b in moves if (a, b) not in asides]
    pages_a = archive / side.folder / "pages"
    for row_id, page in staged.items():
        planned.append((page.usage[0], pages_a / page.usage[0].name, False))
        planned.append((page.thumbnail[0], pages_a / files[row_id].thumbnail, False))
        planned.append((staging / "pages" / files[row_id].sidecar, pages_a / files[row_id].sidecar, False))
    for s in (side, other):
        if s is None:
            continue
        if s.pdf is not None:
            planned.append((staging / s.tag / "item.pdf", archive / s.folder / s.pdf_name, False))
        planned.append((staging / s.tag / DESCRIPTION, archive / s.folder / DESCRIPTION, False))
    make_moves(settings, entry, planned)
