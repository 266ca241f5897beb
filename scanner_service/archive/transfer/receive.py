"""接收: file a transfer bag from another station under the same 档号, as it was.

1. The bag is validated first (BagIt: every payload file against its SHA-256, nothing missing, nothing
   extra). A bag that is not whole is refused with each bad file named (:class:`BagInvalid`), and
   nothing is filed.
2. Each item is compared with this station's catalogue: one already here with the same PDF and masters
   was received before and is skipped (receiving a bag twice files nothing twice, and a receipt cut off
   midway is finished by receiving the bag again); one here with other content is a conflict, and then
   nothing of the bag is filed.
3. Each new item is filed as one journaled change, like a batch's filing
   (:mod:`scanner_service.archive.filing.files`): its files are copied into a staging folder of the item
   (each checked against the bag's SHA-256 again as it is copied), then in one catalogue transaction the
   item, its page rows (same serials, same masters, same text and decisions), its fixity records, its
   search entries, its history and its ``item_filed`` event are written and the files moved into place.
   A crash at any point leaves the item absent or fully filed.

Page files in ``pages/`` are named by a page key that is the sending station's row number: they are
renamed to this station's keys (and each page's OCR sidecar names its new image). Every other file
keeps its name and its bytes; item.json is written anew from this station's catalogue.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import bagit
from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.archive import access
from scanner_service.archive import archival_code as ac
from scanner_service.archive.db import session_scope
from scanner_service.archive.filing import item_lock, journal, recover_item
from scanner_service.archive.filing.change import abort, check_planned, finish, make_moves, settle_item, take_write_lock
from scanner_service.archive.filing.items import DESCRIPTION, description_text, item_folder, key_of, record_file
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ArchiveFile, Correction, Event, FileKind, Fonds, Item, ItemPage
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.archive.transfer.format import (
    DESCRIPTION_FIELDS,
    FORMAT,
    ITEM_FORMAT,
    ITEM_RECORD,
    PAYLOAD_ARCHIVE,
    TRANSFER_JSON,
    BagInvalid,
)
from scanner_service.exceptions import Conflict
from scanner_service.settings import Settings
from workers import durable
from workers.durable import Digest

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (items done, items in all)
_PAGE_FILE = re.compile(r"^pages/(p\d{7})([.-].*)$")
_LISTED = 20  # bad files named in the message (all are in BagInvalid.problems)


@dataclass
class ReceiveReport:
    bag: Path
    source: str
    filed: list[str] = field(default_factory=list)  # 档号 filed now
    already: list[str] = field(default_factory=list)  # 档号 received before, skipped
    pages: int = 0
    files: int = 0


def receive_bag(
    settings: Settings, caller: access.Caller, bag_path: Path, *, progress: Progress | None = None
) -> ReceiveReport:
    """Validate the bag at ``bag_path``, then file each of its items not filed here yet."""
    bag = validate_bag(bag_path)
    data = Path(bag.path) / "data"
    manifest = _read_json(data / TRANSFER_JSON)
    if manifest.get("format") != FORMAT:
        raise BagInvalid(
            f"{bag_path}: not a scanstation transfer bag ({TRANSFER_JSON} says {manifest.get('format')!r})."
        )
    source = str(bag.info.get("Source-Organization") or "")
    records = [_item_record(data, entry) for entry in manifest.get("items", [])]
    report = ReceiveReport(bag_path, source)
    new = _sort_out(settings, records, report)
    fonds = {f["code"]: f for f in manifest.get("fonds", [])}
    where = {"bag": bag_path.name, "transfer_id": manifest.get("transfer_id"), "from": source}
    for n, record in enumerate(new, 1):
        _file_item(settings, caller, data, record, fonds.get(record["item"]["fonds"], {}), where, report)
        if progress is not None:
            progress(n, len(new))
    return report


def validate_bag(path: Path) -> bagit.Bag:
    """The bag at ``path``, every file checked; :class:`BagInvalid` naming each bad file otherwise."""
    try:
        bag = bagit.Bag(str(path))
    except bagit.BagError as err:
        raise BagInvalid(f"{path}: not a readable BagIt bag ({err}); nothing was filed.") from err
    try:
        bag.validate()
    except bagit.BagValidationError as err:
        # bagit stops at a count or size that differs (Payload-Oxum) without naming a file: name them.
        problems = [_problem(d) for d in err.details] or _every_problem(bag) or [str(err.message)]
        listed = "\n".join(problems[:_LISTED])
        if len(problems) > _LISTED:
            listed += f"\n… and {len(problems) - _LISTED} more"
        raise BagInvalid(
            f"{path}: the bag is not whole, nothing was filed ({len(problems)} problem(s)):\n{listed}", problems
        ) from err
    except bagit.BagError as err:
        raise BagInvalid(f"{path}: not a readable BagIt bag ({err}); nothing was filed.") from err
    return bag


def _every_problem(bag: bagit.Bag) -> list[str]:
    """Each missing, extra and changed file of the bag, by its manifests."""
    missing, extra = bag.compare_manifests_with_fs()
    problems = [f"MISSING  {rel}" for rel in sorted(missing)] + [
        f"EXTRA    {rel}  (in no manifest)" for rel in sorted(extra)
    ]
    gone = set(missing)
    for rel, hashes in sorted(bag.entries.items()):
        expected = hashes.get("sha256")
        file = Path(bag.path) / rel
        if expected and rel not in gone and file.is_file() and durable.sha256_of(file).sha256 != expected:
            problems.append(f"CHANGED  {rel}")
    return problems


def _problem(detail: bagit.ManifestErrorDetail) -> str:
    if isinstance(detail, bagit.ChecksumMismatch):
        return f"CHANGED  {detail.path}"
    if isinstance(detail, bagit.FileMissing):
        return f"MISSING  {detail.path}"
    if isinstance(detail, bagit.UnexpectedFile):
        return f"EXTRA    {detail.path}  (in no manifest)"
    return str(detail)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BagInvalid(f"{path}: cannot be read ({err}); nothing was filed.") from err
    if not isinstance(data, dict):
        raise BagInvalid(f"{path}: not a transfer record; nothing was filed.")
    return data


def _safe(rel: str, what: str) -> str:
    """A path inside the item's folder, as the bag names it; never out of it."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or any(part in ("", ".", "..") for part in pure.parts) or "\\" in rel:
        raise BagInvalid(f"{what}: the file name {rel!r} would lie outside its item's folder; nothing was filed.")
    return str(pure)


def _item_record(data: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """An item's record from the bag, checked: its 档号 parses, its folder is where that 档号 files it,
    its file names stay inside that folder."""
    written = str(entry.get("archival_code") or "")
    try:
        code = ac.parse(written)
    except ac.InvalidArchivalCode as err:
        raise BagInvalid(f"{TRANSFER_JSON}: {err}; nothing was filed.") from err
    _, folder = item_folder(code, ac.style_of(written))
    if entry.get("folder") != folder:
        raise BagInvalid(f"{written}: its folder in the bag is not where its 档号 files it; nothing was filed.")
    record = _read_json(data / PAYLOAD_ARCHIVE / folder / ITEM_RECORD)
    desc = record.get("item", {})
    if record.get("format") != ITEM_FORMAT or (desc.get("code_key"), desc.get("archival_code")) != (str(code), written):
        raise BagInvalid(f"{written}: its {ITEM_RECORD} is not this item's; nothing was filed.")
    _check_record(written, record)
    usage = {f["path"] for f in record["files"] if f["kind"] == FileKind.usage.value}
    for f in record["files"]:  # before anything of the bag is filed: a page's sidecar names its own image
        if f["kind"] == FileKind.ocr.value:
            sidecar = _check_sidecar(written, f["path"], data / PAYLOAD_ARCHIVE / folder / f["path"])
            if f"pages/{sidecar.image}" not in usage or sidecar.image[:8] != PurePosixPath(f["path"]).name[:8]:
                raise BagInvalid(f"{written}: {f['path']} names an image that is not its page's; nothing was filed.")
    record["code"] = code
    record["folder"] = folder
    return record


def _check_record(written: str, record: dict[str, Any]) -> None:
    """The record's files stay in the item's folder; each page has a page key, its serial once, and a master
    that is a file of the item; page files belong to a page; the PDF is a file of the item."""

    def bad(why: str) -> BagInvalid:
        return BagInvalid(f"{written}: {why}; nothing was filed.")

    kinds = {k.value for k in FileKind}
    names: dict[str, str] = {}
    for f in record["files"]:
        if f.get("kind") not in kinds:
            raise bad(f"{f.get('path')} is of no kind this station knows ({f.get('kind')!r})")
        f["path"] = _safe(f["path"], written)
        names[f["path"]] = f["kind"]
    pages = record["pages"]
    keys = {str(page.get("key")) for page in pages}
    if any(not re.fullmatch(r"p\d{7}", key) for key in keys) or len(keys) != len(pages):
        raise bad("a page has no page key of its own")
    if sorted(int(page["serial"]) for page in pages) != list(range(1, len(pages) + 1)):
        raise bad("its pages are not numbered 1, 2, 3 … once each")
    for page in pages:
        if names.get(str(page.get("master_name"))) != FileKind.master.value or "/" in page["master_name"]:
            raise bad(f"page {page['serial']}'s master {page.get('master_name')!r} is not a file of the item")
    for path in names:
        page_file = _PAGE_FILE.match(path)
        if path.startswith("pages/") and not (page_file and page_file.group(1) in keys):
            raise bad(f"{path} belongs to no page of the item")
    pdf = record["item"].get("pdf_name")
    if pdf is not None and (names.get(pdf) != FileKind.pdf.value or "/" in pdf):
        raise bad(f"its PDF {pdf!r} is not a file of the item")


def _check_sidecar(written: str, rel: str, path: Path) -> PageSidecar:
    """A page's OCR sidecar, read; it must name an image among the item's page files."""
    try:
        sidecar = PageSidecar.read(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BagInvalid(f"{written}: {rel} cannot be read as a page's OCR ({err}); nothing was filed.") from err
    if "/" in sidecar.image or "\\" in sidecar.image or not _PAGE_FILE.match(f"pages/{sidecar.image}"):
        raise BagInvalid(f"{written}: {rel} names an image outside its pages; nothing was filed.")
    return sidecar


def _fingerprint(pdf_sha256: str | None, masters: list[str]) -> tuple[str | None, list[str]]:
    return pdf_sha256, sorted(masters)


def _sort_out(settings: Settings, records: list[dict[str, Any]], report: ReceiveReport) -> list[dict[str, Any]]:
    """The records not filed here yet; those filed here with the same PDF and masters go to ``already``;
    any filed here with other content refuses the whole bag."""
    new, conflicts = [], []
    with session_scope(settings.effective_database_url) as session:
        for record in records:
            here = session.scalar(select(Item).where(Item.code_key == record["item"]["code_key"]))
            if here is None or (not here.pages_filed and not here.version):
                new.append(record)  # not here, or only as a catalogue row
            elif _same(session, here, record):
                report.already.append(here.archival_code)
            else:
                conflicts.append(here.archival_code)
    if conflicts:
        shown = ", ".join(conflicts[:_LISTED]) + (" …" if len(conflicts) > _LISTED else "")
        raise Conflict(
            f"{len(conflicts)} item(s) of the bag are filed here already with other pages or another PDF: {shown}. "
            "Nothing of the bag was filed; compare them, and withdraw or move the pages that are wrong first.",
            reason_code="already_filed_otherwise",
        )
    return new


def _same(session: Session, here: Item, record: dict[str, Any]) -> bool:
    masters = session.scalars(
        select(ArchiveFile.sha256).where(ArchiveFile.item_id == here.id, ArchiveFile.kind == FileKind.master)
    )
    theirs = [f["sha256"] for f in record["files"] if f["kind"] == FileKind.master.value]
    return _fingerprint(here.pdf_sha256, list(masters)) == _fingerprint(record["item"]["pdf_sha256"], theirs)


@dataclass
class _Staged:
    path: str  # in the item folder, as the bag names it
    kind: FileKind
    file: Path  # in staging
    digest: Digest


def _file_item(
    settings: Settings,
    caller: access.Caller,
    data: Path,
    record: dict[str, Any],
    fonds: dict[str, Any],
    where: dict[str, Any],
    report: ReceiveReport,
) -> None:
    code: ac.ArchivalCode = record["code"]
    folder: str = record["folder"]
    written = record["item"]["archival_code"]
    with item_lock(settings, str(code)):
        recover_item(settings, str(code))
        archive = Layout.of(settings).archive
        token = uuid.uuid4().hex[:8]
        staging = f"{folder}/.staging-{token}"
        targets = {str(Path(folder, _renamed_dir(f["path"]))) for f in record["files"]}
        entry = journal.begin(
            settings,
            code_key=str(code),
            archival_code=written,
            folder=folder,
            staging=staging,
            version_before=0,
            folders=sorted({folder, f"{folder}/pages", staging, *targets}, key=lambda p: (p.count("/"), p)),
        )
        try:
            staged = _stage(data / PAYLOAD_ARCHIVE / folder, archive / staging, record)
            with session_scope(settings.effective_database_url) as session:
                moves = _commit(session, settings, caller, record, fonds, where, staged, entry)
                make_moves(settings, entry, moves)
        except BaseException as err:
            abort(settings, entry, err)
            raise
        finish(settings, entry)
    report.filed.append(written)
    report.pages += len(record["pages"])
    report.files += len(staged)


def _renamed_dir(rel: str) -> str:
    return str(PurePosixPath(rel).parent)


def _stage(source: Path, staging: Path, record: dict[str, Any]) -> list[_Staged]:
    """Every file of the item but item.json copied into staging, each checked against the record."""
    staged = []
    inside = source.resolve()  # a link in the bag to a file outside the item's folder is refused
    for n, f in enumerate(record["files"]):
        kind = FileKind(f["kind"])
        if kind is FileKind.description:
            continue  # written anew from this station's catalogue
        target = staging / f"f{n:05d}{PurePosixPath(f['path']).suffix}"
        if not (source / f["path"]).resolve().is_relative_to(inside):
            raise BagInvalid(f"{record['item']['archival_code']}: {f['path']} links out of the bag; nothing was filed.")
        digest = durable.copy_file(source / f["path"], target)
        if digest.sha256 != f["sha256"]:
            raise BagInvalid(
                f"{record['item']['archival_code']}: {f['path']} changed while it was received; nothing of this "
                "item was filed. Check the bag's disk and receive the bag again.",
                [f"CHANGED  data/{PAYLOAD_ARCHIVE}/{record['folder']}/{f['path']}"],
            )
        staged.append(_Staged(f["path"], kind, target, digest))
    return staged


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _commit(
    session: Session,
    settings: Settings,
    caller: access.Caller,
    record: dict[str, Any],
    fonds: dict[str, Any],
    where: dict[str, Any],
    staged: list[_Staged],
    entry: journal.Journal,
) -> list[tuple[Path, Path, bool]]:
    """Every catalogue write of the item, the rewritten sidecars and item.json into staging; the moves."""
    take_write_lock(session)
    code: ac.ArchivalCode = record["code"]
    desc = record["item"]
    here = session.scalar(select(Item).where(Item.code_key == str(code)))
    check_planned(session, here, 0, [], f"{desc['archival_code']} was filed here while the bag was received.")
    if session.get(Fonds, code.fonds) is None:
        session.add(
            Fonds(
                code=code.fonds,
                name=fonds.get("name"),
                code_style=fonds.get("code_style") or "dat22",
                allow_new_items=bool(fonds.get("allow_new_items", True)),
            )
        )
        session.flush()
    # An item of this catalogue with no pages yet (an imported 归档文件目录) takes the bag's description.
    item = here or Item(code_key=str(code), fonds=code.fonds, pages_filed=0, version=0)
    item.archival_code, item.folder = desc["archival_code"], record["folder"]
    item.category, item.year, item.retention, item.org = code.category, code.year, code.retention, code.org
    item.volume, item.item_no = code.volume, code.item
    for name in DESCRIPTION_FIELDS:
        setattr(item, name, desc.get(name))
    item.date = date.fromisoformat(desc["date"]) if desc.get("date") else None
    item.filed_at = _when(desc.get("filed_at")) or datetime.now(UTC)
    session.add(item)
    session.flush()
    rows: dict[str, ItemPage] = {}
    for page in record["pages"]:
        row = ItemPage(
            item_id=item.id,
            serial=int(page["serial"]),
            master_name=page["master_name"],
            text=page.get("text"),
            confidence=page.get("confidence"),
            flags=list(page.get("flags") or []),
            details=dict(page.get("details") or {}),
            decision=page.get("decision"),
            correction=dict(page.get("correction") or {}),
            filed_at=_when(page.get("filed_at")) or datetime.now(UTC),
        )
        session.add(row)
        rows[page["key"]] = row
    session.flush()
    keys = {old: key_of(row.id) for old, row in rows.items()}
    archive = Layout.of(settings).archive
    folder = archive / record["folder"]
    staging = archive / entry.staging
    moves: list[tuple[Path, Path, bool]] = []
    pdf: Digest | None = None
    for f in staged:
        rel = _renamed(f.path, keys)
        if f.kind is FileKind.ocr:  # the sidecar names the page's usage image, which has a new name too
            sidecar = _check_sidecar(desc["archival_code"], f.path, f.file)
            f.digest = dataclasses.replace(sidecar, image=_renamed(sidecar.image, keys, bare=True)).write(f.file)
        if f.path == desc.get("pdf_name"):
            pdf = f.digest
        record_file(session, str(Path(record["folder"], rel)), f.kind, item.id, f.digest)
        moves.append((f.file, folder / rel, False))
    settle_item(session, item, version=1, pdf_name=desc.get("pdf_name"), pdf=pdf)
    _history(session, item, record, rows)
    session.add(
        Event(
            kind="item_filed",
            archival_code=item.archival_code,
            fonds=item.fonds,
            item_id=item.id,
            detail={
                "mode": "received",
                "version": 1,
                "pages": item.pages_filed,
                "page_check": item.page_check,
                "by": caller.attribution(),
                "sender_version": desc.get("version"),
                **where,
            },
        )
    )
    description = durable.write_text(staging / DESCRIPTION, description_text(item))
    record_file(session, str(Path(record["folder"], DESCRIPTION)), FileKind.description, item.id, description)
    moves.append((staging / DESCRIPTION, folder / DESCRIPTION, False))
    session.flush()
    return moves


def _renamed(rel: str, keys: dict[str, str], *, bare: bool = False) -> str:
    """A file's name in this station's item folder: a page file gets this station's page key."""
    match = _PAGE_FILE.match(rel if not bare else f"pages/{rel}")
    if not match:
        return rel
    name = keys[match.group(1)] + match.group(2)
    return name if bare else f"pages/{name}"


def _history(session: Session, item: Item, record: dict[str, Any], rows: dict[str, ItemPage]) -> None:
    """The corrections made at the sending station, oldest first, on this station's rows."""
    for entry in record.get("history", []):
        row = rows.get(entry.get("page_key") or "")
        session.add(
            Correction(
                at=_when(entry.get("at")) or datetime.now(UTC),
                who=str(entry.get("who") or "?")[:200],
                action=str(entry.get("action") or "?")[:40],
                item_id=item.id,
                item_page_id=row.id if row is not None else None,
                serial=entry.get("serial"),
                before=entry.get("before") or {},
                after=entry.get("after") or {},
                note=entry.get("note"),
            )
        )
