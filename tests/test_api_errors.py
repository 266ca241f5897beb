"""Client mistakes answer 4xx with a reason, in one error shape, never 500; byte ranges, conditional GET and
HEAD on the PDFs per RFC 9110; times with their offset. Real catalogue (SQLite and PostgreSQL), real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from fastapi.testclient import TestClient

from scanner_service.api.app import create_app
from scanner_service.api.files import Unsatisfiable, byte_range
from scanner_service.archive.db import migrate, session_scope
from scanner_service.archive.models import ApiToken
from scanner_service.archive.tokens import create_token, hash_token
from scanner_service.settings import Settings, build_settings
from scanner_service.station.watcher import Watcher
from tests.conftest import copy_sample
from tests.test_archive import scan

CODE = "C015-WS·2013-Y-BGS-0001"
ITEM = "/api/items/" + quote(CODE)
BIG = "99999999999999999999999"  # beyond 2**63: overflowed SQLite's and PostgreSQL's integers (500)


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, station_env: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A station on SQLite, then on PostgreSQL (whose integer columns are 32-bit)."""
    if request.param == "sqlite":
        return station_env
    url = str(request.getfixturevalue("postgres_url"))
    monkeypatch.setenv("SCANSTATION_DATABASE_URL", url)
    pg = build_settings()
    migrate(pg.effective_database_url)
    return pg


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


def bearer(settings: Settings, role: str = "admin") -> dict[str, str]:
    with session_scope(settings.effective_database_url) as session:
        secret = create_token(session, role=role, name=f"{role} token")
    return {"Authorization": f"Bearer {secret}"}


def token_id(settings: Settings, headers: dict[str, str]) -> int:
    with session_scope(settings.effective_database_url) as session:
        row = session.query(ApiToken).filter(ApiToken.token_hash == hash_token(headers["Authorization"][7:])).one()
        return row.id


def invalid(reply: Any, *loc: str | int) -> dict[str, Any]:
    """The body of a 422 for a field FastAPI's validation refused, after checking the station's shape."""
    assert reply.status_code == 422, (reply.status_code, reply.text)
    body = reply.json()
    assert body["error"] == "invalid_request" and isinstance(body["detail"], str)
    assert list(loc) in [e["loc"] for e in body["errors"]], body
    return body


@pytest.mark.parametrize(
    ("method", "path", "payload", "loc"),
    [
        ("GET", f"/api/batches/{BIG}", None, ("path", "batch_id")),
        ("GET", "/api/batches/2147483648", None, ("path", "batch_id")),
        ("GET", f"/api/batches?offset={BIG}", None, ("query", "offset")),
        ("GET", "/api/batches?offset=1e20", None, ("query", "offset")),
        ("GET", f"/api/items?offset={BIG}", None, ("query", "offset")),
        ("GET", f"/api/items?year={BIG}", None, ("query", "year")),
        ("GET", f"/api/search?q=会议&offset={BIG}", None, ("query", "offset")),
        ("GET", f"/api/search?q=会议&year={BIG}", None, ("query", "year")),
        ("GET", f"{ITEM}/pages/{BIG}/text", None, ("path", "page")),
        ("GET", "/api/batches/1/pdf?x=1", None, None),  # a control: a small id is looked up (404)
        ("PUT", ITEM, {"serial": int(BIG)}, ("body", "serial")),
        ("POST", f"{ITEM}/grants", {"token_id": int(BIG)}, ("body", "token_id")),
        ("POST", f"{ITEM}/pages", {"batch_id": int(BIG)}, ("body", "batch_id")),
        ("POST", f"{ITEM}/pages", {"batch_id": 1, "pages": [int(BIG)]}, ("body", "pages", 0)),
        ("POST", f"{ITEM}/pages", {"batch_id": 1, "mode": "insert", "at": int(BIG)}, ("body", "at")),
    ],
)
def test_numbers_beyond_the_catalogue_answer_422_naming_the_field(
    client: TestClient, settings: Settings, method: str, path: str, payload: Any, loc: tuple[str, ...] | None
) -> None:
    reply = client.request(method, path, json=payload, headers=bearer(settings))
    if loc is None:
        assert reply.status_code == 404 and reply.json()["error"] == "not_found"
        return
    body = invalid(reply, *loc)
    assert "less than or equal" in body["detail"] or "valid integer" in body["detail"]


def test_the_largest_id_allowed_is_looked_up_without_overflow(client: TestClient, settings: Settings) -> None:
    admin = bearer(settings)
    reply = client.get("/api/batches/2147483647", headers=admin)
    assert reply.status_code == 404 and reply.json() == {"error": "not_found", "detail": "No batch 2147483647."}
    client.put(ITEM, json={"title": "会议记录"}, headers=admin)
    reply = client.post(f"{ITEM}/grants", json={"token_id": 2147483647}, headers=admin)
    assert reply.status_code == 404 and reply.json()["detail"] == "No token 2147483647.", reply.text
    reply = client.get("/api/events", params={"since": "2147483647"}, headers=admin)
    assert reply.status_code == 200 and reply.json() == {"events": [], "next_since": 2147483647}


@pytest.mark.parametrize("since", [BIG, "2147483648", "1e23", "²", "yesterday", "9999-12-31T23:00:00-05:00"])
def test_an_events_cursor_that_is_no_id_or_time_is_refused(client: TestClient, settings: Settings, since: str) -> None:
    reply = client.get("/api/events", params={"since": since}, headers=bearer(settings))
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["error"] == "unusable_input" and body["reason"] == "bad_since" and "since" in body["detail"]


def test_a_text_with_a_nul_character_is_refused(client: TestClient, settings: Settings) -> None:
    # PostgreSQL can neither store nor compare a NUL: it was a 500 there.
    admin = bearer(settings)
    invalid(client.get("/api/items", params={"fonds": "C0\x0015"}, headers=admin), "query", "fonds")
    invalid(client.get("/api/search", params={"q": "会\x00议"}, headers=admin), "query", "q")
    invalid(client.put(ITEM, json={"title": "会议\x00记录"}, headers=admin), "body", "title")


def test_a_text_longer_than_the_catalogue_keeps_is_refused(client: TestClient, settings: Settings) -> None:
    # 密级 is a VARCHAR(20): PostgreSQL refused a longer one with a 500.
    admin = bearer(settings)
    body = invalid(client.put(ITEM, json={"classification": "秘" * 21}, headers=admin), "body", "classification")
    assert "at most 20 characters" in body["detail"]
    assert client.put(ITEM, json={"classification": "秘密"}, headers=admin).json()["classification"] == "秘密"


def test_a_fonds_code_style_that_does_not_exist_lists_the_allowed_ones(client: TestClient, settings: Settings) -> None:
    admin = bearer(settings)
    body = invalid(client.put("/api/fonds/C015", json={"code_style": "DA/T 99"}, headers=admin), "body", "code_style")
    assert "'DA/T 22'" in body["detail"] and "'DA/T 13'" in body["detail"]
    reply = client.put("/api/fonds/C015", json={"code_style": "DA/T 13"}, headers=admin)
    assert reply.status_code == 200 and reply.json()["code_style"] == "dat13"
    reply = client.put("/api/fonds/C0-15", json={}, headers=admin)
    invalid(reply, "path", "code")


@pytest.mark.parametrize("params", [{"filename": ""}, {"filename": "目录.txt"}, {"filename": "csv"}, {}])
def test_a_catalogue_without_a_csv_or_xlsx_name_is_refused(
    client: TestClient, settings: Settings, params: dict[str, str]
) -> None:
    reply = client.post("/api/catalogue", params=params, content=b"x", headers=bearer(settings, "archivist"))
    body = invalid(reply, "query", "filename")
    assert "filename" in body["detail"]


def test_a_catalogue_named_in_capitals_is_read(client: TestClient, settings: Settings) -> None:
    good = "序号,档号,题名,页数\n1,C015-WS·2013-Y-BGS-0001,村民委员会会议记录,3\n".encode()
    reply = client.post("/api/catalogue", params={"filename": "目录.CSV"}, content=good, headers=bearer(settings))
    assert reply.status_code == 200 and reply.json()["created"] == 1
    reply = client.post("/api/catalogue", params={"filename": ".csv"}, content=b"", headers=bearer(settings))
    assert reply.status_code == 422 and reply.json()["reason"] == "empty_body"
    reply = client.post("/api/catalogue", params={"filename": ".csv"}, content=b" \n", headers=bearer(settings))
    assert reply.status_code == 422 and reply.json()["errors"] == [
        {"message": "catalogue.csv is empty", "message_zh": "catalogue.csv：文件是空的"}
    ], "a file with no name of its own"


@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_a_catalogue_problem_names_the_file_the_archivist_sent(
    client: TestClient, settings: Settings, dry_run: str
) -> None:
    reply = client.post(
        "/api/catalogue",
        params={"filename": "东风村2016年目录.xlsx", "dry_run": dry_run},
        content=b"saved as CSV, named .xlsx",
        headers=bearer(settings, "archivist"),
    )
    [error] = reply.json()["errors"]
    assert error["message_zh"] == "东风村2016年目录.xlsx：.xlsx 文件无法读取，请用 Excel 另存一次", error
    long_name = "目录" * 120 + ".csv"  # 723 bytes: longer than a file name may be on disk
    reply = client.post(
        "/api/catalogue", params={"filename": long_name, "dry_run": dry_run}, content=b" \n", headers=bearer(settings)
    )
    assert reply.status_code == (200 if dry_run == "true" else 422)
    assert reply.json()["errors"][0]["message_zh"].endswith("：文件是空的")


@pytest.mark.parametrize(
    ("path", "loc", "allowed"),
    [
        ("/api/batches?state=bogus", ("query", "state", 0), "needs_review"),  # state= may repeat
        ("/api/items?page_check=bogus", ("query", "page_check"), "missing_pages"),
        ("/api/access-log?format=xml", ("query", "format"), "csv"),
    ],
)
def test_a_value_outside_a_list_is_refused_with_the_list(
    client: TestClient, settings: Settings, path: str, loc: tuple[str | int, ...], allowed: str
) -> None:
    body = invalid(client.get(path, headers=bearer(settings)), *loc)
    assert allowed in body["detail"]


def test_a_filing_mode_outside_the_list_is_refused_with_the_list(client: TestClient, settings: Settings) -> None:
    reply = client.post(f"{ITEM}/pages", json={"batch_id": 1, "mode": "merge"}, headers=bearer(settings))
    body = invalid(reply, "body", "mode")
    assert all(m in body["detail"] for m in ("'new'", "'append'", "'insert'", "'replace'"))


@pytest.mark.parametrize("value", ["0.5", "1700000000", "yesterday"])
def test_a_time_that_is_not_iso_8601_is_refused(client: TestClient, settings: Settings, value: str) -> None:
    # Pydantic alone reads 0.5 as half a second after 1970.
    invalid(client.get("/api/access-log", params={"until": value}, headers=bearer(settings)), "query", "until")


def test_a_grant_expiry_out_of_range_in_utc_is_refused(client: TestClient, settings: Settings) -> None:
    admin = bearer(settings)
    client.put(ITEM, json={"title": "会议记录"}, headers=admin)
    reply = client.post(
        f"{ITEM}/grants", json={"token_id": 1, "expires_at": "9999-12-31T23:00:00-05:00"}, headers=admin
    )
    assert "out of range" in invalid(reply, "body", "expires_at")["detail"]
    invalid(
        client.post(f"{ITEM}/grants", json={"token_id": 1, "expires_at": 1700000000}, headers=admin),
        "body",
        "expires_at",
    )


def _is_utc(text: str) -> bool:
    moment = datetime.fromisoformat(text)
    return moment.utcoffset() == timedelta(0)


def test_every_time_in_a_response_carries_its_utc_offset(
    client: TestClient, settings: Settings, redis_conn: redis.Redis
) -> None:
    copy_sample(settings.inbox / CODE, ["scan_0001.jpg"])
    (settings.inbox / CODE / ".done").touch()
    Watcher(settings, redis_conn).poll()
    admin = bearer(settings)
    [batch] = client.get("/api/batches", headers=admin).json()
    assert _is_utc(batch["created_at"]), batch["created_at"]
    assert _is_utc(client.get(f"/api/batches/{batch['id']}", headers=admin).json()["created_at"])
    item = client.put(ITEM, json={"title": "会议记录", "open_status": "开放"}, headers=admin).json()
    assert _is_utc(item["updated_at"])
    [listed] = client.get("/api/items", headers=admin).json()
    assert _is_utc(listed["updated_at"])
    events = client.get("/api/events", headers=admin).json()["events"]
    assert events and all(_is_utc(e["at"]) for e in events)
    reader = bearer(settings, "reader")
    grant = client.post(
        f"{ITEM}/grants",
        json={"token_id": token_id(settings, reader), "expires_at": "2030-01-01T08:00:00+08:00"},
        headers=admin,
    ).json()
    assert grant["expires_at"] in ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00+00:00"), grant


def test_every_error_has_the_one_shape(client: TestClient, settings: Settings) -> None:
    admin, reader = bearer(settings), bearer(settings, "reader")
    replies = {
        401: client.get("/api/batches"),
        403: client.get("/api/batches", headers=reader),
        404: client.get("/api/batches/7", headers=admin),
        405: client.delete(ITEM, headers=admin),
        422: client.get("/api/batches/x", headers=admin),
    }
    for status, reply in replies.items():
        assert reply.status_code == status, (status, reply.text)
        body = reply.json()
        assert isinstance(body["error"], str) and isinstance(body["detail"], str) and body["detail"], body
    assert replies[401].headers["www-authenticate"] == "Bearer"
    assert set(replies[405].headers["allow"].split(", ")) == {"GET", "PUT"}, "both routes of the path"
    assert client.get("/api/nowhere", headers=admin).json() == {"error": "not_found", "detail": "Not Found"}
    [issue] = replies[422].json()["errors"]
    assert issue["loc"] == ["path", "batch_id"] and issue["type"] == "int_parsing" and issue["msg"]


def test_the_openapi_documents_the_error_shape_on_every_route(station_env: Settings) -> None:
    spec = TestClient(create_app(station_env)).get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"], "one error shape, not FastAPI's second"
    error = spec["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"error", "detail"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path == "/healthz":
                assert "503" in responses
                continue
            if (method, path) != ("delete", "/api/session"):  # logging out needs no login: it is never a 401
                assert "401" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    paths = spec["paths"]
    assert {"401", "403", "404", "422"} <= set(paths["/api/batches/{batch_id}"]["get"]["responses"])
    assert {"200", "206", "304", "401", "404", "416"} <= set(paths["/api/items/{code}/pdf"]["get"]["responses"])
    assert "head" in paths["/api/items/{code}/pdf"] and "head" in paths["/api/batches/{batch_id}/pdf"]
    assert {"403", "404", "409"} <= set(paths["/api/items/{code}/pages"]["post"]["responses"])
    states = paths["/api/batches"]["get"]["parameters"]
    [state] = [p for p in states if p["name"] == "state"]
    assert state["schema"]["anyOf"][0]["items"] == {"$ref": "#/components/schemas/BatchState"}  # state= may repeat
    assert "needs_review" in spec["components"]["schemas"]["BatchState"]["enum"]


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes=0-1000", 100, (0, 99)),
        ("BYTES=0-0", 100, (0, 0)),
        ("bytes=5-2", 100, None),
        ("items=0-5", 100, None),
        ("bytes=0-1,5-9", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=", 100, None),
        ("garbage", 100, None),
        ("bytes=100-", 100, Unsatisfiable(100)),
        ("bytes=-0", 100, Unsatisfiable(100)),
        (f"bytes={BIG}-", 100, Unsatisfiable(100)),
    ],
)
def test_a_range_header_is_read_as_rfc_9110_says(
    header: str | None, size: int, expected: tuple[int, int] | Unsatisfiable | None
) -> None:
    assert byte_range(header, size) == expected


# The PDF downloads need a filed item: one page through the real jobs, once for all the tests below.


@pytest.fixture(scope="module")
def pdf_station(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[TestClient, Settings]]:
    root = tmp_path_factory.mktemp("pdf-station")
    (root / "inbox").mkdir()
    env = {
        "SCANSTATION_DATA": str(root / "data"),
        "SCANSTATION_INBOX": str(root / "inbox"),
        "SCANSTATION_REDIS_URL": redis_url,
        "SCANSTATION_RETRY_BACKOFF": "0",
        "OMP_THREAD_LIMIT": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SCANSTATION_DATABASE_URL", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        settings = build_settings()
        migrate(settings.effective_database_url)
        conn = redis.Redis.from_url(redis_url)
        conn.flushall()
        batch = scan(settings, conn, CODE, ["scan_0001.jpg"])
        conn.close()
        assert batch.pdf_path and Path(batch.pdf_path).exists(), batch.error
        assert os.path.getsize(batch.pdf_path) > 1000
        yield TestClient(create_app(settings)), settings


PDFS = [ITEM + "/pdf", "/api/batches/1/pdf"]


@pytest.mark.slow
@pytest.mark.parametrize("url", PDFS)
@pytest.mark.parametrize("value", ["bytes=5-2", "items=0-5", "garbage", "bytes=0-1,5-9", "bytes=x-", "bytes 0-9"])
def test_a_range_the_station_cannot_use_is_ignored_and_the_whole_pdf_sent(
    pdf_station: tuple[TestClient, Settings], url: str, value: str
) -> None:
    client, settings = pdf_station
    admin = bearer(settings)
    whole = client.get(url, headers=admin)
    reply = client.get(url, headers={**admin, "Range": value})
    assert reply.status_code == 200 and reply.content == whole.content and reply.content.startswith(b"%PDF")
    assert "content-range" not in reply.headers


@pytest.mark.slow
@pytest.mark.parametrize("url", PDFS)
@pytest.mark.parametrize("value", ["bytes=99999999-", "bytes=-0", f"bytes={BIG}-{BIG}"])
def test_a_range_beyond_the_end_answers_416_with_the_size(
    pdf_station: tuple[TestClient, Settings], url: str, value: str
) -> None:
    client, settings = pdf_station
    admin = bearer(settings)
    size = len(client.get(url, headers=admin).content)
    reply = client.get(url, headers={**admin, "Range": value})
    assert reply.status_code == 416 and reply.headers["content-range"] == f"bytes */{size}"
    assert reply.json()["error"] == "range_not_satisfiable" and str(size) in reply.json()["detail"]


@pytest.mark.slow
@pytest.mark.parametrize("url", PDFS)
def test_one_byte_range_answers_206(pdf_station: tuple[TestClient, Settings], url: str) -> None:
    client, settings = pdf_station
    admin = bearer(settings)
    whole = client.get(url, headers=admin).content
    size = len(whole)
    for value, (first, last) in {
        "bytes=0-9": (0, 9),
        "bytes=-10": (size - 10, size - 1),
        "bytes=100-": (100, size - 1),
        f"bytes=0-{size * 10}": (0, size - 1),
    }.items():
        reply = client.get(url, headers={**admin, "Range": value})
        assert reply.status_code == 206, value
        assert reply.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert reply.content == whole[first : last + 1]


@pytest.mark.slow
@pytest.mark.parametrize("url", PDFS)
def test_if_none_match_compares_weakly_and_answers_304(pdf_station: tuple[TestClient, Settings], url: str) -> None:
    client, settings = pdf_station
    admin = bearer(settings)
    etag = client.get(url, headers=admin).headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    for value in (etag, f"W/{etag}", "*", f'"other", W/{etag}'):
        reply = client.get(url, headers={**admin, "If-None-Match": value})
        assert reply.status_code == 304 and reply.headers["etag"] == etag and not reply.content, value
    assert client.get(url, headers={**admin, "If-None-Match": '"other"'}).status_code == 200
    # If-Range: the range only while the ETag still holds (strong comparison); otherwise the whole file.
    assert client.get(url, headers={**admin, "Range": "bytes=0-9", "If-Range": etag}).status_code == 206
    assert client.get(url, headers={**admin, "Range": "bytes=0-9", "If-Range": f"W/{etag}"}).status_code == 200
    assert client.get(url, headers={**admin, "Range": "bytes=0-9", "If-Range": '"old"'}).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("url", PDFS)
def test_head_on_a_pdf_answers_like_get_without_the_body(pdf_station: tuple[TestClient, Settings], url: str) -> None:
    client, settings = pdf_station
    admin = bearer(settings)
    get = client.get(url, headers=admin)
    log = client.get("/api/access-log", headers=admin).json()
    assert log and all(_is_utc(r["at"]) for r in log), "the item PDF's download is logged, with a UTC time"
    head = client.head(url, headers=admin)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["etag"] == get.headers["etag"] and head.headers["accept-ranges"] == "bytes"
    assert head.headers["content-type"] == "application/pdf"
    assert len(client.get("/api/access-log", headers=admin).json()) == len(log), "a HEAD is no download"
    part = client.head(url, headers={**admin, "Range": "bytes=0-9"})
    assert part.status_code == 206 and part.headers["content-length"] == "10"
    assert client.head(url).status_code == 401
    missing = {PDFS[0]: f"/api/items/{quote(CODE[:-1] + '7')}/pdf", PDFS[1]: "/api/batches/7/pdf"}[url]
    assert client.head(missing, headers=admin).status_code == 404
