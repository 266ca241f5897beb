"""Filing: a batch's pages become the pages of an item (件) under its 档号 in the archive tree.

The item folder is ``archive/<fonds>/<category>/<year>/<档号>/`` and holds:

- the masters, named 档号 + page serial (DA/T 31-2017): ``C015-WS·2013-Y-BGS-0012-0001.tif``. A
  single-image original is copied byte for byte (keeping its format); a page of a multi-page TIFF
  becomes a lossless TIFF, and a page of a PDF a one-page PDF cut out of it without re-encoding;
- the item's searchable PDF/A, ``<档号>.pdf``, built from every page in serial order;
- ``pages/``: each page's usage image, OCR boxes (JSON) and thumbnail, named by a stable page key so
  that a rescan that inserts or replaces pages renames only the masters;
- ``item.json``: the description and the page list, so the folder makes sense without the catalogue
  (a copy on a USB disk for a village without broadband);
- ``replaced/v<N>/``: masters a rescan replaced, kept, never deleted.

Every file written is recorded with its SHA-256 (``ArchiveFile``) for ``scanstation audit``. One
item is filed by one process at a time (a lock file, and ``FOR UPDATE`` on PostgreSQL).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pikepdf
from PIL import Image
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ocr_models.base import PageText
from scanner_service.archive import archival_code as ac
from scanner_service.archive import search
from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import Layout, stored_path
from scanner_service.archive.models import (
    ArchiveFile,
    Batch,
    Event,
    Fonds,
    Item,
    ItemPage,
    Page,
    PageState,
    SearchEntry,
)
from scanner_service.exceptions import Conflict, NotFound, ScanstationError
from scanner_service.settings import Settings

log = logging.getLogger(__name__)

MODES = ("new", "append", "replace", "insert")
THUMB_SIZE = 320  # px, longest side
_COPY_AS_IS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "BMP": "bmp", "WEBP": "webp", "JPEG2000": "jp2"}


class FilingRefused(Conflict):
    """The pages cannot be filed this way (the item already has pages, a count does not match, …)."""

    code = "filing_refused"

    def __init__(self, message: str, *, reason_code: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass
class FilingResult:
    archival_code: str
    item_id: int
    pages_filed: int
    version: int
    page_check: str | None
    serials: list[int] = field(default_factory=list)


# ---- the item and its folder -------------------------------------------------------------------


def fonds_style(session: Session, fonds: str) -> ac.CodeStyle:
    record = session.get(Fonds, fonds)
    return ac.style_for(record.code_style) if record else ac.DAT22


def find_item(session: Session, text: str) -> Item | None:
    """The item whose 档号 is ``text`` in either form (raises InvalidArchivalCode for a malformed one)."""
    return session.scalar(select(Item).where(Item.code_key == str(ac.parse(text))))


def ensure_item(session: Session, code: ac.ArchivalCode, *, may_create: bool) -> Item:
    """The item for ``code``, created (with its fonds) if it is new and the fonds allows new items."""
    item = session.scalar(select(Item).where(Item.code_key == str(code)))
    if item is not None:
        return item
    fonds = session.get(Fonds, code.fonds)
    if fonds is None:
        fonds = Fonds(code=code.fonds, code_style="dat22", allow_new_items=True)
        session.add(fonds)
        session.flush()
    if not (may_create or fonds.allow_new_items):
        raise NotFound(
            f"{code} is not in the catalogue of fonds {code.fonds}, and this fonds does not take new items "
            "from scanning: import its 归档文件目录 first, or file the batch through the API."
        )
    style = ac.style_for(fonds.code_style)
    fonds_dir, category, year = code.path_parts()
    written = code.format(style)
    item = Item(
        code_key=str(code),
        archival_code=written,
        fonds=code.fonds,
        category=code.category,
        year=code.year,
        retention=code.retention,
        org=code.org,
        volume=code.volume,
        item_no=code.item,
        folder=str(Path(fonds_dir, category, year, written)),
        pages_filed=0,
        version=0,
    )
    session.add(item)
    session.flush()
    return item


@contextlib.contextmanager
def item_lock(settings: Settings, code_key: str) -> Iterator[None]:
    """Only one filer per item at a time, across the processes of this machine."""
    locks = settings.archive_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(code_key.encode()).hexdigest()[:32] + ".lock"
    with open(locks / name, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# ---- masters ---------------------------------------------------------------------------------------


def write_master(source: Path, index: int, frames_used: int, target_stem: Path) -> Path:
    """The master of one scanned page, as close to the scanner's bytes as the format allows."""
    with open(source, "rb") as handle:
        is_pdf = handle.read(5) == b"%PDF-"
    if is_pdf:
        target = target_stem.with_suffix(".pdf")
        with pikepdf.open(source) as pdf:
            if len(pdf.pages) == 1:
                shutil.copyfile(source, target)
            else:
                single = pikepdf.Pdf.new()
                single.pages.append(pdf.pages[index])
                single.save(target)
        return target
    with Image.open(source) as im:
        frames = getattr(im, "n_frames", 1)
        if frames == 1 and frames_used == 1 and im.format in _COPY_AS_IS:
            target = target_stem.with_suffix("." + _COPY_AS_IS[im.format])
            shutil.copyfile(source, target)
            return target
        im.seek(index)
        frame = im.copy()
        dpi = im.info.get("dpi")
    target = target_stem.with_suffix(".tif")
    options: dict[str, Any] = {"compression": "group4" if frame.mode == "1" else "tiff_lzw"}
    if dpi:
        options["dpi"] = dpi
    frame.save(target, "TIFF", **options)
    return target


# ---- filing --------------------------------------------------------------------------------------


@dataclass
class _Slot:
    """A page in the item's new order: an existing ItemPage, or a batch page being filed."""

    existing: ItemPage | None = None
    page: Page | None = None


def _order(
    existing: list[ItemPage], new: list[Page], mode: str, replace: Sequence[int], at: int | None
) -> tuple[list[_Slot], list[ItemPage]]:
    """The item's pages after filing, and the existing pages that leave it (replaced)."""
    slots_old = [_Slot(existing=p) for p in existing]
    slots_new = [_Slot(page=p) for p in new]
    if mode == "new":
        if existing:
            raise FilingRefused(
                f"The item already has {len(existing)} pages; a rescan must say whether it appends, inserts or "
                "replaces pages.",
                reason_code="item_has_pages",
            )
        return slots_new, []
    if mode == "append":
        return slots_old + slots_new, []
    if mode == "insert":
        if at is None or not 1 <= at <= len(existing) + 1:
            raise FilingRefused(
                f"Insert needs 'at', a page number from 1 to {len(existing) + 1}.", reason_code="bad_position"
            )
        return slots_old[: at - 1] + slots_new + slots_old[at - 1 :], []
    if mode == "replace":
        if not replace:
            raise FilingRefused(
                "Replace needs 'replace': the page numbers the new pages take the place of, e.g. [3] or "
                f"[1, …, {len(existing)}] for all of them.",
                reason_code="bad_position",
            )
        if sorted(set(replace)) != sorted(replace) or any(not 1 <= s <= len(existing) for s in replace):
            raise FilingRefused(
                f"Pages to replace must be distinct page numbers from 1 to {len(existing)}.",
                reason_code="bad_position",
            )
        if len(replace) != len(new):
            raise FilingRefused(
                f"{len(replace)} pages to replace but {len(new)} new pages: the counts must match.",
                reason_code="count_mismatch",
            )
        order = list(slots_old)
        gone = []
        for serial, slot in zip(replace, slots_new, strict=True):
            old = order[serial - 1].existing
            assert old is not None
            gone.append(old)
            order[serial - 1] = slot
        return order, gone
    raise FilingRefused(f"Unknown filing mode {mode!r}; use one of: {', '.join(MODES)}.", reason_code="bad_mode")


def pages_to_file(batch: Batch, seqs: Sequence[int] | None) -> list[Page]:
    """The batch pages to file: the named ones, or every finished page that is not blank or a separator."""
    by_seq = {p.seq: p for p in batch.pages}
    if seqs is not None:
        missing = [s for s in seqs if s not in by_seq]
        if missing:
            raise NotFound(f"Batch {batch.id} has no page {', '.join(map(str, missing))}.")
        chosen = [by_seq[s] for s in seqs]
    else:
        chosen = [p for p in batch.pages if not p.blank and "separator" not in (p.flags or [])]
    unfinished = [p.seq for p in chosen if p.state != PageState.done]
    if unfinished:
        raise FilingRefused(
            f"Page(s) {', '.join(map(str, unfinished))} of batch {batch.id} are not processed (failed or still "
            "running); file the other pages by number, or rescan.",
            reason_code="pages_not_done",
        )
    if not chosen:
        raise FilingRefused(f"Batch {batch.id} has no page to file.", reason_code="no_pages")
    return chosen


def file_batch(
    settings: Settings,
    batch_id: int,
    code_text: str,
    *,
    seqs: Sequence[int] | None = None,
    mode: str = "new",
    replace: Sequence[int] = (),
    at: int | None = None,
    actor: str = "station",
    may_create: bool = False,
    check_count: bool = False,
) -> FilingResult:
    """File pages of a finished batch into the item ``code_text``; see :func:`_order` for the modes.

    ``check_count`` refuses (rather than flags) a page count that differs from the catalogue's 页数:
    used for separator runs, where a wrong count means a missing sheet and filing would mis-file.
    """
    code = ac.parse(code_text)
    with item_lock(settings, str(code)), session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            raise NotFound(f"No batch {batch_id}.")
        new_pages = pages_to_file(batch, seqs)
        already = session.execute(
            select(ItemPage.batch_seq, Item.archival_code)
            .join(Item, Item.id == ItemPage.item_id)
            .where(ItemPage.batch_id == batch.id, ItemPage.batch_seq.in_([p.seq for p in new_pages]))
        ).all()
        if already:
            where = "; ".join(f"page {seq} in {filed_in}" for seq, filed_in in sorted(already))
            raise FilingRefused(
                f"Batch {batch.id}: already filed ({where}). A page is filed under one 档号 only; rescan it to "
                "file it again.",
                reason_code="page_already_filed",
            )
        item = ensure_item(session, code, may_create=may_create)
        if session.get_bind().dialect.name == "postgresql":
            session.refresh(item, with_for_update=True)
        if check_count and item.expected_pages not in (None, len(new_pages)) and mode == "new":
            raise FilingRefused(
                f"{item.archival_code}: {len(new_pages)} pages between its separator sheets, but the catalogue "
                f"says {item.expected_pages} (页数); a sheet may be missing.",
                reason_code="page_count_mismatch",
            )
        order, gone = _order(list(item.pages), new_pages, mode, replace, at)
        result = _write(settings, session, item, batch, order, gone, actor=actor, mode=mode)
        if batch.archival_code is None:
            batch.archival_code = item.archival_code
        return result


def _write(
    settings: Settings,
    session: Session,
    item: Item,
    batch: Batch,
    order: list[_Slot],
    gone: list[ItemPage],
    *,
    actor: str,
    mode: str,
) -> FilingResult:
    """Write the new files first, under names nothing else uses (new masters in a staging folder, page
    files keyed by their row id, the PDF under a temporary name); only then move existing masters, in
    a few renames. A failure before the renames leaves the item as it was plus stray files the audit
    lists; no existing master is ever overwritten, and replaced ones are kept."""
    archive = settings.archive_dir
    folder = archive / item.folder
    (folder / "pages").mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staging = folder / f".staging-{token}"
    staging.mkdir()
    code = ac.parse(item.archival_code)
    style = ac.style_of(item.archival_code)  # the style the item was created in, whatever its fonds says now
    version = item.version + 1
    originals = Layout.of(settings).originals_dir(batch.id)
    frames: dict[int, int] = {}
    for p in batch.pages:
        frames[p.original_id] = frames.get(p.original_id, 0) + 1

    # 1. Catalogue rows in their new order (nothing committed yet): replaced rows go, rows that move are
    #    parked on a negative serial first so the (item, serial) constraint never sees two at once.
    moved: list[tuple[ItemPage, str]] = []  # (row, its master's current name)
    for serial, slot in enumerate(order, start=1):
        if slot.existing is not None and slot.existing.serial != serial:
            moved.append((slot.existing, slot.existing.master_name))
            slot.existing.serial = -slot.existing.id
    replaced_names = [old.master_name for old in gone]
    for old in gone:
        session.delete(old)
    session.flush()
    new_rows: list[tuple[ItemPage, Page, Path]] = []
    for serial, slot in enumerate(order, start=1):
        if slot.existing is not None:
            slot.existing.serial = serial
            continue
        page = slot.page
        assert page is not None
        master = write_master(
            stored_path(originals, page.original.stored_name),
            page.source_index,
            frames[page.original_id],
            staging / f"new-{page.id}",
        )
        row = ItemPage(
            item_id=item.id,
            serial=serial,
            batch_id=batch.id,
            batch_seq=page.seq,
            master_name=code.master_stem(serial, style) + master.suffix,
            text=page.text,
            confidence=page.confidence,
            flags=[f for f in (page.flags or []) if f != "separator"],
        )
        session.add(row)
        new_rows.append((row, page, master))
    for row, name in moved:
        row.master_name = code.master_stem(row.serial, style) + Path(name).suffix
    session.flush()

    # 2. Usage image, OCR boxes and thumbnail of each new page, keyed by the row id (never reused).
    recorded: list[tuple[Path, str]] = []
    source_pages = Layout.of(settings).pages_dir(batch.id)
    for row, page, _ in new_rows:
        meta = json.loads((source_pages / f"{page.seq:04d}.json").read_text(encoding="utf-8"))
        image_src = source_pages / meta["image"]
        key = page_key(row)
        usage = folder / "pages" / (key + image_src.suffix)
        shutil.copyfile(image_src, usage)
        meta["image"] = usage.name
        boxes = folder / "pages" / f"{key}.json"
        _write_text(boxes, json.dumps(meta, ensure_ascii=False))
        thumb = folder / "pages" / f"{key}-thumb.jpg"
        with Image.open(usage) as im:
            small = im.convert("L" if im.mode in ("1", "L") else "RGB")
            small.thumbnail((THUMB_SIZE, THUMB_SIZE))
            small.save(thumb, "JPEG", quality=80)
        recorded += [(usage, "usage"), (boxes, "ocr"), (thumb, "thumbnail")]

    # 3. The item's PDF/A from every page in order, under a temporary name.
    session.refresh(item)
    pdf = folder / f"{item.archival_code}.pdf"
    pdf_tmp = staging / "item.pdf"
    _build_item_pdf(settings, item, pdf_tmp)

    # 4. The renames. Replaced masters are kept in a folder of their own (never overwritten); masters
    #    that move go through staging, so no rename lands on a name still in use.
    fixity = {
        row.path: (row.sha256, row.size)
        for row in session.scalars(
            select(ArchiveFile).where(ArchiveFile.item_id == item.id, ArchiveFile.kind == "master")
        )
    }
    if replaced_names:
        keep = folder / "replaced" / f"v{version}-{token}"
        keep.mkdir(parents=True)
        for name in replaced_names:
            os.replace(folder / name, keep / name)
            session.execute(
                update(ArchiveFile)
                .where(ArchiveFile.path == str(Path(item.folder, name)))
                .values(path=str(keep.relative_to(archive) / name), kind="replaced")
            )
    parked = []
    for row, name in moved:
        temp = staging / f"old-{row.id}{Path(name).suffix}"
        os.replace(folder / name, temp)
        parked.append((row, name, temp))
        # The recorded digest moves with the file: a master changed before this rescan stays reported.
        session.execute(delete(ArchiveFile).where(ArchiveFile.path == str(Path(item.folder, name))))
    session.flush()
    for row, name, temp in parked:
        os.replace(temp, folder / row.master_name)
        digest, size = fixity.get(str(Path(item.folder, name))) or file_sha256(folder / row.master_name)
        session.add(
            ArchiveFile(
                item_id=item.id, path=str(Path(item.folder, row.master_name)), kind="master", sha256=digest, size=size
            )
        )
    for row, _, master in new_rows:
        os.replace(master, folder / row.master_name)
        recorded.append((folder / row.master_name, "master"))
    os.replace(pdf_tmp, pdf)
    shutil.rmtree(staging, ignore_errors=True)
    recorded.append((pdf, "pdf"))

    # 5. The catalogue: the item, its description file, fixity records, search, the event.
    item.pdf_name = pdf.name
    item.pdf_sha256, item.pdf_size = file_sha256(pdf)
    item.pages_filed = len(item.pages)
    item.version = version
    item.filed_at = datetime.now(UTC)
    item.page_check = page_check(item)
    for path, kind in recorded:
        record_file(session, archive, path, kind, item.id)
    write_description(settings, session, item)
    reindex_item(session, item)
    filed_seqs = [page.seq for _, page, _ in new_rows]
    session.execute(delete(SearchEntry).where(SearchEntry.batch_id == batch.id, SearchEntry.page_no.in_(filed_seqs)))
    session.add(
        Event(
            kind="item_filed" if version == 1 else "item_pages_changed",
            archival_code=item.archival_code,
            fonds=item.fonds,
            item_id=item.id,
            batch_id=batch.id,
            detail={
                "mode": mode,
                "version": version,
                "pages": item.pages_filed,
                "batch_pages": filed_seqs,
                "replaced": len(gone),
                "page_check": item.page_check,
                "by": actor,
            },
        )
    )
    session.flush()
    return FilingResult(
        archival_code=item.archival_code,
        item_id=item.id,
        pages_filed=item.pages_filed,
        version=version,
        page_check=item.page_check,
        serials=[row.serial for row, _, _ in new_rows],
    )


def write_description(settings: Settings, session: Session, item: Item) -> None:
    """(Re)write the item folder's item.json and record it; nothing to do for an item with no pages yet."""
    folder = settings.archive_dir / item.folder
    if not item.pages_filed or not folder.is_dir():
        return
    described = folder / "item.json"
    _write_text(described, json.dumps(describe(item), ensure_ascii=False, indent=1, default=str))
    record_file(session, settings.archive_dir, described, "description", item.id)


def page_key(row: ItemPage) -> str:
    """The stable name of a page's derived files: does not change when the page's serial does."""
    return f"p{row.id:07d}"


def _page_meta(settings: Settings, item: Item, row: ItemPage) -> tuple[Path, dict[str, Any]]:
    folder = settings.archive_dir / item.folder / "pages"
    return folder, json.loads((folder / f"{page_key(row)}.json").read_text(encoding="utf-8"))


def page_files(settings: Settings, item: Item, row: ItemPage) -> tuple[Path, Path]:
    """(usage image, thumbnail) of one filed page."""
    folder, meta = _page_meta(settings, item, row)
    return folder / meta["image"], folder / f"{page_key(row)}-thumb.jpg"


def page_text(settings: Settings, item: Item, row: ItemPage) -> tuple[PageText, tuple[float, float], Path]:
    """(OCR lines with boxes, resolution, usage image) of one filed page."""
    folder, meta = _page_meta(settings, item, row)
    dpi = (float(meta["dpi"][0]), float(meta["dpi"][1]))
    return PageText.from_dict(meta["text"]), dpi, folder / meta["image"]


def _build_item_pdf(settings: Settings, item: Item, target: Path) -> None:
    from workers.pdfa import PdfPage, build_pdfa

    pages = []
    for row in item.pages:
        text, dpi, usage = page_text(settings, item, row)
        pages.append(PdfPage(image=usage, dpi=dpi, text=text))
    build_pdfa(pages, target, title=f"{item.archival_code} {item.title or ''}".strip(), author=item.author or "")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def record_file(session: Session, archive: Path, path: Path, kind: str, item_id: int | None) -> None:
    """Record (or re-record) a file's SHA-256 as written now."""
    rel = str(path.relative_to(archive))
    digest, size = file_sha256(path)
    row = session.scalar(select(ArchiveFile).where(ArchiveFile.path == rel))
    if row is None:
        session.add(ArchiveFile(item_id=item_id, path=rel, kind=kind, sha256=digest, size=size))
    else:
        row.sha256, row.size, row.kind, row.item_id = digest, size, kind, item_id
        row.recorded_at = datetime.now(UTC)


def page_check(item: Item) -> str | None:
    """漏扫 / 多扫: the filed page count against the catalogue's 页数."""
    if item.expected_pages is None or not item.pages_filed:
        return None
    if item.pages_filed < item.expected_pages:
        return "missing_pages"
    if item.pages_filed > item.expected_pages:
        return "extra_pages"
    return None


def describe(item: Item) -> dict[str, Any]:
    """The item's DA/T 18 description and page list, as written to item.json and returned by the API."""
    return {
        "archival_code": item.archival_code,
        "fonds": item.fonds,
        "category": item.category,
        "year": item.year,
        "retention": item.retention,
        "org": item.org,
        "volume": item.volume,
        "item": item.item_no,
        "serial": item.serial,
        "title": item.title,
        "author": item.author,
        "date": item.date_text,
        "doc_number": item.doc_number,
        "pages": item.expected_pages,
        "classification": item.classification,
        "open_status": item.open_status,
        "note": item.note,
        "pages_filed": item.pages_filed,
        "page_check": item.page_check,
        "version": item.version,
        "pdf": item.pdf_name,
        "pdf_sha256": item.pdf_sha256,
        "filed_at": item.filed_at,
        "page_list": [
            {"page": row.serial, "master": row.master_name, "batch": row.batch_id, "batch_page": row.batch_seq}
            for row in item.pages
        ],
    }


def reindex_item(session: Session, item: Item) -> None:
    session.execute(delete(SearchEntry).where(SearchEntry.item_id == item.id))
    for row in item.pages:
        if row.text:
            session.add(
                search.new_entry(
                    row.text,
                    page_no=row.serial,
                    item_id=item.id,
                    fonds=item.fonds,
                    category=item.category,
                    year=item.year,
                )
            )


def batch_fonds(batch: Batch) -> str | None:
    """The fonds a batch belongs to: from the 档号 it was filed under or is named by; None if unknown."""
    code = batch.archival_code or (batch.filing or {}).get("target")
    return ac.parse(code).fonds if code else None


def index_batch(session: Session, batch: Batch) -> None:
    """Make a finished batch's pages searchable until they are filed (staff only see these)."""
    session.execute(delete(SearchEntry).where(SearchEntry.batch_id == batch.id))
    filed = set(session.scalars(select(ItemPage.batch_seq).where(ItemPage.batch_id == batch.id)))
    for page in batch.pages:
        if page.text and not page.blank and page.seq not in filed:
            session.add(search.new_entry(page.text, page_no=page.seq, batch_id=batch.id, fonds=batch_fonds(batch)))


def refuse_reason(err: ScanstationError) -> str:
    return getattr(err, "reason_code", err.code)


# ---- filing a finished batch on its own ----------------------------------------------------------


def _problem(code: str, message: str, seq: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "page": seq}


def _filed_entry(code: str, seqs: list[int], pages_filed: int, check: str | None) -> dict[str, Any]:
    return {"archival_code": code, "batch_pages": seqs, "pages_filed": pages_filed, "page_check": check}


@dataclass
class _Planned:
    archival_code: str
    seqs: list[int]
    done: dict[str, Any] | None = None  # filed by an earlier run of this assembly: its report entry


def plan(settings: Settings, batch_id: int) -> tuple[list[_Planned], list[dict[str, Any]], bool]:
    """What filing a finished batch would do: the items and their batch pages, the problems that stop
    it, and whether the plan came from separator sheets. Nothing is written."""
    from scanner_service.archive.separators import RunPage, split_run
    from workers.stages.separator import SeparatorMark

    with session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return [], [], False
        target = (batch.filing or {}).get("target")
        run = []
        for p in batch.pages:
            mark = (p.details or {}).get("separator")
            run.append(
                RunPage(
                    seq=p.seq,
                    mark=SeparatorMark(**mark) if mark else None,
                    blank=p.blank,
                )
            )
        failed = [p.seq for p in batch.pages if p.state == PageState.failed]
        split = split_run(run)
        problems = [_problem(pr.code, pr.message, pr.seq) for pr in split.problems]
        if split.has_separators:
            segments = [_Planned(s.archival_code, list(s.page_seqs)) for s in split.segments]
        elif target:
            segments = [_Planned(target, [p.seq for p in batch.pages if not p.blank and p.state == PageState.done])]
        else:
            return [], [], False
        if failed:
            pages = ", ".join(map(str, failed))
            problems.append(
                _problem("pages_failed", f"Page(s) {pages} failed; file the batch by hand once they are dealt with.")
            )
        for segment in segments:
            code_text, seqs = segment.archival_code, segment.seqs
            item = find_item(session, code_text)
            code = ac.parse(code_text)
            fonds = session.get(Fonds, code.fonds)
            if item is None and fonds is not None and not fonds.allow_new_items:
                problems.append(
                    _problem(
                        "not_in_catalogue",
                        f"{code_text} is not in the catalogue and fonds {code.fonds} takes no new items from scanning.",
                        seqs[0] if seqs else None,
                    )
                )
            if item is not None and any(row.batch_id == batch_id for row in item.pages):
                # Filed by an earlier run of this same assembly (a worker died after filing).
                segment.done = _filed_entry(item.archival_code, seqs, item.pages_filed, item.page_check)
                continue
            if item is not None and item.pages_filed:
                problems.append(
                    _problem(
                        "item_has_pages",
                        f"{item.archival_code} already has {item.pages_filed} pages: choose "
                        "append, insert or replace when filing this batch.",
                        seqs[0] if seqs else None,
                    )
                )
            if split.has_separators and item is not None and item.expected_pages not in (None, len(seqs)):
                problems.append(
                    _problem(
                        "page_count_mismatch",
                        f"{item.archival_code}: {len(seqs)} pages between its sheets, "
                        f"the catalogue says {item.expected_pages} (页数); a separator sheet may be missing.",
                        seqs[0] if seqs else None,
                    )
                )
        return segments, problems, split.has_separators


def auto_file(settings: Settings, batch_id: int) -> dict[str, Any]:
    """File a finished batch by its folder name or its separator sheets, all of it or none of it.

    Returns the report stored as ``Batch.filing``; a report with problems sends the batch to review.
    """
    segments, problems, by_sheets = plan(settings, batch_id)
    with session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        report: dict[str, Any] = dict(batch.filing or {}) if batch else {}
    report.update({"by": "separator sheets" if by_sheets else "folder name", "items": [], "problems": problems})
    if not segments:
        report.pop("by")
        return report
    if problems:
        report["proposed"] = [{"archival_code": s.archival_code, "batch_pages": s.seqs} for s in segments]
        return report
    for segment in segments:
        code_text, seqs = segment.archival_code, segment.seqs
        if segment.done is not None:
            report["items"].append(segment.done)
            continue
        try:
            result = file_batch(settings, batch_id, code_text, seqs=seqs, mode="new", check_count=by_sheets)
        except ScanstationError as err:
            problems.append(_problem(refuse_reason(err), err.message, seqs[0] if seqs else None))
            continue
        except Exception as err:  # noqa: BLE001 - the batch and its PDF stand; filing is retried by hand
            log.exception("batch %s: filing into %s failed", batch_id, code_text)
            problems.append(
                _problem("filing_error", f"Filing into {code_text} failed: {err}", seqs[0] if seqs else None)
            )
            continue
        report["items"].append(_filed_entry(result.archival_code, seqs, result.pages_filed, result.page_check))
    return report
