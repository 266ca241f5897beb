"""Corrections of a filed item's pages, end to end: a real batch through real OCR filed under its 档号,
then turned, undone, excluded, reordered, moved and withdrawn through the API; the derivations run as
real RQ jobs (real Redis, real OCR). After each: what a user sees (pdftotext of the item PDF, search, the
masters in the folder) and ``scanstation audit`` clean. A fault injected mid-change leaves the item as
it was; a SIGKILL mid-change is undone or finished by recovery."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from fastapi.testclient import TestClient

from scanner_service.api.app import create_app
from scanner_service.archive import archival_code as ac
from scanner_service.archive import filing
from scanner_service.archive.access import Caller
from scanner_service.archive.corrections import item as item_corrections
from scanner_service.archive.db import get_engine, session_scope
from scanner_service.archive.filing import steps
from scanner_service.archive.fixity import audit
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ArchiveFile, Batch, Correction, FileKind, Item, Role
from scanner_service.settings import Settings
from scanner_service.station import queue as q
from scanner_service.station.watcher import Watcher
from tests.conftest import SAMPLE
from tests.test_archive import bearer, scan
from tests.test_pipeline import run_queue

pytestmark = pytest.mark.slow

CODE = "C015-WS·2013-Y-BGS-0001"
OTHER = "C015-WS·2013-Y-BGS-0002"
URL = "/api/items/" + quote(CODE)
OTHER_URL = "/api/items/" + quote(OTHER)
PAGES = ["scan_0001.jpg", "scan_0003.jpg"]  # a land contract (承包方 江永), another text page


def _file(settings: Settings, conn: redis.Redis) -> Batch:
    """Scan two text pages (a batch not named by a 档号) and file them under CODE."""
    batch = scan(settings, conn, "two-pages", PAGES)
    filing.file_batch(settings, batch.id, CODE, may_create=True)
    return batch


def _folder(settings: Settings, code: str = CODE) -> Path:
    return Layout.of(settings).archive / "C015" / "WS" / "2013" / code


def _pdftext(settings: Settings, code: str = CODE, page: int | None = None) -> str:
    args = ["pdftotext", "-layout"] + (["-f", str(page), "-l", str(page)] if page else [])
    pdf = _folder(settings, code) / f"{code}.pdf"
    out = subprocess.run([*args, str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return re.sub(r"\s+", "", out)


def _pdf_pages(settings: Settings, code: str = CODE) -> int:
    out = subprocess.run(
        ["pdfinfo", str(_folder(settings, code) / f"{code}.pdf")], capture_output=True, text=True, check=True
    ).stdout
    return int(re.search(r"Pages:\s+(\d+)", out).group(1))  # type: ignore[union-attr]


def _clean(settings: Settings) -> None:
    with session_scope(settings.effective_database_url) as session:
        report = audit(session, Layout.of(settings).archive)
    assert (report.changed, report.missing, report.untracked, report.pending) == ([], [], [], []), report.lines()


def _hits(client: TestClient, headers: dict[str, str], q: str) -> list[tuple[str, int]]:
    found = client.get("/api/search", params={"q": q}, headers=headers).json()
    return [(h["archival_code"], h["page"]) for h in found["hits"] if h["archival_code"]]


def _phrase(text: str) -> str:
    """A run of four Chinese characters of a page's text, to search for."""
    match = re.search(r"[\u4e00-\u9fff]{4}", text.replace(" ", ""))
    assert match, text
    return match.group(0)


@pytest.fixture
def client(station_env: Settings) -> TestClient:
    return TestClient(create_app(station_env))


def test_a_filed_items_pages_are_corrected_undone_excluded_reordered_moved_and_withdrawn(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient
) -> None:
    settings = station_env
    _file(settings, redis_conn)
    operator, archivist = bearer(settings, "operator", "C015"), bearer(settings, "archivist", "C015")
    item = client.get(URL, headers=operator).json()
    first = item["page_list"][0]
    assert (first["version"], first["state"], first["correction"], first["history"]) == (1, "done", {}, [])
    assert first["decision"]["details"]["turn"] == first["details"]["turn"], "the station's decision is kept"
    assert [p["pdf_page"] for p in item["page_list"]] == [1, 2]
    assert "江永" in _pdftext(settings, page=1)
    other_text = client.get(f"{URL}/pages/2/text", headers=operator).text
    phrase = _phrase(other_text)
    assert (CODE, 2) in _hits(client, operator, phrase)

    # Who may correct: a reader of the fonds is refused, an operator of another fonds does not see it.
    for role, fonds, status in (("reader", "C015", 403), ("operator", "C999", 404)):
        refused = client.patch(f"{URL}/pages/1", json={"turn": 180}, headers=bearer(settings, role, fonds))
        assert refused.status_code == status, (role, fonds)

    # Turned by hand: answered at once, derived by the job from the master.
    row_id = first["etag"].strip('"').split(".")[0]
    assert first["etag"] == f'"{row_id}.1"'
    turned = client.patch(f"{URL}/pages/1", json={"turn": 180}, headers={**operator, "If-Match": first["etag"]})
    assert turned.status_code == 200, turned.text
    assert (turned.json()["state"], turned.json()["version"]) == ("queued", 2)
    assert turned.headers["etag"] == turned.json()["etag"] == f'"{row_id}.2"'
    stale = client.patch(f"{URL}/pages/1", json={"blank": True}, headers={**operator, "If-Match": first["etag"]})
    assert stale.status_code == 409 and stale.json()["reason"] == "stale_version"
    master = (_folder(settings) / f"{CODE}-0001.jpg").read_bytes()
    run_queue(redis_conn)
    page = client.get(f"{URL}/pages/1", headers=operator).json()
    assert (page["state"], page["correction"], page["details"]["turn_from"]) == ("done", {"turn": 180}, "person")
    assert [h["action"] for h in page["history"]] == ["page"] and page["history"][0]["who"] == "operator C015"
    assert "江永" not in _pdftext(settings, page=1), "the page turned upside down no longer reads"
    assert (_folder(settings) / f"{CODE}-0001.jpg").read_bytes() == master, "a master is never altered"
    assert client.get(URL, headers=operator).json()["version"] == 2
    _clean(settings)

    # Undo: back to the station's decision; the page reads the right way again.
    undone = client.post(f"{URL}/pages/1/undo", headers={**operator, "If-Match": f'"{row_id}.2"'})
    assert undone.status_code == 200 and undone.json()["state"] == "queued"
    run_queue(redis_conn)
    page = client.get(f"{URL}/pages/1", headers=operator).json()
    assert (page["state"], page["correction"], page["details"]["turn_from"]) == ("done", {}, "station")
    assert "江永" in _pdftext(settings, page=1)
    assert [h["action"] for h in page["history"]] == ["page", "undo"]
    _clean(settings)

    # Excluded: out of the PDF at once, the master kept, its text no longer found, the other hit opens PDF page 1.
    out = client.patch(f"{URL}/pages/1", json={"excluded": True}, headers=operator)
    assert out.status_code == 200 and (out.json()["state"], out.json()["pdf_page"]) == ("done", None)
    assert _pdf_pages(settings) == 1 and "江永" not in _pdftext(settings)
    assert (_folder(settings) / f"{CODE}-0001.jpg").read_bytes() == master
    assert not [h for h in _hits(client, operator, "江永") if h[0] == CODE]
    assert (CODE, 1) in _hits(client, operator, phrase), "the hit opens the page's place in the PDF"
    assert client.patch(f"{URL}/pages/1", json={"excluded": True}, headers=operator).json()["version"] == 4, (
        "the same correction sent again changes nothing"
    )
    _clean(settings)
    back = client.patch(f"{URL}/pages/1", json={"excluded": False}, headers=operator)
    assert back.json()["pdf_page"] == 1 and _pdf_pages(settings) == 2
    _clean(settings)

    # Reorder: the PDF's order changes, the masters are renamed to their new serials.
    reordered = client.post(f"{URL}/order", json={"pages": [2, 1]}, headers=operator)
    assert reordered.status_code == 200, reordered.text
    assert "江永" in _pdftext(settings, page=2) and "江永" not in _pdftext(settings, page=1)
    assert (_folder(settings) / f"{CODE}-0002.jpg").read_bytes() == master
    assert (_folder(settings) / f"{CODE}-0001.jpg").read_bytes() == (SAMPLE / PAGES[1]).read_bytes()
    assert client.post(f"{URL}/order", json={"pages": [1, 1]}, headers=operator).status_code == 409
    with session_scope(settings.effective_database_url) as session:
        last = session.query(Correction).order_by(Correction.id.desc()).first()
        assert last is not None and last.action == "order", "as a batch's order and the endpoint say"
    _clean(settings)

    # Move the land contract to another item (a catalogue entry with no pages yet).
    assert client.put(OTHER_URL, json={"title": "合同"}, headers=archivist).status_code == 200
    moved = client.post(f"{URL}/move", json={"pages": [2], "to": OTHER}, headers=operator)
    assert moved.status_code == 200, moved.text
    assert [p["master"] for p in moved.json()["target"]["page_list"]] == [f"{OTHER}-0001.jpg"]
    assert (_folder(settings, OTHER) / f"{OTHER}-0001.jpg").read_bytes() == master
    assert "江永" in _pdftext(settings, OTHER) and "江永" not in _pdftext(settings)
    assert client.get(URL, headers=operator).json()["pages_filed"] == 1
    assert [h[0] for h in _hits(client, operator, "江永")] == [OTHER]
    _clean(settings)

    # Withdraw: the page leaves the item, its master is kept apart and still checked by the audit.
    gone = client.post(f"{OTHER_URL}/pages/1/withdraw", json={"note": "不属于本件"}, headers=operator)
    assert gone.status_code == 200, gone.text
    assert gone.json()["pages_filed"] == 0 and gone.json()["pdf_url"] is None
    [kept] = list((_folder(settings, OTHER) / "withdrawn").glob(f"v*/{OTHER}-0001.jpg"))
    assert kept.read_bytes() == master
    with session_scope(settings.effective_database_url) as session:
        record = session.query(ArchiveFile).filter(ArchiveFile.kind == FileKind.withdrawn).one()
        assert record.path == str(kept.relative_to(Layout.of(settings).archive))
    _clean(settings)


# ---- faults --------------------------------------------------------------------------------------


class InjectedFault(RuntimeError):
    pass


def _state(settings: Settings, code: str = CODE) -> tuple[Any, ...]:
    """What a user sees of the item: its version, pages (serial, master, batch page) and PDF bytes."""
    with session_scope(settings.effective_database_url) as session:
        item = session.query(Item).filter(Item.archival_code == code).one()
        pages = [(p.serial, p.master_name, p.batch_seq) for p in item.pages]
        version = item.version
    folder = _folder(settings, code)
    pdf = (folder / f"{code}.pdf").read_bytes() if (folder / f"{code}.pdf").exists() else b""
    masters = sorted((p.name, p.read_bytes()) for p in folder.glob(f"{code}-*"))
    return version, pages, pdf, masters


def _fault_at(step: str) -> Any:
    wanted, seen = (2 if step in (steps.MOVE_ASIDE, steps.MOVE_IN) else 1), 0

    def hook(reached: str, code_key: str) -> None:
        nonlocal seen
        if reached == step:
            seen += 1
            if seen == wanted:
                raise InjectedFault(step)

    return hook


def _die_at(step: str) -> Any:
    def hook(reached: str, code_key: str) -> None:
        if reached == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _in_child(settings: Settings, step: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    get_engine(settings.effective_database_url).dispose(close=False)  # never the parent's connections
    steps.hook = _die_at(step)
    TestClient(create_app(settings)).post(path, json=body, headers=headers)


def _killed_at(settings: Settings, step: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
    """Make the change in a child process that SIGKILLs itself at ``step``."""
    get_engine(settings.effective_database_url).dispose()
    child = multiprocessing.get_context("fork").Process(target=_in_child, args=(settings, step, path, body, headers))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL, f"the change did not reach {step} (exit {child.exitcode})"


def test_a_fault_or_a_kill_mid_change_leaves_the_item_as_it_was_or_fully_changed(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = station_env
    _file(settings, redis_conn)
    operator = bearer(settings, "operator", "C015")
    before = _state(settings)
    for step in steps.BEFORE_COMMIT:
        if step in (steps.STAGE_MASTER, steps.STAGE_PAGE):
            continue  # a new order writes no master and derives no page
        monkeypatch.setattr(steps, "hook", _fault_at(step))
        with pytest.raises(InjectedFault, match=step):
            client.post(f"{URL}/order", json={"pages": [2, 1]}, headers=operator)
        monkeypatch.setattr(steps, "hook", None)
        assert _state(settings) == before, f"a fault at {step} changed the item"
        _clean(settings)
    # After the commit the change stands, whatever fails while cleaning up.
    monkeypatch.setattr(steps, "hook", _fault_at(steps.CLEANUP))
    assert client.post(f"{URL}/order", json={"pages": [2, 1]}, headers=operator).status_code == 200
    monkeypatch.setattr(steps, "hook", None)
    after = _state(settings)
    assert after[0] == before[0] + 1 and [p[2] for p in after[1]] == [2, 1]
    assert filing.recover_journals(settings) == [(CODE, "finished")]
    _clean(settings)

    # A SIGKILL with every master renamed but the PDF not yet in place: undone at the next start.
    _killed_at(settings, steps.MOVED, f"{URL}/order", {"pages": [2, 1]}, operator)
    assert filing.recover_journals(settings) == [(CODE, "undone")]
    assert _state(settings) == after
    _clean(settings)

    # A move cut off: both items as they were, whichever item's change resolves the journal.
    archivist = bearer(settings, "archivist", "C015")
    assert client.put(OTHER_URL, json={"title": "合同"}, headers=archivist).status_code == 200
    monkeypatch.setattr(steps, "hook", _fault_at(steps.MOVE_IN))
    with pytest.raises(InjectedFault):
        client.post(f"{URL}/move", json={"pages": [1], "to": OTHER}, headers=operator)
    monkeypatch.setattr(steps, "hook", None)
    assert _state(settings) == after
    _clean(settings)
    # Killed midway: undone at the next start.
    move = {"pages": [1], "to": OTHER}
    _killed_at(settings, steps.MOVE_IN, f"{URL}/move", move, operator)
    assert filing.recover_journals(settings) == [(CODE, "undone")]
    assert _state(settings) == after
    _clean(settings)
    # Killed once committed: finished by the next change of the OTHER item (it finds the journal naming it).
    _killed_at(settings, steps.COMMITTED, f"{URL}/move", move, operator)
    assert filing.recover_item(settings, str(ac.parse(OTHER))) == "finished"
    assert [p[2] for p in _state(settings, OTHER)[1]] == [2] and [p[2] for p in _state(settings)[1]] == [1]
    _clean(settings)


def test_a_correction_made_while_the_job_derives_the_page_wins(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = station_env
    _file(settings, redis_conn)
    operator = bearer(settings, "operator", "C015")
    assert client.patch(f"{URL}/pages/1", json={"turn": 180}, headers=operator).json()["state"] == "queued"
    person = Caller("乙", Role.operator, ("C015",))
    undone = []

    def undo_meanwhile(reached: str, code_key: str) -> None:
        if reached == steps.STAGE_PDF and not undone:  # the turned page is derived, the PDF built: not committed
            undone.append(item_corrections.correct_page(settings, person, CODE, 1, {}, action="undo"))

    monkeypatch.setattr(steps, "hook", undo_meanwhile)
    with session_scope(settings.effective_database_url) as session:
        item_id = session.query(Item).one().id
    assert item_corrections.derive_pending(settings, item_id) == "derived"
    monkeypatch.setattr(steps, "hook", None)
    assert undone and undone[0].queued
    page = client.get(f"{URL}/pages/1", headers=operator).json()
    assert (page["state"], page["correction"], page["version"]) == ("done", {}, 3)
    assert [(h["who"], h["action"]) for h in page["history"]] == [("operator C015", "page"), ("乙", "undo")]
    assert "江永" in _pdftext(settings, page=1), "the stale, upside-down derivation never reached the PDF"
    assert client.get(URL, headers=operator).json()["version"] == 2, "one change: the stale one was undone"
    _clean(settings)


READER_FIELDS = {"page", "pdf_page", "state", "text_url", "hocr_url", "image_url", "thumbnail_url"}


def test_a_change_lands_on_the_page_seen_a_lost_job_is_queued_again_and_a_bad_crop_fails_its_page_only(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = station_env
    _file(settings, redis_conn)
    operator, archivist = bearer(settings, "operator", "C015"), bearer(settings, "archivist", "C015")
    assert client.put(URL, json={"open_status": "开放"}, headers=archivist).status_code == 200
    assert client.put(OTHER_URL, json={"title": "合同"}, headers=archivist).status_code == 200
    seen = client.get(URL, headers=operator)
    item_etag, [one, two] = seen.headers["etag"], seen.json()["page_list"]
    assert item_etag == '"v1"'

    # Someone else puts page 2 first: what the person saw as page 1 is page 2 now.
    assert client.post(f"{URL}/order", json={"pages": [2, 1]}, headers={**operator, "If-Match": item_etag}).is_success
    on_page_1 = client.patch(f"{URL}/pages/1", json={"turn": 90}, headers={**operator, "If-Match": one["etag"]})
    assert (on_page_1.status_code, on_page_1.json()["reason"]) == (409, "stale_version"), "not the page seen"
    for path, body in (("order", {"pages": [2, 1]}), ("move", {"pages": [1], "to": OTHER})):
        stale = client.post(f"{URL}/{path}", json=body, headers={**operator, "If-Match": item_etag})
        assert (stale.status_code, stale.json().get("reason")) == (409, "stale_version"), (path, stale.text)
    for tag in (item_etag, one["etag"], '"1"'):  # the item before the order, the page seen, a bare version
        stale = client.post(f"{URL}/pages/1/withdraw", headers={**operator, "If-Match": tag})
        assert (stale.status_code, stale.json()["reason"]) == (409, "stale_version"), tag
    now = client.get(URL, headers=operator)
    assert now.headers["etag"] == '"v2"' and [p["etag"] for p in now.json()["page_list"]] == [two["etag"], one["etag"]]
    assert now.json()["pages_filed"] == 2, "nothing was withdrawn"
    # The contract: the page's version alone, checked against the page now at that number.
    noted = client.patch(f"{URL}/pages/2", json={"note": "核对"}, headers={**operator, "If-Match": "1"})
    assert noted.status_code == 200 and noted.json()["version"] == 2, noted.text
    again = client.patch(f"{URL}/pages/2", json={"note": "再核对"}, headers={**operator, "If-Match": "1"})
    assert (again.status_code, again.json()["reason"]) == (409, "stale_version")

    # Refused in the request: a crop that is not a box, an OCR engine the station does not have.
    assert client.patch(f"{URL}/pages/1", json={"crop": [500, 500, 10, 10]}, headers=operator).status_code == 422
    assert client.post(f"{URL}/pages/1/rerun", json={"engine": "nope"}, headers=operator).status_code == 422

    # A reader sees the pages, not who corrected what, the notes, nor the station's decisions.
    assert client.patch(f"{URL}/pages/1", json={"note": "第二页放错"}, headers=operator).is_success
    reader = bearer(settings, "reader", "C015")
    as_reader = client.get(URL, headers=reader).json()["page_list"]
    assert [set(p) for p in as_reader] == [READER_FIELDS, READER_FIELDS]
    assert set(client.get(f"{URL}/pages/1", headers=reader).json()) == READER_FIELDS
    assert client.get(f"{URL}/pages/1", headers=operator).json()["history"][-1]["note"] is None
    assert client.get(f"{URL}/pages/1", headers=operator).json()["correction"] == {"note": "第二页放错"}

    # A page turned while its move is staged: the move is refused in its transaction, nothing moves.
    person = Caller("乙", Role.operator, ("C015",))

    def turn_meanwhile(reached: str, code_key: str) -> None:
        if reached == steps.STAGE_PDF and code_key == str(ac.parse(CODE)):
            steps.hook = None
            item_corrections.correct_page(settings, person, CODE, 2, {"turn": 180})

    monkeypatch.setattr(steps, "hook", turn_meanwhile)
    moved = client.post(f"{URL}/move", json={"pages": [2], "to": OTHER}, headers=operator)
    monkeypatch.setattr(steps, "hook", None)
    assert (moved.status_code, moved.json()["reason"]) == (409, "page_queued")
    assert client.get(URL, headers=operator).json()["pages_filed"] == 2
    assert client.get(OTHER_URL, headers=operator).json()["pages_filed"] == 0
    _clean(settings)

    # The turn was committed but its job never queued (the API stopped in between): the next call on
    # the item queued it, even one refused. Lost again (Redis lost its data): the same correction sent
    # again queues it, once however often it is sent.
    with session_scope(settings.effective_database_url) as session:
        item_id = session.query(Item).filter(Item.archival_code == CODE).one().id
    assert q.item_job_active(redis_conn, item_id)
    redis_conn.flushdb()
    for _ in range(2):
        again = client.patch(f"{URL}/pages/2", json={"turn": 180}, headers=operator)
        assert again.json()["state"] == "queued"
    assert q.item_job_active(redis_conn, item_id) and q.get_queue(redis_conn).count == 1
    # Lost once more: the watcher's sweep queues it.
    redis_conn.flushdb()
    Watcher(settings, redis_conn).sweep()
    assert q.item_job_active(redis_conn, item_id)

    # A crop with nothing of the master in it fails that page only; the turned page is derived.
    item_corrections.correct_page(settings, person, CODE, 1, {"crop": [100_000, 100_000, 100_010, 100_010]})
    run_queue(redis_conn)
    bad, turned = client.get(URL, headers=operator).json()["page_list"]
    assert (bad["state"], bad["details"]["error_code"]) == ("failed", "bad_crop"), bad
    assert "holds nothing of the page" in bad["details"]["error"]
    assert (turned["state"], turned["details"]["turn_from"]) == ("done", "person")
    assert "江永" not in _pdftext(settings, page=2), "the contract (page 2 now) was turned upside down"
    _clean(settings)

    # With the item's ETag as it is now, the withdrawal is made.
    fresh = client.get(URL, headers=operator).headers["etag"]
    gone = client.post(f"{URL}/pages/1/withdraw", headers={**operator, "If-Match": fresh})
    assert gone.status_code == 200 and gone.json()["pages_filed"] == 1
    assert gone.headers["etag"] != fresh
    _clean(settings)


def _queued_page(settings: Settings) -> tuple[int, int]:
    """An item with one page queued for its derivation, written straight into the catalogue (no OCR)."""
    from scanner_service.archive.catalogue_store import describe_item
    from scanner_service.archive.models import ItemPage

    with session_scope(settings.effective_database_url) as session:
        item = describe_item(session, ac.parse(CODE), {"title": "合同"}, written=CODE, actor="test")
        session.flush()
        row = ItemPage(item_id=item.id, serial=1, master_name="0001.tif", state="queued", version=3)
        session.add(row)
        session.flush()
        return item.id, row.id


def _page_state(settings: Settings, row_id: int) -> tuple[str, Any]:
    from scanner_service.archive.models import ItemPage

    with session_scope(settings.effective_database_url) as session:
        row = session.get(ItemPage, row_id)
        assert row is not None
        return row.state, (row.details or {}).get("error_code")


def test_an_item_job_failed_before_it_read_its_pages_is_not_queued_again_for_ever(
    station_env: Settings, redis_conn: redis.Redis
) -> None:
    """The item's job failed for good before it read a page (its meta empty): the item's queued pages are
    failed with the reason, so the watcher's sweep does not queue the job again every few seconds."""
    from types import SimpleNamespace

    from scanner_service.station import jobs

    item_id, row_id = _queued_page(station_env)
    job = SimpleNamespace(should_retry=False, args=[item_id], get_meta=lambda: {})
    jobs.item_pages_failed_for_good(job, None, OSError, OSError("the spool is full"), None)
    assert _page_state(station_env, row_id) == ("failed", "derivation_failed")
    Watcher(station_env, redis_conn).sweep()
    assert not q.item_job_active(redis_conn, item_id)


def test_an_item_job_timing_out_or_a_passing_fault_fails_the_job_not_the_page(
    station_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ's timeout and a TransientError while a page is derived fail (and retry) the job: the page stays
    queued for the retry, not failed as if the page itself could not be derived."""
    from rq.timeouts import JobTimeoutException

    from scanner_service.exceptions import TransientError

    item_id, row_id = _queued_page(station_env)
    for fault in (JobTimeoutException("job timed out"), TransientError("tesseract crashed")):

        def derive(*args: object, fault: Exception = fault) -> None:  # fault injection
            raise fault

        monkeypatch.setattr(item_corrections, "_derive", derive)
        with pytest.raises(type(fault)):
            item_corrections.derive_pending(station_env, item_id)
        assert _page_state(station_env, row_id) == ("queued", None)
