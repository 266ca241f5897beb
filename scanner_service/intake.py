"""Receiving a batch: record it, move it into the spool, split it into pages, queue the pages.

Order matters for crash safety: the catalogue row and the SHA-256 of every original are committed
before anything moves; the move is a rename (or a verified copy) into ``spool/<id>/originals``; pages
are created and queued after that. :func:`resume` picks a batch up again at whichever step it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rq import Queue
from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service import archival_code
from scanner_service import queue as q
from scanner_service.db import session_scope
from scanner_service.durable import sha256_of
from scanner_service.exceptions import UnusableInput
from scanner_service.models import Batch, BatchState, Original, Page, PageState
from scanner_service.settings import Settings
from workers.stages.load import PageSource, inspect_file

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload")
DONE_MARKER = ".done"


def is_ignored(name: str) -> bool:
    """Hidden and temporary files the scanner software leaves while writing."""
    return name.startswith((".", "~")) or name.lower().endswith(IGNORED_SUFFIXES)


def display_name(name: str) -> str:
    """A name as a person can read it, even when its bytes are not valid UTF-8."""
    return os.fsencode(name).decode("utf-8", errors="replace")


def name_is_valid(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


HEX_PREFIX = "hex:"


def storable_name(rel: str) -> str:
    """A relative path the catalogue can hold: as is, or its bytes in hex when they are not UTF-8."""
    return rel if name_is_valid(rel) else HEX_PREFIX + os.fsencode(rel).hex()


def stored_path(folder: Path, stored_name: str) -> Path:
    """The real path of an original recorded with :func:`storable_name`."""
    if stored_name.startswith(HEX_PREFIX):
        return folder / os.fsdecode(bytes.fromhex(stored_name[len(HEX_PREFIX) :]))
    return folder / stored_name


@dataclass(frozen=True)
class FoundFile:
    rel: str  # path relative to the batch folder (or the file name for a one-file batch)
    size: int
    sha256: str
    is_symlink: bool


def batch_files(path: Path) -> list[Path]:
    """The files of a batch in name order (a folder's files, recursively, or the one file)."""
    if path.is_symlink() or not path.is_dir():
        return [path]
    found: list[Path] = []
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not is_ignored(d))
        # A symlinked folder is listed in dirs but not walked; treat it as a file so it is quarantined.
        for d in list(dirs):
            if (Path(root) / d).is_symlink():
                found.append(Path(root) / d)
                dirs.remove(d)
        found.extend(Path(root) / f for f in files if not is_ignored(f))
    return sorted(found, key=lambda p: os.fsencode(p.relative_to(path)))


def survey(path: Path) -> list[FoundFile]:
    """Hash every file of a batch (a symlink is recorded but never followed)."""
    base = path if path.is_dir() and not path.is_symlink() else path.parent
    out = []
    for file in batch_files(path):
        rel = str(file.relative_to(base))
        if file.is_symlink():
            out.append(FoundFile(rel, 0, hashlib.sha256(os.fsencode(os.readlink(file))).hexdigest(), True))
        else:
            out.append(FoundFile(rel, file.stat().st_size, sha256_of(file).sha256, False))
    return out


def content_hash(files: list[FoundFile]) -> str:
    """Same files (by content, whatever their names) give the same hash: a batch dropped twice is known."""
    digest = hashlib.sha256()
    for sha in sorted(f.sha256 for f in files):
        digest.update(sha.encode())
    return digest.hexdigest()


def batch_dir(settings: Settings, batch_id: int) -> Path:
    return settings.spool_dir / str(batch_id)


def originals_dir(settings: Settings, batch_id: int) -> Path:
    return batch_dir(settings, batch_id) / "originals"


def record(session: Session, settings: Settings, path: Path, *, name: str | None = None) -> Batch:
    """Write the batch and the SHA-256 of its originals to the catalogue (step 1; nothing moves yet)."""
    files = survey(path)
    chash = content_hash(files) if files else None
    batch = Batch(
        name=name or display_name(path.name),
        state=BatchState.receiving,
        source=storable_name(str(path)),
        is_folder=path.is_dir() and not path.is_symlink(),
        content_hash=chash,
    )
    earlier = None
    if chash:
        earlier = session.scalar(
            select(Batch)
            .where(Batch.content_hash == chash, Batch.duplicate_of.is_(None), Batch.state != BatchState.failed)
            .order_by(Batch.id)
            .limit(1)
        )
    if earlier is not None:
        batch.duplicate_of = earlier.id
        batch.state = BatchState.failed
        batch.error_code = "duplicate"
        batch.error = (
            f"Same content as batch #{earlier.id} ({earlier.name}), received {earlier.created_at:%Y-%m-%d %H:%M}; "
            "not processed again. The files are kept in quarantine."
        )
    elif not name_is_valid(path.name):
        batch.state = BatchState.failed
        batch.error_code = "bad_name"
        batch.error = (
            "The name is not valid UTF-8 text, so it cannot be read or filed; rename it on the scanner PC "
            "and put it in the inbox again. It is kept in quarantine."
        )
    elif not files:
        batch.state = BatchState.failed
        batch.error_code = "empty_batch"
        batch.error = "The batch folder holds no files. It is kept in quarantine."
    target = filing_target(batch.name, is_folder=batch.is_folder)
    batch.filing = {"target": target} if target else {}
    session.add(batch)
    session.flush()
    for seq, f in enumerate(files, start=1):
        session.add(
            Original(
                batch_id=batch.id,
                seq=seq,
                name=display_name(f.rel),
                stored_name=storable_name(f.rel),
                size=f.size,
                sha256=f.sha256,
            )
        )
    return batch


def filing_target(name: str, *, is_folder: bool) -> str | None:
    """The 档号 a batch is named by (a folder ``C015-WS·2013-Y-BGS-0001``, or a file of that stem), if any."""
    stem = name if is_folder else Path(name).stem
    try:
        return str(archival_code.parse(stem))
    except archival_code.InvalidArchivalCode:
        return None


def _remove(path: Path) -> None:
    """Remove a file, a link (never its target) or a folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _move_into(source: Path, target: Path, *, copy: bool) -> None:
    """Rename, or copy (verified by size) then rename, so ``target`` appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.rename(source, target)
            return
        except OSError as err:
            if err.errno != 18:  # EXDEV: another filesystem, fall through to copy
                raise
    partial = target.with_name(target.name + ".partial")
    if partial.exists() or partial.is_symlink():
        _remove(partial)
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, partial, symlinks=True)
    else:
        partial.mkdir()
        shutil.copy2(source, partial / source.name, follow_symlinks=False)
    os.rename(partial, target)
    if not copy:
        _remove(source)


def move_to_spool(settings: Settings, batch: Batch, source: Path, *, copy: bool = False) -> None:
    """Step 2: the batch's files into ``spool/<id>/originals`` (a one-file batch becomes a folder of one)."""
    target = originals_dir(settings, batch.id)
    if target.exists():
        return
    if batch.is_folder:
        _move_into(source, target, copy=copy)
    else:
        holder = batch_dir(settings, batch.id) / "incoming"
        holder.mkdir(parents=True, exist_ok=True)
        inner = holder / source.name
        if not (inner.exists() or inner.is_symlink()):
            if copy:
                shutil.copy2(source, inner, follow_symlinks=False)
            else:
                try:
                    os.rename(source, inner)
                except OSError:
                    shutil.copy2(source, inner, follow_symlinks=False)
                    source.unlink()
        os.rename(holder, target)


def quarantine_path(settings: Settings, batch: Batch) -> Path:
    safe = display_name(batch.name).replace("/", "_")
    return settings.quarantine_dir / f"{batch.id:06d}-{safe}"


def _quarantine_file(settings: Settings, batch: Batch, original: Original, source: Path, reason: str) -> None:
    """Move one unusable original aside with a note saying why; never delete it."""
    target = stored_path(quarantine_path(settings, batch), original.stored_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.exists() or source.is_symlink():
        os.rename(source, target)
    note = target.with_name(display_name(target.name) + ".reason.txt")
    note.write_text(f"{original.name}\n{reason}\n", encoding="utf-8")


def quarantine_batch(settings: Settings, batch: Batch, source: Path) -> None:
    """Move a whole batch (duplicate, empty, or nothing usable) into quarantine with its reason."""
    target = quarantine_path(settings, batch)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.exists() or source.is_symlink():
        if target.exists():
            target = target.with_name(target.name + "-again")
        if source.is_dir() and not source.is_symlink():
            os.rename(source, target)
        else:
            _into_folder(source, target)
    readme = target if target.is_dir() else target.parent
    (readme / "REASON.txt").write_text(f"{batch.name}\n{batch.error}\n", encoding="utf-8")


def _into_folder(source: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.rename(source, folder / source.name)


def _inspect(path: Path, settings: Settings) -> list[PageSource]:
    try:
        return inspect_file(path, max_pixels=settings.max_pixels, render_dpi=settings.render_dpi)
    except UnusableInput:
        raise
    except Exception as err:  # noqa: BLE001 - a file no reader expected must not stall the batch
        log.exception("unexpected error reading %s", path)
        raise UnusableInput(
            f"The file could not be read ({type(err).__name__}); it may be damaged. Scan it again.",
            reason_code="broken",
        ) from err


def split_into_pages(session: Session, settings: Settings, batch: Batch) -> list[int]:
    """Step 3: check every original, quarantine the unusable ones, create the pages in scan order."""
    folder = originals_dir(settings, batch.id)
    seq = 0
    page_ids: list[int] = []
    reasons: list[str] = []
    for original in batch.originals:
        path = stored_path(folder, original.stored_name)
        held = stored_path(quarantine_path(settings, batch), original.stored_name)
        if not (path.exists() or path.is_symlink()) and (held.exists() or held.is_symlink()):
            # Set aside before a crash but not yet written down: bring it back and check it again.
            os.rename(held, path)
        try:
            if original.stored_name.startswith(HEX_PREFIX):
                raise UnusableInput(
                    "The file name is not valid UTF-8 text; rename the file on the scanner PC and scan it again.",
                    reason_code="bad_name",
                )
            if path.is_symlink():
                raise UnusableInput(
                    "This is a symbolic link, not a scanned file; the station only takes real files.",
                    reason_code="symlink",
                )
            if not path.exists():
                raise UnusableInput("The file disappeared from the spool.", reason_code="missing")
            sources = _inspect(path, settings)
        except UnusableInput as err:
            original.quarantined = True
            original.error = err.message
            original.error_code = err.reason_code
            named = err.message if err.message.startswith(f"{original.name}:") else f"{original.name}: {err.message}"
            reasons.append(named)
            _quarantine_file(settings, batch, original, path, err.message)
            continue
        for source in sources:
            seq += 1
            page = Page(
                batch_id=batch.id,
                original_id=original.id,
                seq=seq,
                source_index=source.index,
                state=PageState.queued,
                flags=[],
                details={},
                dpi=(max(source.dpi) if source.dpi else None),
            )
            session.add(page)
            session.flush()
            page_ids.append(page.id)
    if not page_ids:
        batch.state = BatchState.failed
        batch.error_code = batch.originals[0].error_code if len(batch.originals) == 1 else "nothing_usable"
        batch.error = "No usable page. " + " | ".join(reasons) if reasons else "No usable page."
    else:
        batch.state = BatchState.queued
        if reasons:
            batch.error = "Some files were set aside: " + " | ".join(reasons)
    return page_ids


def receive(settings: Settings, rq_queue: Queue, path: Path, *, copy: bool = False) -> int:
    """Take one complete batch from ``path`` all the way to queued pages; returns the batch id."""
    url = settings.effective_database_url
    with session_scope(url) as session:
        batch = record(session, settings, path)
        batch_id = batch.id
    resume(settings, rq_queue, batch_id, source=path, copy=copy)
    return batch_id


def resume(
    settings: Settings, rq_queue: Queue, batch_id: int, *, source: Path | None = None, copy: bool = False
) -> None:
    """Carry a batch on from whatever step it reached (also after a crash)."""
    url = settings.effective_database_url
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return
        src = source or stored_path(Path("/"), batch.source)
        if batch.state == BatchState.failed:
            if src.exists() or src.is_symlink():
                quarantine_batch(settings, batch, src)
            return
        if batch.state != BatchState.receiving:
            return
        if not originals_dir(settings, batch.id).exists():
            if not (src.exists() or src.is_symlink()):
                incoming = batch_dir(settings, batch.id) / "incoming"
                if incoming.exists():
                    os.rename(incoming, originals_dir(settings, batch.id))
                else:
                    batch.state = BatchState.failed
                    batch.error_code = "vanished"
                    batch.error = "The batch's files disappeared before they could be moved into the station."
                    return
            else:
                move_to_spool(settings, batch, src, copy=copy)
        page_ids = split_into_pages(session, settings, batch)
    for page_id in page_ids:
        q.enqueue_page(rq_queue, settings, page_id)
    if page_ids:
        log.info("batch %s: %d pages queued", batch_id, len(page_ids))
