"""Receiving a batch: record it, move it into the spool, split it into pages, queue the pages.

Order matters for crash safety: the catalogue row and the SHA-256 of every original are committed
before anything moves; the move is a rename (or a verified copy) into ``spool/<id>/originals``; pages
are created and queued after that. :func:`resume` picks a batch up again at whichever step it stopped.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from rq import Queue
from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.archive import archival_code
from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import HEX_PREFIX, Layout, name_is_valid, storable_name, stored_path
from scanner_service.archive.models import Batch, BatchState, Original, Page, PageState
from scanner_service.exceptions import UnusableInput
from scanner_service.settings import Settings
from scanner_service.station import queue as q
from workers.durable import sha256_of
from workers.stages.load import PageSource, inspect_file

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload")
DONE_MARKER = ".done"
NAME_MAX = 255  # bytes in one file name on the station's file systems (ext4, XFS, tmpfs, Btrfs)
REASON_SUFFIX = ".reason.txt"
_AGAIN = "-again"  # a second quarantine folder for the same batch (its files dropped into the inbox again)
GB18030_MARK = " (GB18030 name)"

# Files an operating system or a file server writes beside the scans (compared in lower case).
SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini"})
SYSTEM_FOLDERS = frozenset({"__macosx", "@eadir", ".appledouble", ".trashes", ".spotlight-v100", ".fseventsd"})
# Error codes of originals set aside by name; only system files do not send a batch to review.
SET_ASIDE_CODES = frozenset({"hidden", "temporary", "system_file"})


def is_ignored(name: str) -> bool:
    """Hidden and temporary entries of the inbox itself: the scanner software's files while it writes."""
    return name.startswith((".", "~")) or name.lower().endswith(IGNORED_SUFFIXES)


def _as_gb18030(name: str) -> str | None:
    """A name that is not UTF-8 read as GB18030 (Chinese Windows writes names so), if its bytes are valid."""
    try:
        return os.fsencode(name).decode("gb18030")
    except UnicodeDecodeError:
        return None


def readable_name(name: str) -> str:
    """A name's text for a file name of our own: as is, or read as GB18030, or with U+FFFD for bad bytes."""
    if name_is_valid(name):
        return name
    return _as_gb18030(name) or os.fsencode(name).decode("utf-8", errors="replace")


def display_name(name: str) -> str:
    """A name as a person can read it, even when its bytes are not valid UTF-8.

    Bytes that are valid GB18030 are shown so, marked ``名字.jpg (GB18030 name)``: the operator can tell
    which file it was (a Chinese Windows PC writing names in its own code page) instead of mojibake.
    """
    if name_is_valid(name):
        return name
    chinese = _as_gb18030(name)
    if chinese is not None:
        return chinese + GB18030_MARK
    return os.fsencode(name).decode("utf-8", errors="replace")


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` if it is at most ``limit`` bytes; otherwise cut on a character boundary, with a short hash
    of the whole name (so two long names stay apart) and the extension kept: ``档档…档~1a2b3c4d5e.jpg``."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    tag = "~" + hashlib.sha256(raw).hexdigest()[:10]
    stem, dot, ext = name.rpartition(".")
    suffix = dot + ext if stem and len(os.fsencode(ext)) <= 16 else ""
    stem = name[: len(name) - len(suffix)]
    budget = max(0, limit - len(os.fsencode(tag + suffix)))
    cut = os.fsencode(stem)[:budget]
    # A UTF-8 name loses only the character cut in half; other bytes stay bytes (surrogate escapes).
    head = cut.decode("utf-8", errors="ignore") if name_is_valid(name) else os.fsdecode(cut)
    return head + tag + suffix


def fit_path(rel: str) -> str:
    """A relative path with every part fitted to :data:`NAME_MAX` (a name from a share that allows longer)."""
    return "/".join(fit_name(part) for part in rel.split("/"))


@dataclass(frozen=True)
class SetAside:
    """Why a file of a batch folder is not taken as a page, decided from its name alone."""

    code: str  # one of SET_ASIDE_CODES
    reason: str

    @property
    def needs_review(self) -> bool:
        """System files are listed but do not need a person; a hidden or temporary file may be a lost page."""
        return self.code != "system_file"


def set_aside(rel: str) -> SetAside | None:
    """Whether a file of a batch folder (path relative to it) is set aside, and why; None: it may be a page."""
    *folders, name = rel.split("/")
    for folder in folders:
        if folder.lower() in SYSTEM_FOLDERS:
            return SetAside(
                "system_file",
                f"it is in {readable_name(folder)}/, a folder the operating system or file server writes for "
                "itself; not a scan",
            )
        if folder.startswith("."):
            return SetAside(
                "hidden",
                f"it is inside the hidden folder {readable_name(folder)}/ (a name beginning with '.'), so it was "
                "not taken as a page. If it holds scans, move them out of that folder and drop them in again.",
            )
    lower = name.lower()
    if lower in SYSTEM_FILES or name.startswith("._"):
        return SetAside("system_file", "a file the operating system writes for itself (Finder, Explorer); not a scan")
    if name.startswith("~") or lower.endswith(IGNORED_SUFFIXES):
        return SetAside(
            "temporary",
            "a temporary file was still in the batch when it was taken: the scanner or a copy may not have "
            "finished writing a page. Check that no page is missing, and scan it again if one is.",
        )
    if name.startswith("."):
        why = "its name begins with '.', which hides the file, so it was not taken as a page"
        if "\\" in name:
            why += " (the name looks like a Windows path that the scanner software wrote as a file name)"
        return SetAside("hidden", why + ". If it is a scan, rename it and drop it in again.")
    return None


@dataclass(frozen=True)
class FoundFile:
    rel: str  # path relative to the batch folder (or the file name for a one-file batch)
    size: int
    sha256: str
    is_symlink: bool
    aside: SetAside | None = None  # set aside by its name (folders only): never taken as a page


def batch_files(path: Path) -> list[Path]:
    """The files of a batch in name order: a folder's files, recursively, hidden ones too (they are
    listed and set aside, never silently dropped), without the ``.done`` marker; or the one file."""
    if path.is_symlink() or not path.is_dir():
        return [path]
    found: list[Path] = []
    for root, dirs, files in os.walk(path, followlinks=False):
        dirs.sort()
        # A symlinked folder is listed in dirs but not walked; treat it as a file so it is quarantined.
        for d in list(dirs):
            if (Path(root) / d).is_symlink():
                found.append(Path(root) / d)
                dirs.remove(d)
        found.extend(Path(root) / f for f in files if f != DONE_MARKER)
    return sorted(found, key=lambda p: os.fsencode(p.relative_to(path)))


def survey(path: Path) -> list[FoundFile]:
    """Hash every file of a batch (a symlink is recorded but never followed); say which are set aside."""
    is_folder = path.is_dir() and not path.is_symlink()
    base = path if is_folder else path.parent
    out = []
    for file in batch_files(path):
        rel = str(file.relative_to(base))
        aside = set_aside(rel) if is_folder else None  # one file named on purpose (ingest) is taken
        if file.is_symlink():
            out.append(FoundFile(rel, 0, hashlib.sha256(os.fsencode(os.readlink(file))).hexdigest(), True, aside))
        else:
            out.append(FoundFile(rel, file.stat().st_size, sha256_of(file).sha256, False, aside))
    return out


def content_hash(files: list[FoundFile]) -> str:
    """Same files (by content, whatever their names) give the same hash: a batch dropped twice is known."""
    digest = hashlib.sha256()
    for sha in sorted(f.sha256 for f in files):
        digest.update(sha.encode())
    return digest.hexdigest()


def _name_list(files: list[FoundFile], *, with_kind: bool, limit: int = 10) -> str:
    names = [display_name(f.rel) + (f" ({f.aside.code})" if with_kind and f.aside else "") for f in files]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _only_set_aside(files: list[FoundFile]) -> str:
    """The reason of a folder whose every file is set aside by its name."""
    if all(f.aside is not None and f.aside.code == "hidden" for f in files):
        return (
            f"The batch folder holds only hidden files: {_name_list(files, with_kind=False)}. Files whose names "
            "begin with '.' are not taken as pages; if they are scans, rename them and drop the folder in again. "
            "It is kept in quarantine."
        )
    return (
        "The batch folder holds no page, only hidden, temporary or system files: "
        f"{_name_list(files, with_kind=True)}. It is kept in quarantine."
    )


def receiving_batch(session: Session, path: Path) -> int | None:
    """The batch already recorded from ``path`` and not yet moved in (its intake stopped half-way), if any."""
    return session.scalar(
        select(Batch.id)
        .where(Batch.source == storable_name(str(path)), Batch.state == BatchState.receiving)
        .order_by(Batch.id)
        .limit(1)
    )


def record(session: Session, settings: Settings, path: Path, *, name: str | None = None) -> Batch:
    """Write the batch and the SHA-256 of its originals to the catalogue (step 1; nothing moves yet)."""
    files = survey(path)
    candidates = [f for f in files if f.aside is None]
    # Only the files that can be pages count: a re-drop with a different .DS_Store is still the same batch.
    chash = content_hash(candidates) if candidates else None
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
            f"The name is not valid UTF-8 text{_gb18030_hint(path.name)}, so it cannot be read or filed; rename it "
            "on the scanner PC and put it in the inbox again. It is kept in quarantine."
        )
    elif not files:
        batch.state = BatchState.failed
        batch.error_code = "empty_batch"
        batch.error = "The batch folder holds no files. It is kept in quarantine."
    elif not candidates:
        batch.state = BatchState.failed
        batch.error_code = "only_hidden_files"
        batch.error = _only_set_aside(files)
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
                stored_name=storable_name(fit_path(f.rel)),
                size=f.size,
                sha256=f.sha256,
                error=f.aside.reason if f.aside else None,
                error_code=f.aside.code if f.aside else None,
            )
        )
    return batch


def _gb18030_hint(name: str) -> str:
    chinese = _as_gb18030(name)
    if chinese is None:
        return ""
    return f" (read as GB18030 it is {chinese}: the scanner PC probably writes names in the Chinese Windows code page)"


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


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a folder tree (links as links) with every name fitted to :data:`NAME_MAX`, as :func:`fit_path`
    records it: a share may allow names (255 UTF-16 characters) that the station's disk does not."""
    target.mkdir()
    for entry in sorted(os.scandir(source), key=lambda e: os.fsencode(e.name)):
        dest = target / fit_name(entry.name)
        if entry.is_dir(follow_symlinks=False):
            _copy_tree(Path(entry.path), dest)
        else:
            shutil.copy2(entry.path, dest, follow_symlinks=False)


def _move_file(source: Path, target: Path) -> None:
    """Rename one file (or link); across file systems copy it whole, then remove the source."""
    try:
        os.rename(source, target)
        return
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
    partial = target.with_name(fit_name(target.name, NAME_MAX - len(".partial")) + ".partial")
    shutil.copy2(source, partial, follow_symlinks=False)
    os.rename(partial, target)
    source.unlink()


def _move_into(source: Path, target: Path, *, copy: bool) -> None:
    """Rename, or copy (verified by size) then rename, so ``target`` appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            # A rename keeps every name, and they fit: they exist on this same file system.
            os.rename(source, target)
            return
        except OSError as err:
            if err.errno != errno.EXDEV:  # another file system: fall through to copy
                raise
    partial = target.with_name(fit_name(target.name, NAME_MAX - len(".partial")) + ".partial")
    if partial.exists() or partial.is_symlink():
        _remove(partial)
    if source.is_dir() and not source.is_symlink():
        _copy_tree(source, partial)
    else:
        partial.mkdir()
        shutil.copy2(source, partial / fit_name(source.name), follow_symlinks=False)
    os.rename(partial, target)
    if not copy:
        _remove(source)


def move_to_spool(settings: Settings, batch: Batch, source: Path, *, copy: bool = False) -> None:
    """Step 2: the batch's files into ``spool/<id>/originals`` (a one-file batch becomes a folder of one)."""
    target = Layout.of(settings).originals_dir(batch.id)
    if target.exists():
        return
    if batch.is_folder:
        _move_into(source, target, copy=copy)
    else:
        holder = Layout.of(settings).incoming_dir(batch.id)
        holder.mkdir(parents=True, exist_ok=True)
        inner = holder / fit_name(source.name)
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
    """The batch's folder in quarantine, ``<id>-<name>``; a long name is cut so the folder name always fits."""
    safe = display_name(batch.name).replace("/", "_")
    return Layout.of(settings).quarantine / fit_name(f"{batch.id:06d}-{safe}", NAME_MAX - len(_AGAIN))


def held_path(settings: Settings, batch: Batch, original: Original) -> Path:
    """Where an original set aside from its batch is kept in quarantine."""
    return stored_path(quarantine_path(settings, batch), original.stored_name)


def _reason_note(original: Original, reason: str) -> str:
    """What a ``.reason.txt`` says: the original's full name (its bytes too, if not UTF-8) and why."""
    lines = [original.name]
    if original.stored_name.startswith(HEX_PREFIX):
        lines.append(f"name bytes (hex): {original.stored_name[len(HEX_PREFIX) :]}")
    lines += [f"size: {original.size} bytes, SHA-256: {original.sha256}", reason]
    return "\n".join(lines) + "\n"


def _quarantine_file(settings: Settings, batch: Batch, original: Original, source: Path, reason: str) -> None:
    """Move one unusable original aside with a note saying why; never delete it.

    The note is written first: if it cannot be, the file has not moved and stays with the batch.
    """
    target = held_path(settings, batch, original)
    target.parent.mkdir(parents=True, exist_ok=True)
    note = target.with_name(fit_name(readable_name(target.name), NAME_MAX - len(REASON_SUFFIX)) + REASON_SUFFIX)
    note.write_text(_reason_note(original, reason), encoding="utf-8")
    if source.exists() or source.is_symlink():
        try:
            os.rename(source, target)
        except OSError:
            note.unlink(missing_ok=True)
            raise


def bring_back(settings: Settings, batch: Batch, original: Original) -> None:
    """An original moved to quarantine before a crash, but not yet written down, goes back to be checked again."""
    path = Layout.of(settings).original(batch.id, original.stored_name)
    held = held_path(settings, batch, original)
    if not (path.exists() or path.is_symlink()) and (held.exists() or held.is_symlink()):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.rename(held, path)


def set_aside_original(settings: Settings, batch: Batch, original: Original, err: UnusableInput) -> bool:
    """Move an original to quarantine with its reason and write that down (in the caller's session).

    Returns False, and leaves the file with the batch (the reason says so), if it cannot be moved.
    """
    source = Layout.of(settings).original(batch.id, original.stored_name)
    original.error, original.error_code = err.message, err.reason_code
    try:
        _quarantine_file(settings, batch, original, source, err.message)
    except OSError as move_error:
        log.warning("batch %s: %s could not be moved to quarantine: %s", batch.id, original.name, move_error)
        original.error = (
            f"{err.message} It could not be moved to quarantine ({move_error.strerror or move_error}); "
            f"it stays with the batch in {Layout.of(settings).originals_dir(batch.id)}."
        )
        return False
    original.quarantined = True
    return True


def quarantine_batch(settings: Settings, batch: Batch, source: Path) -> None:
    """Move a whole batch (duplicate, empty, or nothing usable) into quarantine with its reason."""
    target = quarantine_path(settings, batch)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.exists() or source.is_symlink():
        if target.exists():
            target = target.with_name(target.name + _AGAIN)
        if source.is_dir() and not source.is_symlink():
            _move_into(source, target, copy=False)
        else:
            target.mkdir(parents=True, exist_ok=True)
            _move_file(source, target / fit_name(source.name))
    readme = target if target.is_dir() else target.parent
    (readme / "REASON.txt").write_text(f"{batch.name}\n{batch.error}\n", encoding="utf-8")


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


def _check(settings: Settings, original: Original, path: Path) -> list[PageSource]:
    """The pages of one original, or :class:`UnusableInput` saying why it cannot be used."""
    if original.error_code in SET_ASIDE_CODES:
        raise UnusableInput(original.error or "set aside by its name", reason_code=original.error_code)
    if original.stored_name.startswith(HEX_PREFIX):
        raise UnusableInput(
            f"The file name is not valid UTF-8 text{_gb18030_hint(path.name)}; rename the file on the scanner PC "
            "and scan it again.",
            reason_code="bad_name",
        )
    if path.is_symlink():
        raise UnusableInput(
            "This is a symbolic link, not a scanned file; the station only takes real files.",
            reason_code="symlink",
        )
    if not path.exists():
        raise UnusableInput("The file disappeared from the spool.", reason_code="missing")
    return _inspect(path, settings)


def split_into_pages(session: Session, settings: Settings, batch: Batch) -> list[int]:
    """Step 3: check every original, quarantine the unusable ones, create the pages in scan order.

    One original that cannot be checked or moved never stops the others: it is set aside with its reason.
    """
    folder = Layout.of(settings).originals_dir(batch.id)
    seq = 0
    page_ids: list[int] = []
    reasons: list[str] = []
    for original in batch.originals:
        if original.error_code == "system_file":
            continue  # listed with its reason and kept with the originals; nothing for a person to do
        try:
            bring_back(settings, batch, original)
            sources = _check(settings, original, stored_path(folder, original.stored_name))
        except (UnusableInput, OSError) as problem:
            if isinstance(problem, UnusableInput):
                err = problem
            else:  # the spool itself misbehaving: this file only is set aside
                log.warning("batch %s: %s could not be checked: %s", batch.id, original.name, problem)
                err = UnusableInput(
                    f"The file could not be checked ({problem.strerror or problem}).", reason_code="unreadable"
                )
            named = err.message if err.message.startswith(f"{original.name}:") else f"{original.name}: {err.message}"
            reasons.append(named)
            set_aside_original(settings, batch, original, err)
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
        checked = [o for o in batch.originals if o.error_code != "system_file"]
        batch.state = BatchState.failed
        batch.error_code = checked[0].error_code if len(checked) == 1 else "nothing_usable"
        batch.error = "No usable page. " + " | ".join(reasons) if reasons else "No usable page."
    else:
        batch.state = BatchState.queued
        if reasons:
            batch.error = "Some files were set aside: " + " | ".join(reasons)
    return page_ids


def receive(settings: Settings, rq_queue: Queue, path: Path, *, copy: bool = False) -> int:
    """Take one complete batch from ``path`` all the way to queued pages; returns the batch id."""
    batch_id = record_batch(settings, path)
    resume(settings, rq_queue, batch_id, source=path, copy=copy)
    return batch_id


def record_batch(settings: Settings, path: Path) -> int:
    """Step 1 in its own transaction: the batch recorded from ``path``, or the one already recorded from it
    whose intake stopped half-way (so a batch that cannot be moved in is not recorded again and again)."""
    with session_scope(settings.effective_database_url) as session:
        earlier = receiving_batch(session, path)
        if earlier is not None:
            return earlier
        return record(session, settings, path).id


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
                for original in batch.originals:
                    original.quarantined = True
            return
        if batch.state != BatchState.receiving:
            return
        if not Layout.of(settings).originals_dir(batch.id).exists():
            if not (src.exists() or src.is_symlink()):
                incoming = Layout.of(settings).incoming_dir(batch.id)
                if incoming.exists():
                    os.rename(incoming, Layout.of(settings).originals_dir(batch.id))
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


def give_up(settings: Settings, batch_id: int, err: BaseException, attempts: int) -> bool:
    """End a batch whose intake keeps failing: ``failed`` with the reason, its files kept where they are
    (moved from the inbox to quarantine if they are still there). Returns True if the inbox is clear of it."""
    url = settings.effective_database_url
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.state != BatchState.receiving:
            return True
        src = stored_path(Path("/"), batch.source)
        spooled = Layout.of(settings).originals_dir(batch.id)
        batch.state = BatchState.failed
        batch.error_code = "intake_failed"
        why = f"{type(err).__name__}: {err}"
        in_inbox = not spooled.exists() and (src.exists() or src.is_symlink())
        where = str(spooled)
        if in_inbox:
            try:
                quarantine_batch(settings, batch, src)
                where = str(quarantine_path(settings, batch))
                in_inbox = False
                for original in batch.originals:
                    original.quarantined = True
            except OSError as move_error:
                log.warning("batch %s: could not move %s to quarantine either: %s", batch_id, src, move_error)
                where = f"{src} (still in the inbox; the station leaves it there until it changes)"
        batch.error = (
            f"The batch could not be taken in ({why}; tried {attempts} times). Nothing was deleted: its files are "
            f"in {where}. Once the cause is fixed, put them in the inbox again."
        )
    return not in_inbox
