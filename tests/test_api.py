"""The HTTP API with a real catalogue and Redis: tokens, batch listing, details and the PDF."""

from __future__ import annotations

import io

import pikepdf
import pytest
import redis
from fastapi.testclient import TestClient

from scanner_service.api.app import create_app
from scanner_service.archive.db import session_scope
from scanner_service.archive.models import ApiToken
from scanner_service.archive.tokens import create_token, hash_token
from scanner_service.settings import Settings
from scanner_service.station.watcher import Watcher
from tests.conftest import REAL, copy_sample


@pytest.fixture
def client(station_env: Settings) -> TestClient:
    return TestClient(create_app(station_env))


def token(settings: Settings, role: str = "admin") -> dict[str, str]:
    with session_scope(settings.effective_database_url) as session:
        secret = create_token(session, role=role)
    return {"Authorization": f"Bearer {secret}"}


def test_tokens_are_stored_hashed(station_env: Settings) -> None:
    headers = token(station_env)
    secret = headers["Authorization"].split()[1]
    with session_scope(station_env.effective_database_url) as session:
        [row] = session.query(ApiToken).all()
        assert row.token_hash == hash_token(secret) and secret not in row.token_hash


@pytest.mark.parametrize("path", ["/api/batches", "/api/batches/1", "/api/batches/1/pdf"])
def test_everything_but_healthz_needs_a_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_healthz_needs_a_worker(client: TestClient, station_env: Settings, redis_conn: redis.Redis) -> None:
    from rq import Worker

    from scanner_service.station import queue as q

    reply = client.get("/healthz")
    assert reply.status_code == 503 and reply.json()["workers"] == 0
    worker = Worker([q.get_queue(redis_conn)], connection=redis_conn)
    worker.register_birth()
    try:
        reply = client.get("/healthz")
        assert reply.status_code == 200 and reply.json() == {
            "status": "ok",
            "redis": True,
            "catalogue": True,
            "workers": 1,
        }
    finally:
        worker.register_death()


def test_batch_list_and_detail_show_pages_and_reasons(
    client: TestClient, station_env: Settings, redis_conn: redis.Redis
) -> None:
    folder = station_env.inbox / "C015-WS·2013-Y-BGS-0001"
    copy_sample(folder, ["scan_0001.jpg", "scan_0002.jpg"])
    (folder / "notes.txt").write_text("备注")
    (folder / ".done").touch()
    (station_env.inbox / "invalid.pdf").write_bytes((REAL / "invalid.pdf").read_bytes())
    watcher = Watcher(station_env, redis_conn)
    watcher.poll(now=0)
    watcher.poll(now=10_000)  # the loose file has been quiet long enough (a clock of our own, not the machine's uptime)
    headers = token(station_env, "operator")
    listing = client.get("/api/batches", headers=headers).json()
    assert [b["name"] for b in listing] == ["invalid.pdf", "C015-WS·2013-Y-BGS-0001"]
    bad, good = listing
    assert bad["state"] == "failed" and "invalid.pdf" in bad["error"]
    assert good["state"] == "queued"
    assert good["pages"] == {"total": 2, "done": 0, "blank": 0, "failed": 0}
    detail = client.get(f"/api/batches/{good['id']}", headers=headers).json()
    assert [p["source"] for p in detail["page_list"]] == ["scan_0001.jpg#1", "scan_0002.jpg#1"]
    assert [(p["source_file"], p["source_page"]) for p in detail["page_list"]] == [
        ("scan_0001.jpg", 1),
        ("scan_0002.jpg", 1),
    ]
    assert [o["name"] for o in detail["originals"] if o["quarantined"]] == ["notes.txt"]
    reply = client.get(f"/api/batches/{good['id']}/pdf", headers=headers)
    assert reply.status_code == 404 and "no PDF yet" in reply.json()["detail"]
    assert client.get("/api/batches/999", headers=headers).status_code == 404


def test_openapi_documents_the_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/api/batches", "/api/batches/{batch_id}", "/api/batches/{batch_id}/pdf"} <= set(paths)
    archive = {
        "/api/items",
        "/api/items/{code}",
        "/api/items/{code}/pdf",
        "/api/items/{code}/pages",
        "/api/items/{code}/pages/{page}/text",
        "/api/items/{code}/pages/{page}/hocr",
        "/api/items/{code}/pages/{page}/thumbnail",
        "/api/search",
        "/api/events",
        "/api/access-log",
        "/api/catalogue",
    }
    assert archive <= set(paths), archive - set(paths)
    assert "206" in paths["/api/items/{code}/pdf"]["get"]["responses"]


def test_a_catalogue_with_a_wrong_row_is_refused_whole_with_the_row_named(
    client: TestClient, station_env: Settings
) -> None:
    archivist = token(station_env, "archivist")
    good = "序号,档号,题名,页数\n1,C015-WS·2013-Y-BGS-0001,村民委员会会议记录,3\n"
    bad = good + "2,C015-WS·2013-X-BGS-0002,养老保险名册,2\n"
    reply = client.post("/api/catalogue", params={"filename": "目录.csv"}, content=bad.encode(), headers=archivist)
    assert reply.status_code == 422
    [error] = reply.json()["errors"]
    assert error["row"] == 3 and "保管期限" in error["message"] + error["column"]
    assert client.get("/api/items", headers=archivist).json() == [], "nothing half-imported"
    reply = client.post("/api/catalogue", params={"filename": "目录.csv"}, content=good.encode(), headers=archivist)
    assert reply.json()["created"] == 1
    [item] = client.get("/api/items", headers=archivist).json()
    assert (item["title"], item["pages"], item["pages_filed"]) == ("村民委员会会议记录", 3, 0)
    reader = token(station_env, "reader")
    assert (
        client.post(
            "/api/catalogue", params={"filename": "目录.csv"}, content=good.encode(), headers=reader
        ).status_code
        == 403
    )
    sheets = client.get("/api/catalogue/separators", params={"fonds": "C015"}, headers=archivist)
    assert sheets.status_code == 200 and sheets.headers["content-type"] == "application/pdf"
    with pikepdf.open(io.BytesIO(sheets.content)) as pdf:
        assert len(pdf.pages) == 1, "one separator sheet per catalogue item"
    assert client.get("/api/catalogue/separators", params={"fonds": "C015"}, headers=reader).status_code == 403
    assert client.get("/api/catalogue/separators", params={"fonds": "C016"}, headers=archivist).status_code == 404


def test_a_wrong_archival_code_in_a_path_names_the_wrong_part(client: TestClient, station_env: Settings) -> None:
    reply = client.get("/api/items/" + "C015-WS·2013-Q-BGS-0001", headers=token(station_env))
    assert reply.status_code == 422 and reply.json()["part"] == "retention"


def test_items_are_found_as_one_types_by_code_in_either_style_or_by_title(
    client: TestClient, station_env: Settings
) -> None:
    archivist = token(station_env, "archivist")
    rows = (
        "序号,档号,题名,页数\n1,C015-WS·2013-Y-BGS-0001,村民委员会会议记录,3\n"
        "2,C015-WS·2013-Y-BGS-0002,养老保险名册,2\n3,C015-WS·2014-Y-BGS-0001,土地承包合同_100%,1\n"
    )
    reply = client.post("/api/catalogue", params={"filename": "目录.csv"}, content=rows.encode(), headers=archivist)
    assert reply.status_code == 200, reply.text

    def found(q: str) -> list[str]:
        reply = client.get("/api/items", params={"q": q}, headers=archivist)
        assert reply.status_code == 200, reply.text
        return [i["archival_code"] for i in reply.json()]

    assert found("2013-Y-BGS-0002") == ["C015-WS·2013-Y-BGS-0002"]
    assert found("c015ws2013") == ["C015-WS·2013-Y-BGS-0001", "C015-WS·2013-Y-BGS-0002"]
    assert found("C015·WS·2013·Y·BGS·0001") == ["C015-WS·2013-Y-BGS-0001"]  # the DA/T 13 way of writing it
    assert found("养老 2013") == ["C015-WS·2013-Y-BGS-0002"]
    assert found("100%") == ["C015-WS·2014-Y-BGS-0001"], "a % is a character, not a wildcard"
    assert found("会议 养老") == []
