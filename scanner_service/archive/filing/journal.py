"""The filing journal: what lets a filing cut off at any point be undone, or finished, later.

A filing changes the catalogue and the item folder together, and the two cannot share one
transaction. So every file move a filing makes is written down before it is made, in a journal:
a small JSON file ``archive/.journal/<item>.json``, written atomically and flushed to disk. Its
life:

1. ``preparing``: written before anything else, naming the staging folder and the folders the
   filing creates. Everything slow (masters, page images, thumbnails, the PDF) is written into
   the staging folder; nothing the catalogue knows is touched.
2. ``moving``: inside the catalogue transaction, after every catalogue write, the journal lists
   every move (from, to) in order, each with the identity (device, inode) of the file it moves, a
   rename keeps it. Then the moves are made, then the transaction commits. The commit sets the
   item's new ``version``: the marker that says whether the filing happened.
3. ``committed``: marked after the commit; then the staging folder and the journal are removed.

Any exception before the commit undoes the moves in reverse order and removes the journal. A
journal left by a crash (power loss, SIGKILL) is resolved by :func:`recover_journals` at the
next start, or by the next filing of the same item: if the catalogue holds the journal's new
version the filing committed, and what is left of it is finished (the staging folder removed);
otherwise every move is undone. Where each file is now is read from the disk (by its inode), not
assumed, so an undo that is itself cut off is simply run again. Either way the catalogue and the
archive agree again (``scanstation audit`` is clean), and the item is as it was or fully filed.

The one thing a journal cannot do is work on a disk that refuses writes: if the archive turns
read-only mid-filing, the journal stays until the archive is writable and recovery runs again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from scanner_service.archive.db import session_scope
from scanner_service.archive.filing.items import item_lock, lock_name
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Item
from scanner_service.exceptions import Conflict, FilingInterrupted
from scanner_service.settings import Settings
from workers import durable

log = logging.getLogger(__name__)

JOURNAL_DIR = ".journal"
PREPARING, MOVING, COMMITTED = "preparing", "moving", "committed"


@dataclass
class Move:
    """One rename of a filing, paths relative to the archive; ``aside`` moves an existing file out of
    the way, otherwise a staged file goes to its place."""

    src: str
    dst: str
    aside: bool
    dev: int = 0
    ino: int = 0


@dataclass
class Journal:
    code_key: str
    archival_code: str
    folder: str  # the item folder, relative to the archive
    staging: str  # the staging folder, relative to the archive
    version_before: int
    version_after: int  # the item's version once this filing commits: the commit marker
    state: str = PREPARING
    created: list[str] = field(default_factory=list)  # folders this filing made, parents first
    moves: list[Move] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    # Other items the same change alters (pages moved between items): their versions go up in the
    # same transaction, and their folders' files are among the moves. Resolving takes their locks too.
    also: list[str] = field(default_factory=list)


def journal_path(settings: Settings, code_key: str) -> Path:
    return Layout.of(settings).archive / JOURNAL_DIR / f"{lock_name(code_key)}.json"


def _save(settings: Settings, journal: Journal) -> None:
    path = journal_path(settings, journal.code_key)
    durable.write_text(path, json.dumps(asdict(journal), ensure_ascii=False, indent=1))


def _load(path: Path) -> Journal:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    moves = [Move(**m) for m in data.pop("moves")]
    return Journal(**data, moves=moves)


def begin(
    settings: Settings,
    *,
    code_key: str,
    archival_code: str,
    folder: str,
    staging: str,
    version_before: int,
    folders: list[str],
    also: list[str] | None = None,
) -> Journal:
    """Write the journal of a new filing (``preparing``), then make the folders it needs."""
    archive = Layout.of(settings).archive
    (archive / JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    for rel in folders:
        for parent in reversed(Path(rel).parents):
            if str(parent) != "." and not (archive / parent).exists() and str(parent) not in created:
                created.append(str(parent))
        if not (archive / rel).exists() and rel not in created:
            created.append(rel)
    journal = Journal(
        code_key=code_key,
        archival_code=archival_code,
        folder=folder,
        staging=staging,
        version_before=version_before,
        version_after=version_before + 1,
        created=created,
        also=list(also or []),
    )
    _save(settings, journal)
    try:
        for rel in created:
            (archive / rel).mkdir(exist_ok=True)
    except BaseException:
        undo(settings, journal)
        raise
    return journal


def plan_moves(settings: Settings, journal: Journal, moves: list[tuple[Path, Path, bool]]) -> None:
    """Write the moves (from, to, aside) into the journal, which then says ``moving``; none is made yet."""
    archive = Layout.of(settings).archive
    # A file may move twice (a renamed master goes to staging, then to its new name): it keeps its inode.
    located: dict[Path, tuple[int, int]] = {}
    planned = []
    for src, dst, aside in moves:
        if src in located:
            dev, ino = located.pop(src)
        else:
            st = os.stat(src, follow_symlinks=False)
            dev, ino = st.st_dev, st.st_ino
        located[dst] = (dev, ino)
        planned.append(Move(str(src.relative_to(archive)), str(dst.relative_to(archive)), aside, dev, ino))
    journal.moves = planned
    journal.state = MOVING
    _save(settings, journal)


def move(settings: Settings, journal: Journal, step: Move) -> None:
    """Make one planned move; never over an existing file."""
    src, dst = Layout.of(settings).archive / step.src, Layout.of(settings).archive / step.dst
    if os.path.lexists(dst):
        raise Conflict(
            f"{journal.archival_code}: {step.dst} is in the way (no filing wrote it; the audit lists it as "
            "untracked). Nothing was filed: move that file out of the item folder, then file again.",
            reason_code="file_in_the_way",
        )
    os.rename(src, dst)


def sync(settings: Settings, journal: Journal) -> None:
    """Flush the folders the moves changed, so the renames survive a power loss."""
    folders = {(Layout.of(settings).archive / m.src).parent for m in journal.moves}
    folders |= {(Layout.of(settings).archive / m.dst).parent for m in journal.moves}
    # A folder this filing created must itself be recorded in its parent.
    folders |= {(Layout.of(settings).archive / rel).parent for rel in journal.created}
    for folder in sorted(folders):
        if folder.is_dir():
            durable.fsync_dir(folder)


def mark_committed(settings: Settings, journal: Journal) -> None:
    journal.state = COMMITTED
    _save(settings, journal)


def _holds(path: Path, step: Move) -> bool:
    """True if ``path`` is the file this move is about (renames keep device and inode)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (step.dev, step.ino)


def _lost(journal: Journal, step: Move, *, why: str = "is at neither place") -> FilingInterrupted:
    return FilingInterrupted(
        f"{journal.archival_code}: the file of the move {step.src} -> {step.dst} {why}; nothing more was "
        f"moved. Look by hand: the journal {JOURNAL_DIR}/{lock_name(journal.code_key)}.json lists every "
        "move of this filing, with each file's inode."
    )


def _remove(settings: Settings, journal: Journal) -> None:
    shutil.rmtree(Layout.of(settings).archive / journal.staging, ignore_errors=True)
    path = journal_path(settings, journal.code_key)
    path.unlink(missing_ok=True)
    durable.fsync_dir(path.parent)


def finish(settings: Settings, journal: Journal) -> None:
    """The filing committed: make any move not made yet, remove staging (old PDF, old item.json) and journal."""
    archive = Layout.of(settings).archive
    for n, step in enumerate(journal.moves):
        # A file that moves twice (parked, then renamed) is checked at its later move.
        moves_again = any((later.dev, later.ino) == (step.dev, step.ino) for later in journal.moves[n + 1 :])
        if _holds(archive / step.src, step):
            move(settings, journal, step)
        elif not (moves_again or _holds(archive / step.dst, step)):
            raise _lost(journal, step)
    sync(settings, journal)
    _remove(settings, journal)


def undo(settings: Settings, journal: Journal) -> None:
    """The filing did not commit: move every moved file back, last first; remove what it created."""
    archive = Layout.of(settings).archive
    for n in reversed(range(len(journal.moves))):
        step = journal.moves[n]
        src, dst = archive / step.src, archive / step.dst
        # A file that moved twice is checked at its earlier move if this one was not made.
        moved_before = any((e.dev, e.ino) == (step.dev, step.ino) for e in journal.moves[:n])
        if _holds(dst, step):
            if os.path.lexists(src):
                raise _lost(journal, step, why="cannot go back: another file took its old place")
            os.rename(dst, src)
        elif not (moved_before or _holds(src, step)):
            raise _lost(journal, step)
    sync(settings, journal)
    shutil.rmtree(archive / journal.staging, ignore_errors=True)
    for rel in reversed(journal.created):
        try:
            (archive / rel).rmdir()
        except FileNotFoundError:
            pass
        except OSError as err:
            if err.errno != errno.ENOTEMPTY:
                raise
    _remove(settings, journal)


def committed(settings: Settings, journal: Journal) -> bool:
    """Did the journal's catalogue transaction commit? The item's version says so."""
    with session_scope(settings.effective_database_url) as session:
        version = session.scalar(select(Item.version).where(Item.code_key == journal.code_key))
    return (version or 0) >= journal.version_after


def resolve(settings: Settings, journal: Journal) -> str:
    """Finish or undo a journal's filing, as the catalogue says; "finished" or "undone"."""
    if journal.state == COMMITTED or (journal.state == MOVING and committed(settings, journal)):
        finish(settings, journal)
        return "finished"
    undo(settings, journal)
    return "undone"


LINKED_LOCK_WAIT = 30.0  # seconds a recovery waits for the lock of another item a change also altered


def recover_item(settings: Settings, code_key: str) -> str | None:
    """Resolve the item's journal left by a change cut off, if there is one, and any journal of a change
    that also altered this item (pages moved between items); the caller holds this item's lock."""
    path = journal_path(settings, code_key)
    outcome = None
    if path.exists():
        outcome = _recover(settings, _load(path))
    for other in pending(Layout.of(settings).archive):
        if code_key in other.also and journal_path(settings, other.code_key).exists():
            outcome = _recover(settings, other) or outcome
    return outcome


def _recover(settings: Settings, journal: Journal) -> str:
    """Resolve one journal, holding the lock of every item it alters (waiting a while for the others)."""
    with contextlib.ExitStack() as held:
        for key in sorted({journal.code_key, *journal.also}):
            if not held.enter_context(item_lock(settings, key, timeout=LINKED_LOCK_WAIT)):
                raise Conflict(
                    f"{journal.archival_code}: a change cut off also altered another item, which is busy; it is "
                    "resolved at the next start of the station, or when this item is next changed. Try again.",
                    reason_code="item_busy",
                )
        path = journal_path(settings, journal.code_key)
        if not path.exists():
            return "finished"  # resolved meanwhile by whoever held a lock before us
        journal = _load(path)
        outcome = resolve(settings, journal)
    log.warning("%s: a change cut off (started %s) was %s", journal.archival_code, journal.started_at, outcome)
    return outcome


def pending(archive: Path) -> list[Journal]:
    """The journals of filings under way or cut off, in the archive folder ``archive``."""
    folder = archive / JOURNAL_DIR
    return [_load(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def recover_journals(settings: Settings, *, wait: bool = True) -> list[tuple[str, str]]:
    """Finish or undo every filing a crash cut off. Returns (档号, finished | undone | failed: why).

    At start (``wait``) it waits for each item's lock, so a filing still running in another process is
    left to finish; in the watcher's sweep (``wait=False``) an item being filed now is skipped. A journal
    that cannot be resolved now (the archive read-only, the catalogue unreachable) is kept for the next
    time and reported as failed.
    """
    done: list[tuple[str, str]] = []
    for journal in pending(Layout.of(settings).archive):
        with item_lock(settings, journal.code_key, timeout=None if wait else 0.0) as held:
            if not held:
                continue  # a filing of this item is running: its own process resolves it
            try:
                outcome = recover_item(settings, journal.code_key)
            except Exception as err:  # noqa: BLE001 - one item's trouble must not stop the others' recovery
                log.error("%s: a filing cut off could not be resolved yet: %s", journal.archival_code, err)
                done.append((journal.archival_code, f"failed: {err}"))
                continue
        if outcome is not None:
            done.append((journal.archival_code, outcome))
    return done
