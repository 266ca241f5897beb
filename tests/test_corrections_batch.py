"""Corrections of a batch before filing, end to end: real batches through real OCR, corrected through the
API, derived again by the real jobs; what a person sees in the batch PDF, in search and in the filed item."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pikepdf
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from scanner_service.api.app import create_app
from scanner_service.archive.access import Caller
from scanner_service.archive.corrections import batch as batch_corrections
from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Batch, BatchState, Correction, Page, PageState, Role
from scanner_service.cli import main as cli
from scanner_service.exceptions import Conflict
from scanner_service.settings import Settings
from scanner_service.station import intake
from scanner_service.station import queue as q
from scanner_service.station.watcher import Watcher
from tests.conftest import SAMPLE
from tests.test_archive import bearer
from tests.test_pipeline import run_queue

CODE = "C015-WS·2013-Y-BGS-0021"


def faint(name: str, contrast: float, *, turn: int = 0) -> Image.Image:
    """A sample page as a faded copy (its ink at ``contrast`` of the original's), turned ``turn`` degrees."""
    with Image.open(SAMPLE / name) as im:
        grey = np.asarray(im.convert("L"), dtype=np.float32)
    paper = np.percentile(grey, 90)
    out = Image.fromarray(np.clip(paper - (paper - grey) * contrast, 0, 255).astype(np.uint8))
    return out.rotate(turn) if turn else out


def drop(settings: Settings, conn: redis.Redis, name: str, pages: dict[str, Image.Image | str]) -> int:
    """A batch folder in the inbox (file name → image, or a sample's name), run through the real jobs."""
    folder = settings.inbox / name
    folder.mkdir(parents=True)
    for file_name, page in pages.items():
        if isinstance(page, str):
            (folder / file_name).write_bytes((SAMPLE / page).read_bytes())
        else:
            page.save(folder / file_name, dpi=(300, 300))
    (folder / ".done").touch()
    watcher = Watcher(settings, conn)
    watcher.poll()
    run_queue(conn, watcher)
    with session_scope(settings.effective_database_url) as session:
        return session.query(Batch).filter(Batch.name == name).one().id


def pdf_pages_text(data: bytes, tmp: Path) -> list[str]:
    """Each page's text as pdftotext reads it, spaces removed."""
    path = tmp / "read.pdf"
    path.write_bytes(data)
    with pikepdf.open(path) as pdf:
        count = len(pdf.pages)
    return [
        subprocess.run(
            ["pdftotext", "-f", str(n), "-l", str(n), str(path), "-"], capture_output=True, text=True, check=True
        ).stdout.replace(" ", "")
        for n in range(1, count + 1)
    ]


def page(detail: dict, seq: int) -> dict:
    return next(p for p in detail["page_list"] if p["seq"] == seq)


@pytest.mark.slow
def test_a_batch_is_corrected_accepted_and_filed_upright_and_in_order(
    station_env: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    """The issue's check: a page fed the wrong way is turned, a blank back with writing on it cleared,
    the pages put in order, one left out and back, one undone and redone; accepted, filed, audited."""
    # 1: a text page; 2: a faded copy fed the wrong way (the station cannot tell which way is up);
    # 3: a very faint page the station takes for blank (it carries 罗杰军's contract); 4: a real blank back.
    batch_id = drop(
        station_env,
        redis_conn,
        CODE,
        {
            "001.jpg": "scan_0004.jpg",
            "002.png": faint("scan_0003.jpg", 0.3, turn=90),
            "003.png": faint("scan_0001.jpg", 0.12),
            "004.jpg": "scan_0006.jpg",
        },
    )
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    url = f"/api/batches/{batch_id}"
    detail = client.get(url, headers=operator).json()
    assert detail["state"] == "needs_review"
    assert detail["filing"]["items"] == [] and detail["filing"]["proposed"][0]["archival_code"] == CODE, "not filed yet"
    assert client.get("/api/items/" + quote(CODE), headers=operator).status_code == 404
    assert (
        page(detail, 2)["open_flags"] == ["orientation_unsure"] and page(detail, 2)["decision"]["details"]["turn"] == 0
    )
    assert page(detail, 3)["open_flags"] == ["blank"] and page(detail, 4)["open_flags"] == ["blank"]
    with session_scope(station_env.effective_database_url) as session:
        station_text = session.query(Page).filter(Page.batch_id == batch_id, Page.seq == 2).one().text
    assert "东方家园" not in (station_text or "").replace(" ", ""), "sideways, the station reads nothing useful"

    # Who may correct: a reader never, an operator of another fonds does not even see the batch.
    assert (
        client.patch(f"{url}/pages/2", json={"turn": 90}, headers=bearer(station_env, "reader", "C015")).status_code
        == 403
    )
    assert (
        client.patch(f"{url}/pages/2", json={"turn": 90}, headers=bearer(station_env, "operator", "C016")).status_code
        == 404
    )

    turned = client.patch(f"{url}/pages/2", json={"turn": 90}, headers={**operator, "If-Match": '"1"'})
    assert turned.status_code == 200, turned.text
    assert turned.json()["version"] == 2 and turned.headers["etag"] == '"2"' and turned.json()["state"] == "queued"
    assert turned.json()["correction"] == {"turn": 90} and turned.json()["open_flags"] == []
    stale = client.patch(f"{url}/pages/2", json={"turn": 270}, headers={**operator, "If-Match": '"1"'})
    assert stale.status_code == 409 and stale.json()["reason"] == "stale_version"
    again = client.patch(f"{url}/pages/2", json={"turn": 90}, headers=operator)
    assert again.status_code == 200 and again.json()["version"] == 2, "a retry changes nothing"
    assert client.patch(f"{url}/pages/3", json={"blank": False}, headers=operator).status_code == 200
    waiting = q.get_queue(redis_conn).job_ids
    assert waiting == [q.page_job_id(_page_id(station_env, batch_id, s)) for s in (3, 2)], "each at the front"
    run_queue(redis_conn)

    detail = client.get(url, headers=operator).json()
    assert [page(detail, s)["state"] for s in (1, 2, 3, 4)] == ["done"] * 4
    assert page(detail, 2)["details"]["turn"] == 90 and page(detail, 3)["blank"] is False
    texts = pdf_pages_text(client.get(f"{url}/pdf", headers=operator).content, tmp_path)
    assert len(texts) == 3, "the cleared blank is in the PDF now"
    assert "东方家园" in texts[1], "the page turned by hand reads the right way"
    assert "罗杰军" in texts[2]
    hits = client.get("/api/search", params={"q": "罗杰军"}, headers=operator).json()["hits"]
    assert [(h["batch_id"], h["page"]) for h in hits] == [(batch_id, 3)], "the cleared blank is found"
    assert detail["state"] == "needs_review", "page 4 (a blank back) still waits for a person"

    # Order: the faint contract first. The PDF follows.
    bad = client.post(f"{url}/order", json={"seqs": [3, 1, 1, 4]}, headers=operator)
    assert bad.status_code == 409 and bad.json()["reason"] == "bad_order" and "missing 2" in bad.json()["detail"]
    assert client.post(f"{url}/order", json={"seqs": [3, 1, 2, 4]}, headers=operator).status_code == 200
    run_queue(redis_conn)
    texts = pdf_pages_text(client.get(f"{url}/pdf", headers=operator).content, tmp_path)
    assert "罗杰军" in texts[0] and "东方家园" in texts[2]

    # Left out: page 1 leaves the PDF, its original stays; back in again.
    original = Layout.of(station_env).original(batch_id, "001.jpg")
    assert client.patch(f"{url}/pages/1", json={"excluded": True}, headers=operator).json()["state"] == "done"
    run_queue(redis_conn)
    assert len(pdf_pages_text(client.get(f"{url}/pdf", headers=operator).content, tmp_path)) == 2
    assert original.read_bytes() == (SAMPLE / "scan_0004.jpg").read_bytes(), "an excluded page's original stays"
    assert client.patch(f"{url}/pages/1", json={"excluded": False}, headers=operator).status_code == 200

    # Undo: the station's own decision again, its text as it was; then turned again.
    undone = client.post(f"{url}/pages/2/undo", headers=operator)
    assert undone.status_code == 200 and undone.json()["correction"] == {} and undone.json()["state"] == "queued"
    run_queue(redis_conn)
    with session_scope(station_env.effective_database_url) as session:
        again_page = session.query(Page).filter(Page.batch_id == batch_id, Page.seq == 2).one()
        assert (again_page.text, again_page.flags) == (station_text, ["orientation_unsure"])
    assert client.patch(f"{url}/pages/2", json={"turn": 90}, headers=operator).status_code == 200
    run_queue(redis_conn)

    # Accept what is left (page 4's blank, page 3's unsure way up): done, and filed under its 档号.
    accepted = client.post(f"{url}/accept", json={"note": "checked against the paper"}, headers=operator)
    assert accepted.status_code == 200
    run_queue(redis_conn)
    detail = client.get(url, headers=operator).json()
    assert detail["state"] == "done", detail["filing"]
    assert [(i["archival_code"], i["batch_pages"]) for i in detail["filing"]["items"]] == [(CODE, [3, 1, 2])]
    item = client.get("/api/items/" + quote(CODE), headers=operator).json()
    texts = pdf_pages_text(client.get(item["pdf_url"], headers=operator).content, tmp_path)
    assert len(texts) == 3 and "罗杰军" in texts[0] and "东部风景" in texts[1] and "东方家园" in texts[2]
    hits = client.get("/api/search", params={"q": "罗杰军"}, headers=operator).json()["hits"]
    assert [(h["archival_code"], h["page"]) for h in hits] == [(CODE, 1)]
    assert cli(["audit", "--data", str(station_env.data)]) == 0

    # The history says who did what; a filed page is corrected in its item.
    history = page(detail, 2)["history"]
    assert [h["action"] for h in history] == ["page", "undo", "page"]
    assert history[0]["who"] == "operator C015" and history[0]["after"] == {"turn": 90}
    assert [(h["action"], h["after"]) for h in detail["history"]] == [("order", {"seqs": [3, 1, 2, 4]})]
    filed = client.patch(f"{url}/pages/2", json={"turn": 270}, headers=operator)
    assert filed.status_code == 409 and filed.json()["reason"] == "page_filed" and CODE in filed.json()["detail"]


def _page_id(settings: Settings, batch_id: int, seq: int) -> int:
    with session_scope(settings.effective_database_url) as session:
        return session.query(Page.id).filter(Page.batch_id == batch_id, Page.seq == seq).scalar()


@pytest.mark.slow
def test_a_batch_is_filed_by_hand_split_or_discarded(
    station_env: Settings, redis_conn: redis.Redis, tmp_path: Path
) -> None:
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    # A box scanned without a 档号 in its name: two contracts, and a blank back.
    batch_id = drop(
        station_env, redis_conn, "box-7", {"1.jpg": "scan_0003.jpg", "2.jpg": "scan_0005.jpg", "3.jpg": "scan_0006.jpg"}
    )
    url = f"/api/batches/{batch_id}"
    refused = client.post(f"{url}/file", json={"archival_code": CODE}, headers=operator)
    assert (
        refused.status_code == 409 and refused.json()["reason"] == "open_flags" and "page 3" in refused.json()["detail"]
    )
    twice = client.post(
        f"{url}/split",
        json={
            "items": [
                {"archival_code": CODE, "seqs": [1, 2]},
                {"archival_code": "C015-WS·2013-Y-BGS-0022", "seqs": [2]},
            ]
        },
        headers=operator,
    )
    assert twice.status_code == 409 and twice.json()["reason"] == "bad_split"
    assert client.patch(f"{url}/pages/3", json={"excluded": True}, headers=operator).status_code == 200
    second = "C015-WS·2013-Y-BGS-0022"
    early = client.post(f"{url}/split", json={"items": [{"archival_code": CODE, "seqs": [2]}]}, headers=operator)
    assert early.status_code == 409 and early.json()["reason"] == "batch_busy", "its assembly (filing) is due"
    run_queue(redis_conn)
    split = client.post(f"{url}/split", json={"items": [{"archival_code": CODE, "seqs": [2]}]}, headers=operator)
    assert split.status_code == 200, split.text
    assert split.json()["state"] == "done"
    filed = client.post(f"{url}/file", json={"archival_code": second}, headers=operator)  # the page left: 1
    assert filed.status_code == 200, filed.text
    assert [(e["archival_code"], e["batch_pages"]) for e in filed.json()["filing"]["by_hand"]] == [
        (CODE, [2]),
        (second, [1]),
    ]
    assert [h["action"] for h in filed.json()["history"]] == ["split", "file"]
    for code, word in ((CODE, "五四路"), (second, "东方家园")):
        item = client.get("/api/items/" + quote(code), headers=operator).json()
        [text] = pdf_pages_text(client.get(item["pdf_url"], headers=operator).content, tmp_path)
        assert word in text
    assert cli(["audit", "--data", str(station_env.data)]) == 0
    assert client.post(f"{url}/discard", json={"note": "x"}, headers=operator).json()["reason"] == "page_filed"

    # A batch scanned by mistake is discarded: its originals go to quarantine, nothing is deleted.
    junk = drop(station_env, redis_conn, "mistake", {"a.jpg": "scan_0006.jpg"})
    junk_url = f"/api/batches/{junk}"
    assert client.post(f"{junk_url}/discard", json={}, headers=bearer(station_env, "reader", "C015")).status_code == 403
    gone = client.post(f"{junk_url}/discard", json={"note": "scanned twice"}, headers=operator)
    assert gone.status_code == 200 and gone.json()["state"] == "discarded"
    with session_scope(station_env.effective_database_url) as session:
        kept = intake.quarantine_path(station_env, session.get(Batch, junk)) / "a.jpg"
    assert kept.read_bytes() == (SAMPLE / "scan_0006.jpg").read_bytes()
    assert client.post(f"{junk_url}/discard", json={"note": "scanned twice"}, headers=operator).status_code == 200
    refiled = client.post(
        f"/api/items/{quote(CODE)}/pages", json={"batch_id": junk, "mode": "append"}, headers=operator
    )
    assert refiled.status_code == 409 and refiled.json()["reason"] == "discarded", "a discarded batch files nothing"
    late = client.patch(f"{junk_url}/pages/1", json={"blank": False}, headers=operator)
    assert late.status_code == 409 and late.json()["reason"] == "discarded"


def _bare_batch(url: str) -> int:
    """A batch with one page done, written straight into the catalogue (no OCR needed for this test)."""
    from scanner_service.archive.models import Original

    with session_scope(url) as session:
        batch = Batch(name="bare", state=BatchState.needs_review, source="test", filing={})
        session.add(batch)
        session.flush()
        original = Original(batch_id=batch.id, seq=1, name="a.jpg", stored_name="a.jpg", size=1, sha256="0" * 64)
        session.add(original)
        session.flush()
        session.add(
            Page(
                batch_id=batch.id,
                original_id=original.id,
                seq=1,
                source_index=0,
                state=PageState.done,
                flags=["blank"],
                blank=True,
            )
        )
        return batch.id


def test_two_people_correcting_one_page_lose_nothing(catalogue_url: str) -> None:
    """Compare-and-set on the version: the second writer of the same version is told, not overwritten."""
    from scanner_service.archive.db import migrate

    url = catalogue_url
    migrate(url)
    batch_id = _bare_batch(url)
    one, two = Caller("one", Role.operator), Caller("two", Role.operator)
    with session_scope(url) as first, session_scope(url) as second:
        a, b = first.get(Batch, batch_id), second.get(Batch, batch_id)
        assert a is not None and b is not None
        _ = a.pages, b.pages  # both read version 1
        batch_corrections.correct_page(first, one, a, 1, {"note": "first"}, if_match=None)
        first.commit()
        with pytest.raises(Conflict) as refused:
            batch_corrections.correct_page(second, two, b, 1, {"note": "second"}, if_match=None)
        assert refused.value.reason_code == "stale_version"
        second.rollback()
    with session_scope(url) as session:
        page_row = session.query(Page).filter(Page.batch_id == batch_id).one()
        assert (page_row.correction, page_row.version) == ({"note": "first"}, 2)
        assert [c.who for c in session.query(Correction).all()] == ["one"]
        assert page_row.decision is not None and page_row.decision["blank"] is True, "the station's decision kept"


@pytest.mark.slow
def test_a_correction_made_while_the_page_is_derived_wins(
    station_env: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person turns the page again while a worker derives it with the first turn: the first result is
    stale and is not stored; the page ends as the newer correction says."""
    from scanner_service.station import jobs

    batch_id = drop(station_env, redis_conn, "backs", {"1.jpg": "scan_0006.jpg"})  # a blank back: no OCR needed
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    assert client.patch(f"/api/batches/{batch_id}/pages/1", json={"turn": 90}, headers=operator).status_code == 200
    real = jobs.process_page_image
    turns = []

    def meanwhile(*args: object, **kw: object) -> object:  # fault injection: the second person's PATCH
        choices = kw["choices"]
        turns.append(getattr(choices, "turn", None))
        if len(turns) == 1:
            reply = client.patch(f"/api/batches/{batch_id}/pages/1", json={"turn": 270}, headers=operator)
            assert reply.status_code == 200 and reply.json()["version"] == 3
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs, "process_page_image", meanwhile)
    run_queue(redis_conn)
    assert turns == [90, 270], "derived again with the newer turn"
    detail = client.get(f"/api/batches/{batch_id}", headers=operator).json()
    [only] = detail["page_list"]
    assert (only["state"], only["version"], only["details"]["turn"]) == ("done", 3, 270)
    assert [h["after"] for h in only["history"]] == [{"turn": 90}, {"turn": 270}]


@pytest.mark.slow
def test_a_correction_made_just_after_the_result_is_stored_is_not_lost(
    station_env: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person corrects the page right after the worker stored its result, while its job still runs (so
    the correction queues no job of its own): the page is derived again with it, not left as it was."""
    from scanner_service.station import jobs

    batch_id = drop(station_env, redis_conn, "late", {"1.jpg": "scan_0006.jpg"})  # a blank back
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    url = f"/api/batches/{batch_id}/pages/1"
    assert client.patch(url, json={"turn": 90}, headers=operator).status_code == 200
    real = jobs.claim_assembly
    patched = []

    def meanwhile(*args: object, **kw: object) -> bool:  # fault injection: the PATCH lands in the job's last moment
        if not patched:
            reply = client.patch(url, json={"blank": False}, headers=operator)
            patched.append(reply.json())
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs, "claim_assembly", meanwhile)
    run_queue(redis_conn)
    assert patched and patched[0]["version"] == 3
    [only] = client.get(f"/api/batches/{batch_id}", headers=operator).json()["page_list"]
    assert (only["state"], only["version"], only["blank"], only["correction"]) == (
        "done",
        3,
        False,
        {"turn": 90, "blank": False},
    ), "the late correction was derived"
    assert q.get_queue(redis_conn).job_ids == []


@pytest.mark.slow
def test_a_page_usable_after_filing_is_filed_not_claimed(station_env: Settings, redis_conn: redis.Redis) -> None:
    """A blank accepted and filed without, then found to carry writing: the batch is not filed while the
    page is derived again, then goes to review saying the page is not in the item (the report names the
    pages really in it), and files into it by hand."""
    batch_id = drop(station_env, redis_conn, CODE, {"1.jpg": "scan_0004.jpg", "2.jpg": "scan_0006.jpg"})
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    url = f"/api/batches/{batch_id}"
    assert client.post(f"{url}/accept", json={}, headers=operator).status_code == 200
    run_queue(redis_conn)
    item_url = "/api/items/" + quote(CODE)
    assert client.get(item_url, headers=operator).json()["pages_filed"] == 1
    cleared = client.patch(f"{url}/pages/2", json={"blank": False, "note": "writing on it"}, headers=operator)
    assert cleared.json()["state"] == "queued"
    for how, body in (
        ("file", {"archival_code": CODE, "mode": "append"}),
        ("split", {"items": [{"archival_code": CODE, "seqs": [1]}]}),
    ):
        busy = client.post(f"{url}/{how}", json=body, headers=operator)
        assert busy.status_code == 409 and busy.json()["reason"] == "batch_busy", busy.text
        assert "page(s) 2" in busy.json()["detail"]
    run_queue(redis_conn)
    detail = client.get(url, headers=operator).json()
    assert detail["state"] == "needs_review"
    assert [(i["archival_code"], i["batch_pages"]) for i in detail["filing"]["items"]] == [(CODE, [1])]
    [problem] = detail["filing"]["problems"]
    assert problem["code"] == "partly_filed" and problem["page"] == 2 and "mode append" in problem["message"]
    accepted = client.post(f"{url}/accept", json={"note": "read it"}, headers=operator)  # its flags, looked at
    assert accepted.status_code == 200
    assert page(accepted.json(), 2)["correction"]["note"] == "writing on it", "the page's own note kept"
    assert [(h["action"], h["note"]) for h in page(accepted.json(), 2)["history"]][-1] == ("accept", "read it")
    run_queue(redis_conn)
    assert [p["code"] for p in client.get(url, headers=operator).json()["filing"]["problems"]] == ["partly_filed"]
    filed = client.post(f"{url}/file", json={"archival_code": CODE, "mode": "append"}, headers=operator)
    assert filed.status_code == 200, filed.text
    assert filed.json()["state"] == "done" and filed.json()["filing"]["by_hand"][0]["batch_pages"] == [2]
    assert client.get(item_url, headers=operator).json()["pages_filed"] == 2


@pytest.mark.slow
def test_a_correction_whose_queueing_failed_is_not_stuck(station_env: Settings, redis_conn: redis.Redis) -> None:
    """Redis down when a correction is committed (the answer is an error): the same request again queues
    what the first left undone; and if nobody retries, the watcher's sweep does."""
    batch_id = drop(station_env, redis_conn, "backs", {"1.jpg": "scan_0006.jpg", "2.jpg": "scan_0006.jpg"})
    operator = bearer(station_env, "operator", "C015")
    client = TestClient(create_app(station_env))
    # Fault injection: the API's Redis is a closed port.
    down = TestClient(
        create_app(station_env.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})),
        raise_server_exceptions=False,
    )
    url = f"/api/batches/{batch_id}"
    queue = q.get_queue(redis_conn)
    assert down.patch(f"{url}/pages/1", json={"note": "torn"}, headers=operator).status_code == 500
    assert client.patch(f"{url}/pages/1", json={"note": "torn"}, headers=operator).json()["version"] == 2
    assert queue.job_ids == [q.assembly_job_id(batch_id)], "the retry queued the assembly the first claimed"
    run_queue(redis_conn)

    assert down.patch(f"{url}/pages/2", json={"note": "torn too"}, headers=operator).status_code == 500
    assert down.patch(f"{url}/pages/1", json={"blank": False}, headers=operator).status_code == 500
    assert queue.job_ids == []
    Watcher(station_env, redis_conn).sweep()
    assert queue.job_ids == [q.page_job_id(_page_id(station_env, batch_id, 1))]
    run_queue(redis_conn)
    detail = client.get(url, headers=operator).json()
    assert [(p["state"], p["blank"], p["correction"].get("note")) for p in detail["page_list"]] == [
        ("done", False, "torn"),
        ("done", True, "torn too"),
    ]
    with session_scope(station_env.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None and batch.state == BatchState.needs_review and not batch.assembly_queued
    Watcher(station_env, redis_conn).sweep()
    assert queue.job_ids == [], "a settled batch is not assembled again"

    assert down.patch(f"{url}/pages/2", json={"note": "torn, 2"}, headers=operator).status_code == 500
    Watcher(station_env, redis_conn).sweep()
    assert queue.job_ids == [q.assembly_job_id(batch_id)], "a claimed assembly of a settled batch, queued"


@pytest.mark.slow
def test_a_batch_is_not_discarded_while_it_is_assembled(
    station_env: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discard while the assembly runs (it files the batch) is refused; the batch ends as the assembly
    settles it, never discarded-then-undone."""
    from scanner_service.archive import filing

    batch_id = drop(station_env, redis_conn, "backs", {"1.jpg": "scan_0006.jpg"})
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    url = f"/api/batches/{batch_id}"
    assert client.patch(f"{url}/pages/1", json={"note": "torn"}, headers=operator).status_code == 200
    refused = client.post(f"{url}/discard", json={}, headers=operator)
    assert refused.status_code == 409 and refused.json()["reason"] == "batch_busy", "its assembly is queued"
    real, answers = filing.auto_file, []

    def meanwhile(*args: object, **kw: object) -> object:  # fault injection: a discard while it files
        answers.append(client.post(f"{url}/discard", json={}, headers=operator).json().get("reason"))
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(filing, "auto_file", meanwhile)
    run_queue(redis_conn)
    assert answers == ["batch_busy"]
    assert client.get(url, headers=operator).json()["state"] == "needs_review"
    monkeypatch.setattr(filing, "auto_file", real)
    gone = client.post(f"{url}/discard", json={}, headers=operator)
    assert gone.status_code == 200 and gone.json()["state"] == "discarded", "once assembled, it may be discarded"


def test_the_station_decision_is_never_overwritten_by_a_correction(catalogue_url: str) -> None:
    """A page's first run stores the station's decision after a person read the page and before their
    correction is written: the decision stays. A turn before the page has a decision is refused."""
    from sqlalchemy import update

    from scanner_service.archive.db import migrate

    migrate(catalogue_url)
    batch_id = _bare_batch(catalogue_url)
    with session_scope(catalogue_url) as session:
        session.execute(update(Page).where(Page.batch_id == batch_id).values(state=PageState.queued))
    person = Caller("one", Role.operator)
    decided = {"blank": True, "flags": ["blank"], "details": {"turn": 90}, "confidence": None}
    with session_scope(catalogue_url) as api:
        batch = api.get(Batch, batch_id)
        assert batch is not None and batch.pages[0].decision is None  # read while the page is queued
        with pytest.raises(Conflict) as refused:
            batch_corrections.correct_page(api, person, batch, 1, {"turn": 90}, if_match=None)
        assert refused.value.reason_code == "not_processed" and "not been processed yet" in refused.value.message
        with session_scope(catalogue_url) as worker:  # the first run commits meanwhile
            worker.execute(update(Page).where(Page.batch_id == batch_id).values(state=PageState.done, decision=decided))
        batch_corrections.correct_page(api, person, batch, 1, {"note": "torn"}, if_match=None)
    with session_scope(catalogue_url) as session:
        row = session.query(Page).filter(Page.batch_id == batch_id).one()
        assert (row.decision, row.correction) == (decided, {"note": "torn"}), "the station's decision kept"


@pytest.mark.slow
def test_a_page_count_off_is_accepted(station_env: Settings, redis_conn: redis.Redis, tmp_path: Path) -> None:
    """An item filed with fewer pages than its 页数 sends the batch to review; a person who checked the
    paper accepts it and the batch is done; the history says who."""
    catalogue = tmp_path / "目录.csv"
    catalogue.write_text(f"序号,档号,题名,页数\n1,{CODE},农村土地承包经营权合同,2\n", encoding="utf-8")
    assert cli(["catalogue", "import", str(catalogue), "--data", str(station_env.data)]) == 0
    batch_id = drop(station_env, redis_conn, CODE, {"1.jpg": "scan_0004.jpg"})
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    url = f"/api/batches/{batch_id}"
    detail = client.get(url, headers=operator).json()
    assert detail["state"] == "needs_review" and detail["filing"]["items"][0]["page_check"] == "missing_pages"
    accepted = client.post(f"{url}/accept", json={"note": "page 2 is lost, see the register"}, headers=operator)
    assert accepted.status_code == 200
    run_queue(redis_conn)
    detail = client.get(url, headers=operator).json()
    assert detail["state"] == "done", detail["filing"]
    assert [(h["action"], h["after"], h["note"]) for h in detail["history"]] == [
        ("accept", {"page_checks": {CODE: "missing_pages"}}, "page 2 is lost, see the register")
    ]


@pytest.mark.slow
def test_a_batch_is_filed_only_by_who_may_work_in_its_fonds(station_env: Settings, redis_conn: redis.Redis) -> None:
    """A box with no 档号 of its own whose sheets name C015 items: an operator of C016 sees it (a batch of
    no fonds) but may not accept, file or discard it. Filing into an item takes the batch rules too."""
    box = drop(station_env, redis_conn, "box-8", {"1.jpg": "scan_0006.jpg"})
    with session_scope(station_env.effective_database_url) as session:
        batch = session.get(Batch, box)
        assert batch is not None
        batch.filing = {**batch.filing, "proposed": [{"archival_code": CODE, "batch_pages": [1]}]}  # as sheets say
    client = TestClient(create_app(station_env))
    other = bearer(station_env, "operator", "C016")
    url = f"/api/batches/{box}"
    assert client.get(url, headers=other).status_code == 200
    for how, body in (
        ("accept", {}),
        ("discard", {}),
        ("file", {"archival_code": "C016-WS·2013-Y-BGS-0001"}),
        ("split", {"items": [{"archival_code": "C016-WS·2013-Y-BGS-0001", "seqs": [1]}]}),
    ):
        refused = client.post(f"{url}/{how}", json=body, headers=other)
        assert refused.status_code == 403 and "C015" in refused.json()["detail"], (how, refused.text)
    assert client.get(url, headers=other).json()["state"] == "needs_review", "nothing was done"

    ours = drop(station_env, redis_conn, CODE, {"1.jpg": "scan_0004.jpg", "2.jpg": "scan_0006.jpg"})  # blank open
    unseen = client.post(
        "/api/items/" + quote("C016-WS·2013-Y-BGS-0001") + "/pages", json={"batch_id": ours}, headers=other
    )
    assert unseen.status_code == 404 and unseen.json()["detail"] == f"No batch {ours}."
    operator = bearer(station_env, "operator", "C015")
    waiting = client.post("/api/items/" + quote(CODE) + "/pages", json={"batch_id": ours}, headers=operator)
    assert waiting.status_code == 409 and waiting.json()["reason"] == "open_flags", waiting.text

    # A page left out is not found in search (the batch's index says so, wherever it is rebuilt).
    def found() -> list[tuple[int, int]]:
        hits = client.get("/api/search", params={"q": "东部风景"}, headers=operator).json()["hits"]
        return [(h["batch_id"], h["page"]) for h in hits]

    assert found() == [(ours, 1)]
    assert client.patch(f"/api/batches/{ours}/pages/1", json={"excluded": True}, headers=operator).status_code == 200
    run_queue(redis_conn)
    assert found() == []


def test_an_assembly_failed_for_good_is_not_queued_again_by_the_sweep(
    station_env: Settings, redis_conn: redis.Redis
) -> None:
    """The watcher queues a claimed assembly with no job, but not one that failed for good (it says why)."""
    from types import SimpleNamespace

    from scanner_service.station import jobs

    batch_id = _bare_batch(station_env.effective_database_url)
    with session_scope(station_env.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        batch.assembly_queued = True
    jobs.assembly_failed_for_good(
        SimpleNamespace(should_retry=False, args=[batch_id]), None, None, OSError("disk"), None
    )
    Watcher(station_env, redis_conn).sweep()
    assert q.get_queue(redis_conn).job_ids == []
    with session_scope(station_env.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None and batch.state == BatchState.failed and "disk" in (batch.error or "")


@pytest.mark.slow
def test_a_batch_filed_from_its_item_is_written_down_in_the_batch(
    station_env: Settings, redis_conn: redis.Redis
) -> None:
    """POST /api/items/{档号}/pages files as POST /api/batches/{id}/file does: the batch says where its
    pages went (no stale proposal or problems), takes the 档号, and its history has the filing."""
    batch_id = drop(station_env, redis_conn, "box-9", {"1.jpg": "scan_0004.jpg"})
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    url = f"/api/batches/{batch_id}"
    before = client.get(url, headers=operator).json()
    assert before["archival_code"] is None and "by_hand" not in before["filing"], "no 档号: filed by hand"
    filed = client.post(f"/api/items/{quote(CODE)}/pages", json={"batch_id": batch_id}, headers=operator)
    assert filed.status_code == 200, filed.text
    detail = client.get(url, headers=operator).json()
    assert detail["state"] == "done" and detail["archival_code"] == CODE
    assert detail["filing"]["problems"] == [] and "proposed" not in detail["filing"]
    assert [(e["archival_code"], e["batch_pages"]) for e in detail["filing"]["by_hand"]] == [(CODE, [1])]
    assert [(h["action"], h["who"]) for h in detail["history"]] == [("file", "operator C015")]


def test_an_accept_made_while_the_batch_is_assembled_is_kept(
    station_env: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An accept committed while the assembly files stays in the batch's report and keeps the claim it made
    (the next assembly, which files the batch); filing it by hand meanwhile is refused (batch_busy)."""
    from scanner_service.archive import filing
    from scanner_service.station import jobs

    url_db = station_env.effective_database_url
    batch_id = _bare_batch(url_db)
    client = TestClient(create_app(station_env))
    admin = bearer(station_env, "admin")
    with session_scope(url_db) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        batch.assembly_queued = True  # claimed: its job runs
        batch.error = "The scanner jammed on the last sheet."  # for a person to accept
    real, answers = filing.auto_file, []

    def meanwhile(*args: object, **kw: object) -> object:  # fault injection: people act while it files
        for path in ("file", "split"):
            body = {"archival_code": CODE} if path == "file" else {"items": [{"archival_code": CODE, "seqs": [1]}]}
            answers.append(client.post(f"/api/batches/{batch_id}/{path}", json=body, headers=admin).json()["reason"])
        report = real(*args, **kw)  # type: ignore[arg-type]
        accepted = client.post(f"/api/batches/{batch_id}/accept", json={"note": "a back"}, headers=admin)
        assert accepted.status_code == 200, accepted.text
        return report

    monkeypatch.setattr(filing, "auto_file", meanwhile)
    jobs.assemble_batch(batch_id)
    assert answers == ["batch_busy", "batch_busy"]
    with session_scope(url_db) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        assert batch.pages[0].correction == {"accepted": ["blank"]}
        assert batch.filing["reviewed"]["error"] == batch.error and batch.filing["reviewed"]["by"] == "admin all"
        assert batch.assembly_queued, "the accept's assembly is still due"
    assert q.get_queue(redis_conn).job_ids == [q.assembly_job_id(batch_id)], "queued by the accept"
    assert client.get(f"/api/batches/{batch_id}", headers=admin).json()["assembling"], "what batch_busy waits for"
    jobs.assemble_batch(batch_id)
    assert not client.get(f"/api/batches/{batch_id}", headers=admin).json()["assembling"]


def test_a_crop_off_the_page_fails_the_page_at_once(station_env: Settings, redis_conn: redis.Redis) -> None:
    """A batch page cropped to a box with nothing of the page in it fails with the reason (bad_crop),
    as an item's page does: not retried with back-off, as if the station had a passing fault."""
    from sqlalchemy import update

    from scanner_service.station import jobs

    url_db = station_env.effective_database_url
    batch_id = _bare_batch(url_db)
    page_id = _page_id(station_env, batch_id, 1)
    master = Layout.of(station_env).original(batch_id, "a.jpg")
    master.parent.mkdir(parents=True, exist_ok=True)
    master.write_bytes((SAMPLE / "scan_0006.jpg").read_bytes())
    decided = {"blank": True, "flags": ["blank"], "details": {"turn": 0}, "confidence": None}
    with session_scope(url_db) as session:
        session.execute(
            update(Page)
            .where(Page.id == page_id)
            .values(state=PageState.queued, decision=decided, correction={"crop": [90000, 90000, 90100, 90100]})
        )
    assert jobs.process_page(page_id) == "failed"
    with session_scope(url_db) as session:
        row = session.get(Page, page_id)
        assert row is not None and (row.state, row.error_code) == (PageState.failed, "bad_crop")
        assert "Crop the page again" in (row.error or "")


def test_a_page_job_failed_for_good_leaves_a_newer_correction_alone(station_env: Settings) -> None:
    """The page job's failure callback fails the page only at the version its derivation read, and only
    while it is queued or processing: a correction made since (queued again) or a page done is left alone."""
    from types import SimpleNamespace

    from sqlalchemy import update

    from scanner_service.station import jobs

    url_db = station_env.effective_database_url
    batch_id = _bare_batch(url_db)
    page_id = _page_id(station_env, batch_id, 1)

    def failed_for_good(version: int) -> None:
        job = SimpleNamespace(should_retry=False, args=[page_id], get_meta=lambda: {"page": [page_id, version]})
        jobs.page_failed_for_good(job, None, RuntimeError, RuntimeError("the engine crashed"), None)

    def state() -> tuple[PageState, int]:
        with session_scope(url_db) as session:
            row = session.get(Page, page_id)
            assert row is not None
            return row.state, row.version

    failed_for_good(1)
    assert state() == (PageState.done, 1), "a page done is not failed"
    with session_scope(url_db) as session:  # a person corrected it while the job ran: queued at version 2
        session.execute(update(Page).where(Page.id == page_id).values(state=PageState.queued, version=2))
    failed_for_good(1)
    assert state() == (PageState.queued, 2), "the newer correction is derived, not failed"
    failed_for_good(2)
    assert state() == (PageState.failed, 2)


@pytest.mark.slow
def test_a_page_split_into_another_item_is_not_reported_missing(station_env: Settings, redis_conn: redis.Redis) -> None:
    """A batch named by its 档号 split by hand (page 2 into another item): once its last flag is accepted,
    its assembly finds page 2 filed (elsewhere), not missing from its own item."""
    other = "C015-WS·2013-Y-BGS-0022"
    batch_id = drop(
        station_env, redis_conn, CODE, {"1.jpg": "scan_0003.jpg", "2.jpg": "scan_0005.jpg", "3.jpg": "scan_0006.jpg"}
    )
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    url = f"/api/batches/{batch_id}"
    parts = [{"archival_code": CODE, "seqs": [1]}, {"archival_code": other, "seqs": [2]}]
    split = client.post(f"{url}/split", json={"items": parts}, headers=operator)
    assert split.status_code == 200, split.text
    assert client.post(f"{url}/accept", json={"note": "a blank back"}, headers=operator).status_code == 200
    run_queue(redis_conn)
    detail = client.get(url, headers=operator).json()
    assert detail["filing"]["problems"] == [], detail["filing"]
    assert detail["state"] == "done"
