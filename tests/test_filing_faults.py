"""Filing under faults: whatever breaks, no page is lost or duplicated, the catalogue and the archive
agree (``scanstation audit`` clean) and each item is either as it was or fully filed.

The faults: an exception at every step of a filing, a SIGKILL at every step, the archive's disk
full, the archive read-only (from the start, and turned read-only midway), the catalogue locked by
another writer for 20 s. The filings: a new item, an append, an insert at the front, a replace, and
a separator run of two items. Faults are injected through the filing's step hook
(:mod:`scanner_service.archive.filing.steps`) or by a real small or read-only file system (tmpfs).

The batches are scanned once per module through the real jobs (real OCR, real Redis); each test
works on its own copy of that data folder, with the real file system and a real SQLite catalogue.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pikepdf
import pytest
import redis
from pdf2image import convert_from_path
from sqlalchemy import select, text

from scanner_service.archive import filing
from scanner_service.archive.catalogue_store import ensure_fonds
from scanner_service.archive.db import get_engine, migrate, session_scope
from scanner_service.archive.filing import FilingRefused, steps
from scanner_service.archive.fixity import audit
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Base, Batch, Event, Fonds, Item, Original
from scanner_service.archive.separator_sheets import SeparatorEntry, render_separator_sheets
from scanner_service.exceptions import DiskFull, FilingInterrupted, ReadOnlyStorage
from scanner_service.settings import Settings, build_settings
from scanner_service.station.watcher import Watcher
from tests.conftest import PLENTY, archive_on_tmpfs, copy_sample, mount, used_bytes
from tests.test_pipeline import run_queue

pytestmark = pytest.mark.slow

CODE = "C015-WS·2013-Y-BGS-0001"
SHEET_CODES = ["C015-WS·2013-Y-BGS-0002", "C015-WS·2013-Y-BGS-0003"]
BATCH_A = ["scan_0004.jpg", "scan_0002.jpg"]  # filed first: the item's two pages
BATCH_B = ["scan_0001.jpg", "scan_0003.jpg"]  # the rescan
RUN = [0, "scan_0004.jpg", "scan_0002.jpg", 1, "scan_0001.jpg"]  # sheet, 2 pages, sheet, 1 page

Pages = dict[str, list[tuple[int, int]]]  # 档号 -> its pages as (batch, batch page), in order


@dataclass
class Template:
    unfiled: Path  # data folder: batches a, b and the run processed, nothing filed
    filed: Path  # the same with batch a filed as the two pages of CODE
    a: int
    b: int
    run: int


def _settings(data: Path) -> Settings:
    return build_settings(data=data, inbox=data.parent / "inbox")


def _scan(settings: Settings, conn: redis.Redis, name: str, parts: list[Any], sheets: list[Path]) -> int:
    """Drop a batch folder into the inbox and run it through the real jobs; the batch's id."""
    folder = settings.inbox / name
    folder.mkdir(parents=True)
    for n, part in enumerate(parts, start=1):
        if isinstance(part, int):
            shutil.copy(sheets[part], folder / f"{n:03d}.png")
        else:
            copy_sample(folder, [part])
            (folder / part).rename(folder / f"{n:03d}.jpg")
    (folder / ".done").touch()
    watcher = Watcher(settings, conn)
    watcher.poll()
    run_queue(conn, watcher)
    with session_scope(settings.effective_database_url) as session:
        return session.scalars(select(Batch.id).where(Batch.name == name)).one()


def _release(settings: Settings) -> None:
    """Close the catalogue's connections (before the folder is copied, or a process forked)."""
    get_engine(settings.effective_database_url).dispose()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Template]:
    root = tmp_path_factory.mktemp("template")
    (root / "inbox").mkdir()
    sheets_pdf = render_separator_sheets([SeparatorEntry(c, "分隔页") for c in SHEET_CODES], root / "sheets.pdf")
    sheets = []
    for n, image in enumerate(convert_from_path(str(sheets_pdf), dpi=300, grayscale=True)):
        image.save(root / f"sheet{n}.png", dpi=(300, 300))
        sheets.append(root / f"sheet{n}.png")
    conn = redis.Redis.from_url(redis_url)
    conn.flushall()
    with pytest.MonkeyPatch.context() as env:
        # The jobs read their settings from the environment, as a worker does.
        for key, value in {
            "SCANSTATION_DATA": str(root / "data"),
            "SCANSTATION_INBOX": str(root / "inbox"),
            "SCANSTATION_REDIS_URL": redis_url,
            "SCANSTATION_QUIET_SECONDS": "1.5",
            "SCANSTATION_POLL_SECONDS": "0.2",
            "SCANSTATION_RETRY_BACKOFF": "0",
            "OMP_THREAD_LIMIT": "1",
        }.items():
            env.setenv(key, value)
        settings = build_settings()
        migrate(settings.effective_database_url)
        with session_scope(settings.effective_database_url) as session:
            # Closed to new items until a test opens it: the run's assembly proposes, files nothing.
            ensure_fonds(session, "C015").allow_new_items = False
        a = _scan(settings, conn, "a", BATCH_A, sheets)  # not named by a 档号: processed, not filed
        b = _scan(settings, conn, "b", BATCH_B, sheets)
        run = _scan(settings, conn, "run", RUN, sheets)
    conn.close()
    with session_scope(settings.effective_database_url) as session:
        report = session.scalars(select(Batch.filing).where(Batch.id == run)).one()
        assert [p["code"] for p in report["problems"]] == ["not_in_catalogue"] * 2, report
    _release(settings)
    filed = root / "filed"
    shutil.copytree(settings.data, filed)
    filed_settings = _settings(filed)
    filing.file_batch(filed_settings, a, CODE, may_create=True)
    _release(filed_settings)
    yield Template(unfiled=settings.data, filed=filed, a=a, b=b, run=run)


def _station(source: Path, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    shutil.copytree(source, data)
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return _settings(data)


@pytest.fixture
def filed_item(template: Template, tmp_path: Path) -> Iterator[Settings]:
    """A station whose item CODE has batch a's two pages; batch b is processed and not filed."""
    settings = _station(template.filed, tmp_path)
    yield settings
    _release(settings)


# ---- what a user would check -------------------------------------------------------------------


def _pages(settings: Settings, codes: list[str]) -> Pages:
    """The items' pages as the catalogue has them (an item not in the catalogue has none)."""
    with session_scope(settings.effective_database_url) as session:
        out: Pages = {}
        for code in codes:
            item = session.scalars(select(Item).where(Item.archival_code == code)).one_or_none()
            out[code] = [] if item is None else [(p.batch_id or 0, p.batch_seq or 0) for p in item.pages]
            if item is not None:
                assert [p.serial for p in item.pages] == list(range(1, len(item.pages) + 1))
                assert item.pages_filed == len(item.pages)
        return out


def _agree(settings: Settings) -> None:
    """The catalogue and the archive agree: audit clean, no filing pending, each master holds its own
    page and nothing else is beside it, the PDF has every page, item.json lists them."""
    with session_scope(settings.effective_database_url) as session:
        report = audit(session, Layout.of(settings).archive)
        assert (report.changed, report.missing, report.untracked, report.pending) == ([], [], [], []), report.lines()
        for item in session.scalars(select(Item)):
            folder = Layout.of(settings).archive / item.folder
            masters = sorted(p.name for p in folder.glob(f"{item.archival_code}-*"))
            assert masters == sorted(p.master_name for p in item.pages), "one master per page, no more"
            for page in item.pages:
                original = session.scalars(
                    select(Original).where(Original.batch_id == page.batch_id).order_by(Original.seq)
                ).all()[(page.batch_seq or 0) - 1]
                stored = Layout.of(settings).spool / str(page.batch_id) / "originals" / original.stored_name
                assert (folder / page.master_name).read_bytes() == stored.read_bytes(), (
                    f"{page.master_name} must be batch {page.batch_id}'s page {page.batch_seq}"
                )
            if item.pages:
                with pikepdf.open(folder / f"{item.archival_code}.pdf") as pdf:
                    assert len(pdf.pages) == len(item.pages)
                listed = filing.describe(item)["page_list"]
                assert (folder / "item.json").read_text(encoding="utf-8").count('"master"') == len(listed)


# ---- the filings under test --------------------------------------------------------------------


@dataclass(frozen=True)
class Filing:
    """One kind of filing: the data folder it starts from, how it is done, and the pages before and after."""

    name: str
    filed_first: bool  # starts from the template with batch a filed
    target: str  # the item the fault hits
    codes: list[str]

    def start(self, template: Template, tmp_path: Path) -> Settings:
        settings = _station(template.filed if self.filed_first else template.unfiled, tmp_path)
        if self.name == "separator_run":
            with session_scope(settings.effective_database_url) as session:
                fonds = session.get(Fonds, "C015")
                assert fonds is not None
                fonds.allow_new_items = True
        return settings

    def run(self, settings: Settings, t: Template) -> None:
        """Do the filing; raises if it fails (a separator run's failure is a problem in its report)."""
        if self.name == "new":
            filing.file_batch(settings, t.a, CODE, may_create=True)
        elif self.name == "append":
            filing.file_batch(settings, t.b, CODE, mode="append")
        elif self.name == "insert_front":
            filing.file_batch(settings, t.b, CODE, seqs=[1], mode="insert", at=1)
        elif self.name == "replace":
            filing.file_batch(settings, t.b, CODE, seqs=[1], mode="replace", replace=[1])
        else:
            report = filing.auto_file(settings, t.run)
            if report["problems"]:
                raise RuntimeError(f"the separator run was not filed: {report['problems']}")

    def before(self, t: Template) -> Pages:
        if self.name == "separator_run":  # the fault hits the second item: the first is filed
            return {SHEET_CODES[0]: [(t.run, 2), (t.run, 3)], SHEET_CODES[1]: []}
        return {CODE: [] if self.name == "new" else [(t.a, 1), (t.a, 2)]}

    def after(self, t: Template) -> Pages:
        a1, a2, b1, b2 = (t.a, 1), (t.a, 2), (t.b, 1), (t.b, 2)
        return {
            "new": {CODE: [a1, a2]},
            "append": {CODE: [a1, a2, b1, b2]},
            "insert_front": {CODE: [b1, a1, a2]},
            "replace": {CODE: [b1, a2]},
            "separator_run": {SHEET_CODES[0]: [(t.run, 2), (t.run, 3)], SHEET_CODES[1]: [(t.run, 5)]},
        }[self.name]

    def again(self, settings: Settings, t: Template) -> None:
        """File once more after a filing that completed: a filed page is never filed twice."""
        if self.name == "separator_run":
            self.run(settings, t)  # the assembly's re-run: both items are found filed, nothing changes
            return
        with pytest.raises(FilingRefused) as refused:
            self.run(settings, t)
        assert refused.value.reason_code == "page_already_filed"


FILINGS = {
    f.name: f
    for f in (
        Filing("new", False, CODE, [CODE]),
        Filing("append", True, CODE, [CODE]),
        Filing("insert_front", True, CODE, [CODE]),
        Filing("replace", True, CODE, [CODE]),
        Filing("separator_run", False, SHEET_CODES[1], SHEET_CODES),
    )
}


def _cases() -> list[Any]:
    cases = []
    for name, how in FILINGS.items():
        for step in steps.STEPS:
            if step == steps.MOVE_ASIDE and not how.filed_first:
                continue  # a new item has no file to move aside
            cases.append(pytest.param(name, step, id=f"{name}-{step}"))
    return cases


class InjectedFault(RuntimeError):
    pass


def _at(step: str, target: str, action: Callable[[], None]) -> Callable[[str, str], None]:
    """A fault hook that runs ``action`` once, when ``target``'s filing reaches ``step`` (for the moves
    and masters: the second time, so some are done and some not)."""
    wanted = 2 if step in (steps.MOVE_ASIDE, steps.MOVE_IN) else 1
    seen = 0

    def hook(reached: str, code_key: str) -> None:
        nonlocal seen
        if reached == step and code_key == target:
            seen += 1
            if seen == wanted:
                action()

    return hook


def _check_settled(settings: Settings, how: Filing, t: Template, *, filed: bool) -> None:
    assert _pages(settings, how.codes) == (how.after(t) if filed else how.before(t))
    _agree(settings)


def _file_again(settings: Settings, how: Filing, t: Template, *, filed: bool) -> None:
    """Once the fault is over: the filing completes, exactly once."""
    if filed:
        how.again(settings, t)
    else:
        how.run(settings, t)
    _check_settled(settings, how, t, filed=True)


# ---- the defect of issue 9 ---------------------------------------------------------------------


def test_a_failure_after_the_renames_of_an_insert_leaves_the_item_as_it_was(
    filed_item: Settings, template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = filed_item
    before = _pages(settings, [CODE])
    assert before == {CODE: [(template.a, 1), (template.a, 2)]}
    _agree(settings)

    def disk_fails() -> None:  # every master renamed, the new one in place: then an I/O error
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(steps, "hook", _at(steps.MOVED, CODE, disk_fails))
    with pytest.raises(OSError):
        filing.file_batch(settings, template.b, CODE, seqs=[1], mode="insert", at=1)
    monkeypatch.undo()

    assert _pages(settings, [CODE]) == before, "the catalogue is as it was"
    _agree(settings)
    result = filing.file_batch(settings, template.b, CODE, seqs=[1], mode="insert", at=1)
    assert result.pages_filed == 3
    assert _pages(settings, [CODE]) == {CODE: [(template.b, 1), (template.a, 1), (template.a, 2)]}
    _agree(settings)


# ---- an exception at every step ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "step"), _cases())
def test_an_exception_at_any_step_leaves_the_item_as_it_was_or_filed(
    name: str, step: str, template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    how = FILINGS[name]
    settings = how.start(template, tmp_path)
    fired = []

    def fail() -> None:
        fired.append(step)
        raise InjectedFault(f"injected at {step}")

    monkeypatch.setattr(steps, "hook", _at(step, how.target, fail))
    committed = step not in steps.BEFORE_COMMIT
    if committed:
        how.run(settings, template)  # the catalogue committed: the filing stands, leftovers wait
    else:
        with pytest.raises((InjectedFault, RuntimeError)):
            how.run(settings, template)
    monkeypatch.undo()
    assert fired == [step]
    if committed:
        assert filing.recover_journals(settings) == [(how.target, "finished")]
    else:
        assert filing.recover_journals(settings) == [], "undone at once, nothing left for recovery"
    _check_settled(settings, how, template, filed=committed)
    _file_again(settings, how, template, filed=committed)
    _release(settings)


# ---- a SIGKILL at every step -------------------------------------------------------------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _child(settings: Settings, how: Filing, t: Template, step: str) -> None:
    get_engine(settings.effective_database_url).dispose(close=False)  # never the parent's connections
    steps.hook = _at(step, how.target, _die)
    how.run(settings, t)


def _killed_at(settings: Settings, how: Filing, t: Template, step: str) -> None:
    """Run the filing in a child process that SIGKILLs itself at ``step``."""
    _release(settings)
    child = multiprocessing.get_context("fork").Process(target=_child, args=(settings, how, t, step))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL, f"the filing did not reach {step} (exit {child.exitcode})"


@pytest.mark.parametrize(("name", "step"), _cases())
def test_a_sigkill_at_any_step_is_finished_or_undone_at_the_next_start(
    name: str, step: str, template: Template, tmp_path: Path
) -> None:
    how = FILINGS[name]
    settings = how.start(template, tmp_path)
    _killed_at(settings, how, template, step)
    with session_scope(settings.effective_database_url) as session:
        assert audit(session, Layout.of(settings).archive).pending == [how.target], "the journal tells what was cut off"
    committed = step not in steps.BEFORE_COMMIT
    assert filing.recover_journals(settings) == [(how.target, "finished" if committed else "undone")]
    _check_settled(settings, how, template, filed=committed)
    _file_again(settings, how, template, filed=committed)
    _release(settings)


def test_filing_again_after_a_crash_resolves_the_journal_first(template: Template, tmp_path: Path) -> None:
    how = FILINGS["insert_front"]
    settings = how.start(template, tmp_path)
    _killed_at(settings, how, template, steps.MOVE_IN)  # masters renamed, the new one not yet in place
    how.run(settings, template)  # no recovery run by hand: the filing of the item does it, then files
    _check_settled(settings, how, template, filed=True)
    _release(settings)


# ---- the archive's disk: full, read-only ---------------------------------------------------------


def _need(template: Template, tmp_path: Path) -> int:
    """The most an insert adds to the archive at any step (measured on a roomy tmpfs)."""
    settings = FILINGS["insert_front"].start(template, tmp_path / "measure")
    with archive_on_tmpfs(settings) as archive:
        start, peak = used_bytes(archive), 0

        def measure(_step: str, _code_key: str) -> None:
            nonlocal peak
            peak = max(peak, used_bytes(archive))

        steps.hook = measure
        try:
            FILINGS["insert_front"].run(settings, template)
        finally:
            steps.hook = None
    _release(settings)
    return peak - start


@pytest.mark.parametrize("room", ["none", "half", "almost"])
def test_a_full_archive_disk_files_nothing_and_files_once_when_space_is_back(
    room: str, template: Template, tmp_path: Path
) -> None:
    how = FILINGS["insert_front"]
    need = _need(template, tmp_path)
    free = {"none": 0, "half": need // 2, "almost": need - os.sysconf("SC_PAGE_SIZE")}[room]
    settings = how.start(template, tmp_path)
    with archive_on_tmpfs(settings, free) as archive:
        with pytest.raises(DiskFull) as full:
            how.run(settings, template)
        assert full.value.code == "disk_full" and "disk is full" in full.value.message
        assert f"file batch {template.b} again" in full.value.message, "it says what to do"
        _check_settled(settings, how, template, filed=False)
        mount("-o", f"remount,size={PLENTY}", str(archive))  # space is back
        _file_again(settings, how, template, filed=False)
    _release(settings)


def test_a_read_only_archive_files_nothing(template: Template, tmp_path: Path) -> None:
    how = FILINGS["insert_front"]
    settings = how.start(template, tmp_path)
    with archive_on_tmpfs(settings) as archive:
        mount("-o", "remount,ro", str(archive))
        with pytest.raises(ReadOnlyStorage) as refused:
            how.run(settings, template)
        assert refused.value.code == "read_only" and "cannot be written" in refused.value.message
        _check_settled(settings, how, template, filed=False)
        mount("-o", "remount,rw", str(archive))
        _file_again(settings, how, template, filed=False)
    _release(settings)


def test_an_archive_turned_read_only_midway_is_undone_once_writable(
    template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    how = FILINGS["insert_front"]
    settings = how.start(template, tmp_path)
    with archive_on_tmpfs(settings) as archive:
        # As a disk with errors is remounted read-only by the kernel: here after two moves.
        monkeypatch.setattr(steps, "hook", _at(steps.MOVE_IN, CODE, lambda: mount("-o", "remount,ro", str(archive))))
        with pytest.raises(FilingInterrupted) as stuck:
            how.run(settings, template)
        monkeypatch.undo()
        assert stuck.value.code == "filing_interrupted" and "next start" in stuck.value.message
        assert _pages(settings, [CODE]) == how.before(template), "the catalogue shows the item as it was"
        assert [outcome for _, outcome in filing.recover_journals(settings)][0].startswith("failed")
        mount("-o", "remount,rw", str(archive))
        assert filing.recover_journals(settings) == [(CODE, "undone")]
        _check_settled(settings, how, template, filed=False)
        _file_again(settings, how, template, filed=False)
    _release(settings)


# ---- the catalogue locked by another writer --------------------------------------------------------


def test_a_catalogue_locked_for_20_s_makes_filing_wait_then_file(
    template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    how = FILINGS["insert_front"]
    settings = how.start(template, tmp_path)
    database = settings.data / "catalogue.sqlite3"
    locked, released = threading.Event(), threading.Event()

    def other_writer() -> None:
        conn = sqlite3.connect(database, timeout=5, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events (at, kind, detail) VALUES (datetime('now'), 'other_writer', '{}')")
        locked.set()
        time.sleep(20)  # holding the write lock
        released.set()
        conn.execute("COMMIT")
        conn.close()

    writer = threading.Thread(target=other_writer)
    writer.start()
    assert locked.wait(10)
    rendered_while_locked = []

    def note(step: str, _code_key: str) -> None:
        if step == steps.STAGE_PDF:
            rendered_while_locked.append(not released.is_set())

    monkeypatch.setattr(steps, "hook", note)
    try:
        how.run(settings, template)
    finally:
        writer.join()
    assert rendered_while_locked == [True], "the PDF is built without waiting for the catalogue"
    with session_scope(settings.effective_database_url) as session:
        kinds = [e.kind for e in session.scalars(select(Event).order_by(Event.id))]
    assert kinds[-2:] == ["other_writer", "item_pages_changed"], "filing waited for the other writer, then filed"
    _check_settled(settings, how, template, filed=True)
    _release(settings)


# ---- the same on a PostgreSQL catalogue ----------------------------------------------------------


def _on_postgres(settings: Settings, url: str) -> Settings:
    """The station with its catalogue copied, row for row, into the empty PostgreSQL database ``url``."""
    migrate(url)
    target = get_engine(url)
    with get_engine(settings.effective_database_url).connect() as source, target.begin() as into:
        for table in Base.metadata.sorted_tables:
            rows = [dict(row._mapping) for row in source.execute(table.select())]
            if rows:
                into.execute(table.insert(), rows)
            if "id" in table.c:
                into.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), COALESCE(MAX(id), 0) + 1, false) "
                        f"FROM {table.name}"
                    )
                )
    _release(settings)
    return build_settings(data=settings.data, inbox=settings.inbox, database_url=url)


@pytest.mark.parametrize("step", [steps.CATALOGUE, steps.MOVE_IN, steps.MOVED, steps.COMMITTED])
def test_on_postgresql_a_sigkill_is_finished_or_undone(
    step: str, template: Template, tmp_path: Path, postgres_url: str
) -> None:
    how = FILINGS["insert_front"]
    settings = _on_postgres(how.start(template, tmp_path), postgres_url)
    _killed_at(settings, how, template, step)
    committed = step not in steps.BEFORE_COMMIT
    assert filing.recover_journals(settings) == [(CODE, "finished" if committed else "undone")]
    _check_settled(settings, how, template, filed=committed)
    _file_again(settings, how, template, filed=committed)


def test_on_postgresql_an_exception_midway_leaves_the_item_as_it_was(
    template: Template, tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    how = FILINGS["insert_front"]
    settings = _on_postgres(how.start(template, tmp_path), postgres_url)

    def fail() -> None:
        raise InjectedFault("injected after two moves")

    monkeypatch.setattr(steps, "hook", _at(steps.MOVE_IN, CODE, fail))
    with pytest.raises(InjectedFault):
        how.run(settings, template)
    monkeypatch.undo()
    _check_settled(settings, how, template, filed=False)
    _file_again(settings, how, template, filed=False)
