"""The archive end to end: filing under 档号, items API (Range, ETag), search, roles, access log, events,
rescans, the page-count check and fixity — real RQ jobs, real OCR, real Redis, real catalogue."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from urllib.parse import quote

import pikepdf
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from scanner_service.api.app import create_app
from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ApiToken, Batch, BatchState
from scanner_service.archive.tokens import create_token
from scanner_service.cli import main as cli
from scanner_service.settings import Settings
from scanner_service.station.watcher import Watcher
from tests.conftest import SAMPLE, copy_sample
from tests.test_pipeline import run_queue

pytestmark = pytest.mark.slow

CODE = "C015-WS·2013-Y-BGS-0001"
URL = "/api/items/" + quote(CODE)


def bearer(settings: Settings, role: str = "admin", fonds: str | None = None) -> dict[str, str]:
    with session_scope(settings.effective_database_url) as session:
        secret = create_token(session, role=role, fonds=fonds, name=f"{role} {fonds or 'all'}")
    return {"Authorization": f"Bearer {secret}"}


def scan(settings: Settings, conn: redis.Redis, name: str, pages: list[str]) -> Batch:
    """Drop a batch folder into the inbox and run it through the real jobs; the batch as it ends."""
    folder = settings.inbox / name
    copy_sample(folder, pages)
    (folder / ".done").touch()
    watcher = Watcher(settings, conn)
    watcher.poll()
    run_queue(conn, watcher)
    with session_scope(settings.effective_database_url) as session:
        batch = session.query(Batch).filter(Batch.name == name).order_by(Batch.id.desc()).first()
        assert batch is not None
        _ = batch.pages
        return batch


def accept(settings: Settings, conn: redis.Redis, batch_id: int) -> Batch:
    """A person accepts the batch's open flags (POST /api/batches/{id}/accept) and the station files it as
    its filing says (a batch with a flag, a blank back, is not filed before); the batch as it ends."""
    reply = TestClient(create_app(settings)).post(
        f"/api/batches/{batch_id}/accept", json={"note": "checked"}, headers=bearer(settings, "operator")
    )
    assert reply.status_code == 200, reply.text
    run_queue(conn)
    with session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        _ = batch.pages
        return batch


@pytest.fixture
def client(station_env: Settings) -> TestClient:
    return TestClient(create_app(station_env))


@pytest.fixture
def filed(station_env: Settings, redis_conn: redis.Redis) -> Batch:
    # In name order: scan_0001, a land contract (承包方 江永); scan_0003, another text page; scan_0006, a blank back.
    # The blank back is flagged: the batch is filed once a person accepted it.
    batch = scan(station_env, redis_conn, CODE, ["scan_0001.jpg", "scan_0006.jpg", "scan_0003.jpg"])
    assert batch.state == BatchState.needs_review and batch.filing["items"] == [] and batch.filing["proposed"]
    return accept(station_env, redis_conn, batch.id)


def test_a_batch_named_by_its_code_is_filed_and_served(filed: Batch, client: TestClient, station_env: Settings) -> None:
    assert filed.state in (BatchState.done, BatchState.needs_review), filed.error
    assert filed.archival_code == CODE and filed.filing["items"][0]["archival_code"] == CODE
    admin = bearer(station_env)
    item = client.get(URL, headers=admin).json()
    assert item["pages_filed"] == 2 and item["fonds"] == "C015" and item["year"] == 2013
    folder = Layout.of(station_env).archive / "C015" / "WS" / "2013" / CODE
    masters = sorted(p.name for p in folder.glob(f"{CODE}-*"))
    assert masters == [f"{CODE}-0001.jpg", f"{CODE}-0002.jpg"], "masters: 档号 + page serial, blank back left out"
    assert (folder / masters[0]).read_bytes() == (
        Layout.of(station_env).spool / str(filed.id) / "originals" / "scan_0001.jpg"
    ).read_bytes()

    reply = client.get(f"{URL}/pdf", headers=admin)
    assert reply.status_code == 200 and reply.content.startswith(b"%PDF")
    with pikepdf.open(io.BytesIO(reply.content)) as pdf:
        assert len(pdf.pages) == 2
    etag = reply.headers["etag"]
    part = client.get(f"{URL}/pdf", headers={**admin, "Range": "bytes=0-1023"})
    assert part.status_code == 206 and len(part.content) == 1024 and part.content == reply.content[:1024]
    assert part.headers["content-range"] == f"bytes 0-1023/{len(reply.content)}"
    assert client.get(f"{URL}/pdf", headers={**admin, "If-None-Match": etag}).status_code == 304
    # The DA/T 13 form of the same code names the same item.
    other_form = quote("C015-WS·2013·Y·BGS-0001")
    assert client.get(f"/api/items/{other_form}", headers=admin).json()["archival_code"] == CODE

    text = client.get(f"{URL}/pages/1/text", headers=admin)
    assert "江永" in text.text.replace(" ", "")
    hocr = client.get(f"{URL}/pages/1/hocr", headers=admin)
    assert hocr.status_code == 200 and 'class="ocr_line"' in hocr.text and "bbox" in hocr.text
    thumb = client.get(f"{URL}/pages/2/thumbnail", headers=admin)
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    assert client.get(f"{URL}/pages/3/text", headers=admin).status_code == 404

    found = client.get("/api/search", params={"q": "江永"}, headers=admin).json()
    assert found["total"] >= 1
    hit = found["hits"][0]
    assert (hit["archival_code"], hit["page"]) == (CODE, 1) and "<mark>" in hit["snippet"]


def test_readers_see_only_open_items_of_their_fonds_and_every_view_is_logged(
    filed: Batch, client: TestClient, station_env: Settings
) -> None:
    outsider = bearer(station_env, "reader", "C999")
    reader = bearer(station_env, "reader", "C015")
    archivist = bearer(station_env, "archivist", "C015")
    for headers in (outsider, reader):  # not marked open yet: hidden even from the fonds' own reader
        assert client.get(f"{URL}/pdf", headers=headers).status_code == 404
        assert client.get("/api/search", params={"q": "江永"}, headers=headers).json()["total"] == 0
    assert client.get("/api/batches", headers=reader).status_code == 403

    opened = client.put(URL, json={"open_status": " Open ", "title": "农村土地承包经营权合同"}, headers=archivist)
    assert opened.status_code == 200 and opened.json()["open_status"] == "开放"
    folder = Layout.of(station_env).archive / "C015" / "WS" / "2013" / CODE
    assert '"title": "农村土地承包经营权合同"' in (folder / "item.json").read_text(encoding="utf-8")
    assert client.get(f"{URL}/pdf", headers=outsider).status_code == 404, "another fonds' reader never sees it"
    got = client.get(f"{URL}/pdf", params={"purpose": "土地承包纠纷"}, headers=reader)
    assert got.status_code == 200
    assert client.get("/api/search", params={"q": "江永"}, headers=reader).json()["hits"][0]["title"].startswith("农村")

    assert client.put(URL, json={"classification": "秘密"}, headers=archivist).status_code == 200
    assert client.get(f"{URL}/pdf", headers=reader).status_code == 404, "a 密级 hides it again"
    with session_scope(station_env.effective_database_url) as session:
        reader_id = session.query(ApiToken).filter(ApiToken.name == "reader C015").one().id
    assert (
        client.post(f"{URL}/grants", json={"token_id": reader_id, "reason": "批准利用"}, headers=archivist).status_code
        == 201
    )
    assert client.get(f"{URL}/pages/1/text", headers=reader).status_code == 200

    assert client.get("/api/access-log", headers=reader).status_code == 403
    log = client.get("/api/access-log", headers=archivist).json()
    assert [(r["action"], r["who"], r["page"]) for r in log] == [
        ("page_text", "reader C015", 1),
        ("pdf", "reader C015", None),
    ]
    assert log[1]["purpose"] == "土地承包纠纷" and log[1]["archival_code"] == CODE
    exported = client.get("/api/access-log", params={"format": "csv"}, headers=archivist)
    rows = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert rows[0][:5] == ["时间", "利用者", "角色", "操作", "档号"] and len(rows) == 3


def test_events_tell_a_downstream_system_what_is_new(filed: Batch, client: TestClient, station_env: Settings) -> None:
    admin = bearer(station_env)
    first = client.get("/api/events", headers=admin).json()
    assert [(e["kind"], e["archival_code"]) for e in first["events"]] == [("item_filed", CODE)]
    again = client.get("/api/events", params={"since": first["next_since"]}, headers=admin).json()
    assert again["events"] == [] and again["next_since"] == first["next_since"]
    client.put(URL, json={"pages": 2}, headers=admin)
    later = client.get("/api/events", params={"since": first["next_since"]}, headers=admin).json()
    assert [e["kind"] for e in later["events"]] == ["item_described"]
    assert client.get("/api/events", headers=bearer(station_env, "reader", "C999")).json()["events"] == []


def test_a_rescan_appends_inserts_and_replaces_pages_in_order(
    filed: Batch, client: TestClient, station_env: Settings, redis_conn: redis.Redis
) -> None:
    operator = bearer(station_env, "operator", "C015")
    rescan = scan(station_env, redis_conn, "rescan", ["scan_0002.jpg", "scan_0004.jpg", "scan_0005.jpg"])
    # Filing a second batch "as new" into an item that has pages is refused, not silently merged.
    refused = client.post(f"{URL}/pages", json={"batch_id": rescan.id}, headers=operator)
    assert refused.status_code == 409 and refused.json()["reason"] == "item_has_pages"
    insert = client.post(
        f"{URL}/pages", json={"batch_id": rescan.id, "pages": [1], "mode": "insert", "at": 2}, headers=operator
    )
    assert insert.status_code == 200 and insert.json()["pages"] == [2] and insert.json()["pages_filed"] == 3
    item = client.get(URL, headers=operator).json()
    assert [(p["page"], p["batch_id"], p["batch_page"]) for p in item["page_list"]] == [
        (1, filed.id, 1),
        (2, rescan.id, 1),
        (3, filed.id, 2),
    ]
    replace = client.post(
        f"{URL}/pages", json={"batch_id": rescan.id, "pages": [2], "mode": "replace", "replace": [1]}, headers=operator
    )
    assert replace.status_code == 200
    item = client.get(URL, headers=operator).json()
    assert [(p["batch_id"], p["batch_page"]) for p in item["page_list"]] == [
        (rescan.id, 2),
        (rescan.id, 1),
        (filed.id, 2),
    ]
    folder = Layout.of(station_env).archive / "C015" / "WS" / "2013" / CODE
    assert sorted(p.name for p in folder.glob(f"{CODE}-*")) == [f"{CODE}-000{n}.jpg" for n in (1, 2, 3)]
    assert (folder / f"{CODE}-0003.jpg").read_bytes() == (
        Layout.of(station_env).spool / str(filed.id) / "originals" / "scan_0003.jpg"
    ).read_bytes()
    kept = list((folder / "replaced").rglob("*.jpg"))
    assert len(kept) == 1, "a replaced master is kept, never deleted"
    with pikepdf.open(folder / f"{CODE}.pdf") as pdf:
        assert len(pdf.pages) == 3
    other = bearer(station_env, "operator", "C016")
    assert client.post(f"{URL}/pages", json={"batch_id": rescan.id, "mode": "append"}, headers=other).status_code == 403
    assert client.get(f"/api/batches/{rescan.id}", headers=other).status_code == 404, "a batch of another fonds"
    unsaid = client.post(
        f"{URL}/pages", json={"batch_id": rescan.id, "pages": [3], "mode": "replace"}, headers=operator
    )
    assert unsaid.status_code == 409 and unsaid.json()["reason"] == "bad_position", "replace must say which pages"

    # Inserting at the front shifts every page: each master is renamed, none is lost or overwritten.
    before = {p.name: p.read_bytes() for p in folder.glob(f"{CODE}-*")}
    twice = client.post(f"{URL}/pages", json={"batch_id": rescan.id, "pages": [1], "mode": "append"}, headers=operator)
    assert twice.status_code == 409 and twice.json()["reason"] == "page_already_filed", "one page, one 档号"
    front = client.post(
        f"{URL}/pages", json={"batch_id": rescan.id, "pages": [3], "mode": "insert", "at": 1}, headers=operator
    )
    assert front.status_code == 200, front.text
    item = client.get(URL, headers=operator).json()
    assert [(p["batch_id"], p["batch_page"]) for p in item["page_list"]] == [
        (rescan.id, 3),
        (rescan.id, 2),
        (rescan.id, 1),
        (filed.id, 2),
    ]
    after = {p.name: p.read_bytes() for p in folder.glob(f"{CODE}-*")}
    assert [after[f"{CODE}-000{n}.jpg"] for n in (2, 3, 4)] == [before[f"{CODE}-000{n}.jpg"] for n in (1, 2, 3)]
    assert not list(folder.glob(".staging-*")), "nothing left half-done"
    assert cli(["audit", "--data", str(station_env.data)]) == 0, "moved masters keep their recorded digests"


def test_page_count_against_the_catalogue_flags_missing_pages(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient, tmp_path: Path
) -> None:
    catalogue = tmp_path / "目录.csv"
    catalogue.write_text(
        f"序号,档号,文号,责任者,题名,日期,密级,页数,备注\n1,{CODE},,东部风景社区,农村土地承包经营权合同,20080107,,3,\n",
        encoding="utf-8",
    )
    assert cli(["catalogue", "import", str(catalogue), "--data", str(station_env.data)]) == 0
    batch = scan(station_env, redis_conn, CODE, ["scan_0001.jpg", "scan_0003.jpg"])
    assert batch.state == BatchState.needs_review
    item = client.get(URL, headers=bearer(station_env)).json()
    assert (item["pages"], item["pages_filed"], item["page_check"]) == (3, 2, "missing_pages")
    listed = client.get("/api/items", params={"page_check": "missing_pages"}, headers=bearer(station_env)).json()
    assert [i["archival_code"] for i in listed] == [CODE]


def test_a_fonds_closed_to_new_items_sends_an_unknown_code_to_review(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient
) -> None:
    admin = bearer(station_env)
    assert client.put("/api/fonds/C015", json={"allow_new_items": False}, headers=admin).status_code == 200
    batch = scan(station_env, redis_conn, CODE, ["scan_0001.jpg"])
    assert batch.state == BatchState.needs_review and batch.archival_code is None
    assert [p["code"] for p in batch.filing["problems"]] == ["not_in_catalogue"]
    assert client.get(URL, headers=admin).status_code == 404


def test_audit_reports_a_changed_and_a_missing_file(
    filed: Batch, station_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data", str(station_env.data)]
    assert cli(["audit", *data]) == 0
    assert ", OK," in capsys.readouterr().out
    folder = Layout.of(station_env).archive / "C015" / "WS" / "2013" / CODE
    master = folder / f"{CODE}-0002.jpg"
    raw = bytearray(master.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    master.write_bytes(bytes(raw))
    (folder / f"{CODE}.pdf").unlink()
    shutil.copy(folder / f"{CODE}-0001.jpg", folder / "stray.jpg")
    assert cli(["audit", *data]) == 11
    out = capsys.readouterr().out
    assert f"CHANGED  C015/WS/2013/{CODE}/{CODE}-0002.jpg" in out
    assert f"MISSING  C015/WS/2013/{CODE}/{CODE}.pdf" in out
    assert "UNTRACKED C015/WS/2013/" in out and "1 changed, 1 missing" in out


def test_the_check_of_the_issue_on_a_postgresql_catalogue(
    station_env: Settings, postgres_url: str, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scanner_service.archive.db import migrate
    from scanner_service.settings import build_settings

    monkeypatch.setenv("SCANSTATION_DATABASE_URL", postgres_url)
    settings = build_settings()
    migrate(settings.effective_database_url)
    scan(settings, redis_conn, CODE, ["scan_0001.jpg", "scan_0003.jpg"])
    client = TestClient(create_app(settings))
    admin = bearer(settings)
    assert client.get(f"{URL}/pdf", headers={**admin, "Range": "bytes=0-1023"}).status_code == 206
    hits = client.get("/api/search", params={"q": "江永"}, headers=admin).json()["hits"]
    assert [(h["archival_code"], h["page"]) for h in hits] == [(CODE, 1)]
    assert client.get(f"{URL}/pdf", headers=bearer(settings, "reader", "C999")).status_code == 404


def _catalogue(tmp_path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path = tmp_path / "归档文件目录.csv"
    lines = ["序号,档号,题名,页数"] + [f"{n},{code},{title},{pages}" for n, (code, title, pages) in enumerate(rows, 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _sheet_images(settings: Settings, tmp_path: Path) -> list[Image.Image]:
    """Print the separator sheets of fonds C015 and 'scan' them: the PDF rendered at 300 dpi."""
    from pdf2image import convert_from_path

    out = tmp_path / "sheets.pdf"
    assert cli(["separators", "--fonds", "C015", "--out", str(out), "--data", str(settings.data)]) == 0
    return convert_from_path(str(out), dpi=300, grayscale=True)


SHEET_ITEMS = [("C015-WS·2013-Y-BGS-0002", "关于土地承包的通知", 2), ("C015-WS·2013-Y-BGS-0003", "养老保险名册", 1)]


def _stack(settings: Settings, name: str, sheets: list[Image.Image], parts: list[object]) -> None:
    """Write a scanned stack into the inbox: sheet images and sample pages, in name order."""
    folder = settings.inbox / name
    folder.mkdir(parents=True)
    for n, part in enumerate(parts, start=1):
        if isinstance(part, int):
            sheets[part].save(folder / f"{n:03d}.png", dpi=(300, 300))
        else:
            shutil.copy(SAMPLE / str(part), folder / f"{n:03d}.jpg")
    (folder / ".done").touch()


def _run(settings: Settings, conn: redis.Redis, name: str) -> Batch:
    watcher = Watcher(settings, conn)
    watcher.poll()
    run_queue(conn, watcher)
    with session_scope(settings.effective_database_url) as session:
        batch = session.query(Batch).filter(Batch.name == name).one()
        _ = batch.pages
        return batch


def test_separator_sheets_split_one_run_into_items(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient, tmp_path: Path
) -> None:
    assert cli(["catalogue", "import", str(_catalogue(tmp_path, SHEET_ITEMS)), "--data", str(station_env.data)]) == 0
    sheets = _sheet_images(station_env, tmp_path)
    _stack(station_env, "run1", sheets, [0, "scan_0001.jpg", "scan_0003.jpg", 1, "scan_0004.jpg"])
    batch = _run(station_env, redis_conn, "run1")
    assert [(i["archival_code"], i["batch_pages"]) for i in batch.filing["items"]] == [
        (SHEET_ITEMS[0][0], [2, 3]),
        (SHEET_ITEMS[1][0], [5]),
    ]
    assert [p.seq for p in batch.pages if "separator" in p.flags] == [1, 4]
    admin = bearer(station_env)
    first = client.get("/api/items/" + quote(SHEET_ITEMS[0][0]), headers=admin).json()
    assert (first["title"], first["pages_filed"], first["page_check"]) == ("关于土地承包的通知", 2, None)
    with pikepdf.open(io.BytesIO(client.get(first["pdf_url"], headers=admin).content)) as pdf:
        assert len(pdf.pages) == 2, "the sheets are not in the item's PDF"


def test_a_damaged_or_missing_sheet_sends_the_run_to_review_and_files_nothing(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient, tmp_path: Path
) -> None:
    from tests.test_separator import _blot, _qr_boxes

    assert cli(["catalogue", "import", str(_catalogue(tmp_path, SHEET_ITEMS)), "--data", str(station_env.data)]) == 0
    sheets = _sheet_images(station_env, tmp_path)
    damaged = sheets[1]
    for n, box in enumerate(_qr_boxes(damaged)):
        damaged = _blot(damaged, box, seed=n)
    _stack(station_env, "damaged", [sheets[0], damaged], [0, "scan_0001.jpg", "scan_0003.jpg", 1, "scan_0004.jpg"])
    # The second sheet of this run was lost: its item's page follows the first item's pages.
    _stack(station_env, "missing", sheets, [0, "scan_0001.jpg", "scan_0003.jpg", "scan_0004.jpg"])
    for name, problem in (("damaged", "unreadable_separator"), ("missing", "page_count_mismatch")):
        batch = _run(station_env, redis_conn, name)
        assert batch.state == BatchState.needs_review
        assert problem in [p["code"] for p in batch.filing["problems"]], batch.filing
        assert batch.filing["items"] == [] and batch.filing["proposed"]
    admin = bearer(station_env)
    for code, _, _ in SHEET_ITEMS:
        assert client.get("/api/items/" + quote(code), headers=admin).json()["pages_filed"] == 0


def test_a_volume_arranged_code_is_filed_under_its_volume_and_item(
    station_env: Settings, redis_conn: redis.Redis, client: TestClient
) -> None:
    volume_code = "C015-KU·1998-D30-003-0007"  # 案卷 arrangement: volume 003, item 0007
    batch = scan(station_env, redis_conn, volume_code, ["scan_0005.jpg"])
    assert batch.archival_code == volume_code
    item = client.get("/api/items/" + quote(volume_code), headers=bearer(station_env)).json()
    assert (item["category"], item["year"], item["retention"], item["volume"], item["item"]) == (
        "KU",
        1998,
        "D30",
        3,
        7,
    )
    folder = Layout.of(station_env).archive / "C015" / "KU" / "1998" / volume_code
    assert [p.name for p in folder.glob(f"{volume_code}-*")] == [f"{volume_code}-0001.jpg"]


def test_an_assembly_run_twice_files_once(filed: Batch, client: TestClient, station_env: Settings) -> None:
    from scanner_service.station.jobs import assemble_batch

    assemble_batch(filed.id)  # RQ runs a job again when its worker died after the work was done
    admin = bearer(station_env)
    batch = client.get(f"/api/batches/{filed.id}", headers=admin).json()
    assert [i["archival_code"] for i in batch["filing"]["items"]] == [CODE] and batch["filing"]["problems"] == []
    item = client.get(URL, headers=admin).json()
    assert (item["pages_filed"], item["version"]) == (2, 1)
    assert client.get("/api/search", params={"q": "江永"}, headers=admin).json()["total"] == 1, "no hit twice"
