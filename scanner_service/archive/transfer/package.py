"""移交: a fonds (or some of its years) as a BagIt bag (bagit-python, BagIt 0.97) for the county archive.

The bag holds every file the station recorded for each item (masters, the PDF/A, page images, OCR,
thumbnails, item.json, replaced and withdrawn masters), each checked against its recorded SHA-256 as
it is copied, plus what the receiving station needs to file it as it was (see
:mod:`scanner_service.archive.transfer`). It is written under a temporary name beside the target, made
a bag, validated, and only then renamed: a transfer cut off midway never looks like a finished one.

Each item is copied holding its lock, so no filing or correction changes it midway; an item whose pages
are being derived again is left out (and said), not copied half-changed.
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import bagit
from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session

from scanner_service import __version__
from scanner_service.archive import access
from scanner_service.archive.db import session_scope
from scanner_service.archive.export.choose import LeftOut
from scanner_service.archive.export.run import check_target
from scanner_service.archive.filing import item_lock, page_key, recover_item
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ArchiveFile, Correction, Fonds, Item, ItemPage
from scanner_service.archive.transfer import catalogue
from scanner_service.archive.transfer.format import (
    FORMAT,
    ITEM_FIELDS,
    ITEM_FORMAT,
    ITEM_RECORD,
    ITEM_XML,
    PAYLOAD_ARCHIVE,
    TRANSFER_JSON,
    TransferError,
)
from scanner_service.exceptions import UnusableInput
from scanner_service.settings import Settings
from workers import durable

log = logging.getLogger(__name__)

LOCK_WAIT = 60.0  # seconds to wait for a filing of an item to end before copying it
Progress = Callable[[int, int], None]  # (items done, items in all)


@dataclass(frozen=True)
class TransferSpec:
    fonds: str
    years: tuple[int, int] | None = None
    recipient: str | None = None  # 接收单位: the archive it goes to


@dataclass
class TransferReport:
    bag: Path
    items: int = 0
    pages: int = 0
    files: int = 0
    bytes: int = 0
    left_out: list[LeftOut] = field(default_factory=list)


def transfer_fonds(
    settings: Settings, caller: access.Caller, spec: TransferSpec, to: Path, *, progress: Progress | None = None
) -> TransferReport:
    """Write the bag of ``spec``'s items to the folder ``to``; validated before it is returned."""
    to = to.absolute()
    check_target(to)
    fonds = spec.fonds.strip().upper()
    url = settings.effective_database_url
    with session_scope(url) as session:
        fonds_row = session.get(Fonds, fonds)
        stmt = (
            select(Item.code_key, Item.archival_code, Item.pages_filed)
            .where(Item.fonds == fonds)
            .order_by(Item.code_key)
        )
        if spec.years:
            stmt = stmt.where(Item.year.between(*spec.years))
        chosen = list(session.execute(stmt))
        fonds_info = {
            "code": fonds,
            "name": fonds_row.name if fonds_row else None,
            "code_style": fonds_row.code_style if fonds_row else "dat22",
            "allow_new_items": fonds_row.allow_new_items if fonds_row else True,
        }
    report = TransferReport(to)
    keys = [(key, written) for key, written, pages in chosen if pages]
    report.left_out += [LeftOut(written, "no_pages", "no pages filed") for _, written, pages in chosen if not pages]
    if not keys:
        raise UnusableInput(
            f"Nothing to transfer: fonds {fonds} has no item with pages filed"
            + (f" in {spec.years[0]}–{spec.years[1]}" if spec.years else "")
            + ".",
            reason_code="nothing_to_transfer",
        )
    tmp = to.with_name(f".{to.name}.part-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        items = []
        for n, (key, written) in enumerate(keys, 1):
            copied = _copy_item(settings, key, written, tmp, report)
            if copied is not None:
                items.append(copied)
            if progress is not None:
                progress(n, len(keys))
        if not items:
            raise UnusableInput("Nothing to transfer: every item was left out.", reason_code="nothing_to_transfer")
        made_at = datetime.now().astimezone()
        title = f"{fonds_info['name'] or fonds + ' 全宗'} 归档文件目录"
        catalogue.write_csv(tmp / catalogue.CATALOGUE_CSV, items)
        catalogue.write_xlsx(tmp / catalogue.CATALOGUE_XLSX, items, title)
        transfer_id = uuid.uuid4().hex
        durable.write_text(
            tmp / TRANSFER_JSON,
            json.dumps(
                {
                    "format": FORMAT,
                    "transfer_id": transfer_id,
                    "made_at": made_at.isoformat(timespec="seconds"),
                    "made_by": caller.name,
                    "recipient": spec.recipient,
                    "station": platform.node(),
                    "fonds": [fonds_info],
                    "years": list(spec.years) if spec.years else None,
                    "items": [
                        {
                            "archival_code": i["archival_code"],
                            "code_key": i["code_key"],
                            "folder": i["folder"],
                            "pages": i["pages_filed"],
                            "pdf_sha256": i["pdf_sha256"],
                        }
                        for i in items
                    ],
                    "left_out": [vars(x) for x in report.left_out],
                },
                ensure_ascii=False,
                indent=1,
            ),
        )
        info = {
            "Source-Organization": str(fonds_info["name"] or f"全宗 {fonds}"),
            "Contact-Name": caller.name,
            "External-Description": f"移交 {fonds}"
            + (f" {spec.years[0]}-{spec.years[1]}" if spec.years else "")
            + f": {len(items)} items, {report.pages} pages",
            "External-Identifier": fonds,
            "Internal-Sender-Identifier": transfer_id,
            "Bag-Software-Agent": f"scanstation {__version__}",
        }
        if spec.recipient:
            info["Transfer-To"] = spec.recipient
        bag = bagit.make_bag(str(tmp), info, checksums=["sha256"])
        bag.validate()  # every file read again from the disk: what is reported done was checked
        tmp.rename(to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.items = len(items)
    _record(settings, caller, spec, report, [i["code_key"] for i in items])
    return report


def _copy_item(settings: Settings, key: str, written: str, tmp: Path, report: TransferReport) -> dict[str, Any] | None:
    """Copy one item's recorded files into the bag and write its record and XML; its catalogue row (None
    if it is left out)."""
    with item_lock(settings, key, timeout=LOCK_WAIT) as held:
        if not held:
            report.left_out.append(LeftOut(written, "busy", "a filing of the item did not end in time; transfer again"))
            return None
        recover_item(settings, key)  # a filing a crash cut off is finished or undone first
        with session_scope(settings.effective_database_url) as session:
            item = session.scalar(select(Item).where(Item.code_key == key))
            if item is None:
                return None
            if any(row.state != "done" for row in item.pages):
                report.left_out.append(
                    LeftOut(item.archival_code, "busy", "a corrected page is being derived again; transfer again")
                )
                return None
            record = _item_record(session, item)
        archive = Layout.of(settings).archive
        target = tmp / PAYLOAD_ARCHIVE / record["item"]["folder"]
        for f in record["files"]:
            source = archive / record["item"]["folder"] / f["path"]
            if not source.is_file():
                raise TransferError(
                    f"{source.relative_to(archive)} ({f['kind']}) is missing from the archive: nothing was "
                    "transferred. Run scanstation audit."
                )
            (target / f["path"]).parent.mkdir(parents=True, exist_ok=True)
            digest = durable.copy_file(source, target / f["path"])
            if digest.sha256 != f["sha256"]:
                raise TransferError(
                    f"{source.relative_to(archive)} ({f['kind']}) changed since it was recorded: nothing was "
                    "transferred. Run scanstation audit."
                )
            report.files += 1
            report.bytes += digest.size
        target.mkdir(parents=True, exist_ok=True)
        durable.write_text(target / ITEM_XML, catalogue.item_xml(record["item"], record["pages"], record["files"]))
        durable.write_text(target / ITEM_RECORD, json.dumps(record, ensure_ascii=False, indent=1, default=_json))
    report.pages += len(record["pages"])
    return dict(record["item"])


def _json(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _item_record(session: Session, item: Item) -> dict[str, Any]:
    """What the receiving station files the item from: its catalogue row, its pages (with their page
    keys, which name the files in pages/), its files with their recorded SHA-256, and its history."""
    pages = sorted(item.pages, key=lambda r: r.serial)
    prefix = item.folder + "/"
    keys = {page_key(row) for row in pages}
    files = [
        {"path": row.path[len(prefix) :], "kind": row.kind.value, "sha256": row.sha256, "size": row.size}
        for row in session.scalars(select(ArchiveFile).where(ArchiveFile.item_id == item.id).order_by(ArchiveFile.path))
        if row.path.startswith(prefix) and _of_a_page(row.path[len(prefix) :], keys)
    ]
    return {
        "format": ITEM_FORMAT,
        "item": {name: getattr(item, name) for name in ITEM_FIELDS},
        "pages": [
            {
                "key": page_key(row),
                "serial": row.serial,
                "master_name": row.master_name,
                "text": row.text,
                "confidence": row.confidence,
                "flags": list(row.flags or []),
                "details": row.details or {},
                "decision": row.decision,
                "correction": row.correction or {},
                "filed_at": row.filed_at,
            }
            for row in pages
        ],
        "files": files,
        "history": _history(session, item, pages),
    }


def _of_a_page(rel: str, keys: set[str]) -> bool:
    """Whether a file goes in: every file but the derived files (pages/) of a page no longer in the item, which
    a rescan in replace mode leaves behind; its master goes in, under replaced/, and they are made from it."""
    return not rel.startswith("pages/") or rel[len("pages/") :][:8] in keys


def _history(session: Session, item: Item, pages: list[ItemPage]) -> list[dict[str, Any]]:
    """Every correction of the item and of its pages, those made in their batch before filing included,
    oldest first; each names its page by page key (None: the whole item)."""
    by_row = {row.id: page_key(row) for row in pages}
    by_batch: dict[tuple[int | None, int | None], str] = {
        (row.batch_id, row.batch_seq): page_key(row) for row in pages if row.batch_id is not None
    }
    conditions = [Correction.item_id == item.id]
    if by_row:
        conditions.append(Correction.item_page_id.in_(list(by_row)))
    if by_batch:
        conditions.append(tuple_(Correction.batch_id, Correction.seq).in_(list(by_batch)))
    out = []
    for row in session.scalars(select(Correction).where(or_(*conditions)).order_by(Correction.id)):
        key = by_row.get(row.item_page_id or 0) or by_batch.get((row.batch_id, row.seq))
        out.append(
            {
                "at": row.at,
                "who": row.who,
                "action": row.action,
                "page_key": key,
                "serial": row.serial,
                "before": row.before,
                "after": row.after,
                "note": row.note,
                "kind": "person" if row.user_id is not None else "token",
            }
        )
    return out


def _record(
    settings: Settings, caller: access.Caller, spec: TransferSpec, report: TransferReport, keys: list[str]
) -> None:
    """One 利用登记 line per item transferred (action ``transfer``)."""
    purpose = "移交" + (f" → {spec.recipient}" if spec.recipient else "")
    with session_scope(settings.effective_database_url) as session:
        for start in range(0, len(keys), 500):
            for item in session.scalars(select(Item).where(Item.code_key.in_(keys[start : start + 500]))):
                access.log_access(
                    session, caller, item, "transfer", purpose=purpose, client=f"bag {report.bag.name}"[:80]
                )
