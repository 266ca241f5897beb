"""People's accounts: argon2id passwords, login sessions (cookie and CSRF token), the lockout, what a
person may see, the `scanstation user` commands — real catalogue (SQLite and PostgreSQL), real API."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from scanner_service.api.app import create_app
from scanner_service.api.deps import CurrentToken
from scanner_service.archive import archival_code as ac
from scanner_service.archive import people
from scanner_service.archive.access import Caller
from scanner_service.archive.catalogue_store import describe_item
from scanner_service.archive.db import migrate, session_scope
from scanner_service.archive.models import LoginSession, Role, User, utcnow
from scanner_service.archive.tokens import create_token
from scanner_service.cli import main as cli
from scanner_service.exceptions import AccountLocked, Unauthorized, UnusableInput
from scanner_service.settings import Settings, build_settings
from tests.test_cli import EXE

PASSWORD = "korrekt-pferd-7"
CODE = "C015-WS·2013-Y-BGS-0001"
ITEM = "/api/items/" + quote(CODE)


# ---- the archive layer, on SQLite and PostgreSQL ---------------------------------------------------


@pytest.fixture(autouse=True)
def _no_unknown_names_counted() -> None:
    """Unknown names are counted in this process: each test starts with none."""
    people._unknown.clear()


@pytest.fixture
def catalogue(catalogue_url: str, tmp_path: Path) -> Settings:
    migrate(catalogue_url)
    return build_settings(data=tmp_path / "data", inbox=tmp_path / "inbox", database_url=catalogue_url)


def _create(settings: Settings, name: str = "lin", role: str = "operator", fonds: str | None = None) -> None:
    with session_scope(settings.effective_database_url) as session:
        people.create_user(session, name=name, role=role, fonds=fonds, password=PASSWORD, settings=settings)


def _login(settings: Settings, name: str = "lin", password: str = PASSWORD) -> people.SessionSecrets:
    url = settings.effective_database_url
    return anyio.run(functools.partial(people.login, url, name, password, "192.0.2.7", settings=settings)).secrets


def _caller(session: Any, cookie: str) -> Caller:
    return Caller.of_user(people.active_session(session, cookie).user)


def _user(settings: Settings, name: str = "lin") -> User:
    with session_scope(settings.effective_database_url) as session:
        return people.find_user(session, name)


def _failure(settings: Settings, name: str = "lin", password: str = "wrong password") -> tuple[Exception, float]:
    start = time.perf_counter()
    with pytest.raises((Unauthorized, AccountLocked)) as refused:
        _login(settings, name, password)
    return refused.value, time.perf_counter() - start


def test_a_person_logs_in_and_only_hashes_are_kept(catalogue: Settings) -> None:
    _create(catalogue, fonds="c015, C016")
    user = _user(catalogue)
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert user.fonds_list == ["C015", "C016"] and user.role == Role.operator
    secrets = _login(catalogue)
    with session_scope(catalogue.effective_database_url) as session:
        [row] = session.scalars(select(LoginSession)).all()
        assert row.secret_hash == hashlib.sha256(secrets.cookie.encode()).hexdigest()
        assert row.csrf_hash == hashlib.sha256(secrets.csrf_token.encode()).hexdigest()
        assert row.client == "192.0.2.7" and row.expires_at is not None
        caller = _caller(session, secrets.cookie)
    assert (caller.name, caller.role, caller.fonds_list, caller.kind) == (
        "lin",
        Role.operator,
        ("C015", "C016"),
        "person",
    )
    assert people.csrf_token_of(secrets.cookie) == secrets.csrf_token, "a reloaded page gets the same token"
    assert _user(catalogue).last_login_at is not None


def test_a_password_stored_with_other_costs_is_hashed_again_at_login(catalogue: Settings) -> None:
    _create(catalogue.model_copy(update={"password_time_cost": 1, "password_memory_kib": 8192}))
    assert ",t=1," in _user(catalogue).password_hash
    _login(catalogue)
    assert f",t={catalogue.password_time_cost}," in _user(catalogue).password_hash
    _login(catalogue)  # the new hash opens the account too


def test_failures_slow_down_then_lock_until_the_lock_has_passed(catalogue: Settings) -> None:
    _create(catalogue)
    answers = [_failure(catalogue) for _ in range(catalogue.lockout_failures)]
    assert all(isinstance(e, Unauthorized) for e, _ in answers[:-1]) and isinstance(answers[-1][0], AccountLocked)
    # The 1st and 2nd failures answer at once; the 4th waits people.slowdown(4) = 1 s more (loosely).
    assert answers[3][1] - answers[0][1] > 0.7, [t for _, t in answers]
    assert answers[1][1] - answers[0][1] < 0.4, [t for _, t in answers]
    user = _user(catalogue)
    assert user.failed_logins == 5 and people.locked_until(user) is not None
    refused, _ = _failure(catalogue, password=PASSWORD)
    assert isinstance(refused, AccountLocked), "the right password is refused while locked"
    assert "15 more minutes" in refused.message and refused.retry_after > 14 * 60
    _move_lock(catalogue, minutes=-1)
    _login(catalogue)
    user = _user(catalogue)
    assert user.failed_logins == 0 and user.locked_until is None


def test_after_a_lock_one_more_failure_locks_again(catalogue: Settings) -> None:
    settings = catalogue.model_copy(update={"lockout_failures": 2})
    _create(settings)
    assert isinstance(_failure(settings)[0], Unauthorized)
    assert isinstance(_failure(settings)[0], AccountLocked)
    _move_lock(settings, minutes=-1)
    assert isinstance(_failure(settings)[0], AccountLocked)


def test_an_unknown_name_answers_as_a_wrong_password_in_as_long(catalogue: Settings) -> None:
    _create(catalogue)
    _failure(catalogue, name="someone else")  # the stand-in hash is made once, at the first unknown name
    wrong = [_failure(catalogue) for _ in range(catalogue.lockout_failures)]
    unknown = [_failure(catalogue, name="nobody") for _ in range(catalogue.lockout_failures)]

    # The lock's end is in the message ("until 03:13 UTC"): the two runs may straddle a minute.
    def said(e: Exception) -> str:
        return re.sub(r"\d+ more minutes \(until \d\d:\d\d UTC\)", "N more minutes (until T)", e.message)  # type: ignore[attr-defined]

    answers = [(type(e), said(e).replace("nobody", "lin"), e.reason_code) for e, _ in unknown]
    assert answers == [(type(e), said(e), e.reason_code) for e, _ in wrong], "the same answers, 429 included"
    assert answers[0] == (Unauthorized, "Wrong name or password.", "bad_login")
    for n, ((_, w), (_, u)) in enumerate(zip(wrong, unknown, strict=True), start=1):
        # the 1st and 2nd cost one argon2 verification, the 3rd and 4th wait 0.5 s and 1 s more. One
        # verification (64 MiB) takes 0.1-0.7 s on a loaded 2-core machine: the first two get that slack.
        assert abs(w - u) < (0.45 + 0.5 * max(w, u) if n < 3 else 0.25), (n, wrong, unknown)
        if n < catalogue.lockout_failures:  # the lock answers at once
            assert min(w, u) >= people.slowdown(n), (n, wrong, unknown)


def test_guesses_made_at_once_cannot_pass_the_lock(catalogue: Settings) -> None:
    """Each attempt is counted before its password is verified: of 12 parallel guesses only the first
    lockout_failures are verified at all, and the account is locked."""
    import threading

    _create(catalogue)
    start = threading.Barrier(12)
    answers: list[str] = []

    def attempt() -> None:
        start.wait()
        answers.append(type(_failure(catalogue)[0]).__name__)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers.count("Unauthorized") <= catalogue.lockout_failures - 1, answers
    assert _user(catalogue).failed_logins == catalogue.lockout_failures
    assert people.locked_until(_user(catalogue)) is not None


def test_disabling_or_a_new_password_ends_the_logins(catalogue: Settings) -> None:
    _create(catalogue)
    first, second = _login(catalogue), _login(catalogue)
    with session_scope(catalogue.effective_database_url) as session:
        people.change_password(session, "lin", "a-new-password", settings=catalogue)
    with session_scope(catalogue.effective_database_url) as session, pytest.raises(Unauthorized):
        _caller(session, first.cookie)
    _failure(catalogue, password=PASSWORD)
    third = _login(catalogue, password="a-new-password")
    with session_scope(catalogue.effective_database_url) as session:
        people.set_disabled(session, "lin", True)
    for secrets in (second, third):
        with session_scope(catalogue.effective_database_url) as session, pytest.raises(Unauthorized):
            _caller(session, secrets.cookie)
    refused, _ = _failure(catalogue, password="a-new-password")
    assert isinstance(refused, Unauthorized) and refused.reason_code == "bad_login", "the password is not confirmed"


def test_names_and_passwords_that_cannot_be_stored_are_refused(catalogue: Settings) -> None:
    with session_scope(catalogue.effective_database_url) as session:
        for name, password, reason in [("lin", "short", "weak_password"), ("", PASSWORD, "bad_name")]:
            with pytest.raises(UnusableInput) as refused:
                people.create_user(session, name=name, role="reader", password=password, settings=catalogue)
            assert refused.value.reason_code == reason
        assert people.list_users(session) == []


def _move_lock(settings: Settings, *, minutes: float) -> None:
    """Move the clock: the lock ends ``minutes`` from now (in the past if negative)."""
    with session_scope(settings.effective_database_url) as session:
        people.find_user(session, "lin").locked_until = utcnow() + timedelta(minutes=minutes)


# ---- the API ---------------------------------------------------------------------------------------


@pytest.fixture
def client(station_env: Settings) -> TestClient:
    return TestClient(create_app(station_env))


def _person(settings: Settings, name: str, role: str, fonds: str | None = None) -> None:
    with session_scope(settings.effective_database_url) as session:
        people.create_user(session, name=name, role=role, fonds=fonds, password=PASSWORD, settings=settings)


def _log_in(client: TestClient, name: str, password: str = PASSWORD) -> Response:
    return client.post("/api/session", json={"name": name, "password": password})


def _cookie_attributes(reply: Response) -> dict[str, str]:
    [header] = reply.headers.get_list("set-cookie")
    parts = [p.strip() for p in header.split(";")]
    assert parts[0].startswith("scanstation_session="), header
    return {k.lower(): v for k, _, v in (p.partition("=") for p in parts[1:])}


def _bearer(settings: Settings, role: str = "admin") -> dict[str, str]:
    with session_scope(settings.effective_database_url) as session:
        return {"Authorization": f"Bearer {create_token(session, role=role)}"}


def test_login_sets_a_strict_http_only_cookie_that_opens_the_api(client: TestClient, station_env: Settings) -> None:
    _person(station_env, "lin", "operator", "C015")
    reply = _log_in(client, "lin")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert {k: body[k] for k in ("name", "kind", "role", "fonds")} == {
        "name": "lin",
        "kind": "person",
        "role": "operator",
        "fonds": ["C015"],
    }
    attributes = _cookie_attributes(reply)
    assert "httponly" in attributes and attributes["samesite"].lower() == "strict" and attributes["path"] == "/"
    assert "secure" not in attributes, "over plain http a Secure cookie would never come back"
    assert abs(int(attributes["max-age"]) - 12 * 3600) < 60
    assert client.get("/api/batches").status_code == 200
    again = client.get("/api/session").json()
    assert again["csrf_token"] == body["csrf_token"] and again["expires_at"] == body["expires_at"]


def test_over_https_the_cookie_is_secure(station_env: Settings) -> None:
    client = TestClient(create_app(station_env), base_url="https://testserver")
    _person(station_env, "lin", "operator")
    reply = _log_in(client, "lin")
    assert reply.status_code == 200 and "secure" in _cookie_attributes(reply)
    assert client.get("/api/batches").status_code == 200


def test_a_wrong_password_and_an_unknown_name_get_the_same_401(client: TestClient, station_env: Settings) -> None:
    _person(station_env, "lin", "operator")
    answers = [_log_in(client, "lin", "wrong password"), _log_in(client, "nobody")]
    for reply in answers:
        assert reply.status_code == 401 and "set-cookie" not in reply.headers
        assert reply.json() == {"error": "unauthorized", "detail": "Wrong name or password.", "reason": "bad_login"}
    assert client.get("/api/batches").status_code == 401


def test_a_locked_account_answers_429_saying_for_how_long(station_env: Settings) -> None:
    client = TestClient(create_app(station_env.model_copy(update={"lockout_failures": 2})))
    _person(station_env, "lin", "operator")
    assert _log_in(client, "lin", "wrong password").status_code == 401
    locked = _log_in(client, "lin", "wrong password")
    assert locked.status_code == 429 and locked.json()["error"] == "account_locked"
    assert "locked for 15 more minutes" in locked.json()["detail"] and int(locked.headers["retry-after"]) > 14 * 60
    assert _log_in(client, "lin").status_code == 429, "the right password waits for the lock too"
    with session_scope(station_env.effective_database_url) as session:
        people.find_user(session, "lin").locked_until = utcnow() - timedelta(seconds=1)
    assert _log_in(client, "lin").status_code == 200


def _app_with_a_patch_route(settings: Settings) -> FastAPI:
    """The app, plus one PATCH route behind CurrentToken (main has no PATCH route of its own yet)."""
    app = create_app(settings)

    @app.patch("/api/probe")
    def probe(caller: CurrentToken) -> dict[str, Any]:
        return {"who": caller.name}

    return app


CHANGES = [
    ("PUT", ITEM, {"title": "村民代表大会会议记录"}, 200),
    ("POST", f"{ITEM}/grants", {"user": "lin"}, 201),
    ("PATCH", "/api/probe", None, 200),
    ("DELETE", "/api/session", None, 204),
]


@pytest.mark.parametrize(("method", "path", "payload", "status"), CHANGES)
def test_a_change_made_with_the_cookie_needs_the_csrf_token(
    station_env: Settings, method: str, path: str, payload: Any, status: int
) -> None:
    client = TestClient(_app_with_a_patch_route(station_env))
    _person(station_env, "lin", "admin")
    _item(station_env, classification="秘密")
    csrf = _log_in(client, "lin").json()["csrf_token"]
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": ""}):
        reply = client.request(method, path, json=payload, headers=headers)
        assert reply.status_code == 403 and reply.json()["reason"] == "csrf", reply.text
    reply = client.request(method, path, json=payload, headers={"X-CSRF-Token": csrf})
    assert reply.status_code == status, reply.text


@pytest.mark.parametrize(("method", "path", "payload", "status"), CHANGES[:3])
def test_a_bearer_token_needs_no_csrf_token(
    station_env: Settings, method: str, path: str, payload: Any, status: int
) -> None:
    client = TestClient(_app_with_a_patch_route(station_env))
    _person(station_env, "lin", "reader")
    _item(station_env, classification="秘密")
    reply = client.request(method, path, json=payload, headers=_bearer(station_env))
    assert reply.status_code == status, reply.text


def test_logout_ends_the_login_even_for_a_replayed_cookie(client: TestClient, station_env: Settings) -> None:
    _person(station_env, "lin", "operator")
    csrf = _log_in(client, "lin").json()["csrf_token"]
    cookie = client.cookies["scanstation_session"]
    reply = client.delete("/api/session", headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 204 and _cookie_attributes(reply)["max-age"] == "0"
    assert "scanstation_session" not in client.cookies
    replayed = TestClient(client.app).get("/api/batches", headers={"Cookie": f"scanstation_session={cookie}"})
    assert replayed.status_code == 401 and replayed.json()["reason"] == "session_ended"
    with session_scope(station_env.effective_database_url) as session:
        [row] = session.scalars(select(LoginSession)).all()
        assert row.ended_at is not None
    assert client.delete("/api/session").status_code == 204, "logging out again is no error"


def test_an_expired_login_or_a_disabled_person_gets_401(client: TestClient, station_env: Settings) -> None:
    _person(station_env, "lin", "operator")
    _log_in(client, "lin")
    with session_scope(station_env.effective_database_url) as session:
        session.scalars(select(LoginSession)).one().expires_at = utcnow() - timedelta(seconds=1)
    expired = client.get("/api/batches")
    assert expired.status_code == 401 and expired.json()["reason"] == "session_expired"
    _log_in(client, "lin")
    assert client.get("/api/batches").status_code == 200
    with session_scope(station_env.effective_database_url) as session:
        people.set_disabled(session, "lin", True)
    assert client.get("/api/batches").status_code == 401
    refused = _log_in(client, "lin")
    assert refused.status_code == 401 and refused.json()["reason"] == "bad_login", "the same as a wrong password"


def _item(settings: Settings, **values: Any) -> None:
    with session_scope(settings.effective_database_url) as session:
        describe_item(
            session, ac.parse(CODE), {"title": "会议记录", "open_status": "开放", **values}, written=CODE, actor="test"
        )


def test_a_person_sees_what_their_role_and_fonds_allow(station_env: Settings) -> None:
    _item(station_env)
    seen = {}
    for name, role, fonds in [("wang", "operator", "C016"), ("zhao", "operator", "C015"), ("li", "reader", "C015")]:
        _person(station_env, name, role, fonds)
        client = TestClient(create_app(station_env))
        assert _log_in(client, name).status_code == 200
        seen[name] = (client.get(ITEM).status_code, client.get("/api/batches").status_code)
    assert seen == {"wang": (404, 200), "zhao": (200, 200), "li": (200, 403)}


def test_an_archivist_grants_a_restricted_item_to_a_person(client: TestClient, station_env: Settings) -> None:
    _item(station_env, classification="秘密")
    _person(station_env, "li", "reader", "C015")
    reader = TestClient(create_app(station_env))
    _log_in(reader, "li")
    assert reader.get(ITEM).status_code == 404
    archivist = _bearer(station_env, "archivist")
    for body in ({}, {"user": "li", "token_id": 1}):
        assert client.post(f"{ITEM}/grants", json=body, headers=archivist).status_code == 422
    unknown = client.post(f"{ITEM}/grants", json={"user": "nobody"}, headers=archivist)
    assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
    granted = client.post(f"{ITEM}/grants", json={"user": "li", "reason": "批准利用"}, headers=archivist)
    assert granted.status_code == 201 and granted.json()["user"] == "li" and granted.json()["token_id"] is None
    assert reader.get(ITEM).status_code == 200


def test_logins_failures_lockouts_and_logouts_are_logged_without_the_password(
    station_env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(create_app(station_env.model_copy(update={"lockout_failures": 2})))
    _person(station_env, "lin", "operator")
    _person(station_env, "wang", "operator")
    caplog.set_level(logging.INFO, logger="scanner_service.archive.people")
    caplog.clear()  # "person created" is logged too when an earlier test left the logger at INFO
    _log_in(client, "lin", "wrong password")
    _log_in(client, "lin", "wrong password")
    _log_in(client, "nobody", "wrong password")
    csrf = _log_in(client, "wang").json()["csrf_token"]
    client.delete("/api/session", headers={"X-CSRF-Token": csrf})
    lines = [r.getMessage() for r in caplog.records if r.name == "scanner_service.archive.people"]
    expected = [
        "login failed: 'lin' from testclient (1 in a row)",
        "login failed: 'lin' from testclient (2 in a row)",
        "account locked: 'lin' after 2 failed logins in a row, until ",
        "login failed: unknown name 'nobody' from testclient",
        "login: 'wang' (operator) from testclient",
        "logout: 'wang' from testclient",
    ]
    assert len(lines) == len(expected) and all(a.startswith(b) for a, b in zip(lines, expected, strict=True)), lines
    assert not any(p in caplog.text for p in ("wrong password", PASSWORD))


# ---- the command ----------------------------------------------------------------------------------


def test_user_create_with_password_stdin_then_the_person_logs_in(tmp_path: Path, redis_url: str) -> None:
    data = tmp_path / "data"
    done = subprocess.run(
        [str(EXE), "user", "create", "lin", "--data", str(data), "--role", "operator", "--fonds", "c015"]
        + ["--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    settings = build_settings(data=data).model_copy(update={"redis_url": redis_url})
    client = TestClient(create_app(settings))
    reply = _log_in(client, "lin")
    assert reply.status_code == 200 and reply.json()["fonds"] == ["C015"]
    listing = subprocess.run([str(EXE), "user", "list", "--data", str(data)], capture_output=True, text=True)
    [row] = listing.stdout.splitlines()[1:]
    name, role, fonds, state, locked, last = row.split("\t")
    assert (name, role, fonds, state, locked) == ("lin", "operator", "C015", "enabled", "-") and last.endswith("UTC")


def test_user_create_refuses_passwords_that_differ_or_are_short(
    station_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[str] = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": answers.pop(0))
    create = ["user", "create", "lin", "--role", "reader"]
    for typed in (["korrekt-pferd-7", "korrekt-pferd-8"], ["short", "short"], ["", ""]):
        answers[:] = typed
        assert cli(create) == 4
    err = capsys.readouterr().err
    assert "The two passwords differ" in err and "at least 8 characters" in err
    with session_scope(station_env.effective_database_url) as session:
        assert people.list_users(session) == []
    answers[:] = [PASSWORD, PASSWORD]
    assert cli(create) == 0
    assert _log_in(TestClient(create_app(station_env)), " lin ").status_code == 200, "the name as typed, spaces aside"
    answers[:] = ["never asked"]
    assert cli(create) == 10 and answers == ["never asked"], "a name taken is refused before the password is asked"


def test_user_passwd_disable_and_enable(station_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    _person(station_env, "lin", "operator")
    with session_scope(station_env.effective_database_url) as session:
        people.find_user(session, "lin").locked_until = utcnow() + timedelta(minutes=10)
    cli(["user", "list"])
    [row] = capsys.readouterr().out.splitlines()[1:]
    assert row.split("\t")[3] == "enabled" and row.split("\t")[4].endswith("UTC"), row
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "a-new-password")
    assert cli(["user", "passwd", "lin"]) == 0
    assert cli(["user", "passwd", "nobody"]) == 7
    client = TestClient(create_app(station_env))
    assert _log_in(client, "lin", "a-new-password").status_code == 429
    assert cli(["user", "enable", "lin"]) == 0, "enable clears the lock"
    assert _log_in(client, "lin", "a-new-password").status_code == 200
    assert cli(["user", "disable", "lin"]) == 0
    assert client.get("/api/batches").status_code == 401
    capsys.readouterr()
    cli(["user", "list"])
    [row] = capsys.readouterr().out.splitlines()[1:]
    assert row.split("\t")[3:5] == ["disabled", "-"]


def test_failures_made_at_the_same_moment_are_all_counted(catalogue: Settings) -> None:
    """Parallel tries cannot slip past the lockout: each failure is counted in SQL, not read and rewritten."""
    import threading

    settings = catalogue.model_copy(update={"lockout_failures": 100})
    _create(settings)
    start = threading.Barrier(4)

    def attempt() -> None:
        start.wait()
        with pytest.raises(Unauthorized):
            _login(settings, password="wrong password")

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _user(settings).failed_logins == 4


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(full path, route) of every APIRoute, into the routers included (FastAPI keeps those apart)."""
    from fastapi.routing import APIRoute

    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes, prefix + route.include_context.prefix)


def _changing_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path with every parameter filled in) of every route that changes something."""
    out = []
    for template, route in _api_routes(app.routes):
        path = re.sub(r"\{[a-z_]+\}", "1", template.replace("{code}", quote(CODE)))
        out += [(m, path) for m in sorted(route.methods - {"GET", "HEAD"}) if (m, template) != ("POST", "/api/session")]
    return out


def test_every_change_made_with_a_login_cookie_needs_the_csrf_token_and_a_bearer_token_none(
    station_env: Settings,
) -> None:
    app = create_app(station_env)
    routes = _changing_routes(app)
    assert len(routes) > 10 and ("DELETE", "/api/session") in routes, routes
    _person(station_env, "lin", "admin")
    client = TestClient(app)
    assert _log_in(client, "lin").status_code == 200
    refused = {(m, p): client.request(m, p, json={}) for m, p in routes}
    wrong = {
        k: (r.status_code, r.text[:200])
        for k, r in refused.items()
        if r.status_code != 403 or r.json().get("reason") != "csrf"
    }
    assert wrong == {}, "a change with the cookie and no X-CSRF-Token is refused 403 csrf"
    system = TestClient(app)
    admin = _bearer(station_env)
    answered = {(m, p): system.request(m, p, json={}, headers=admin) for m, p in routes}
    asked = {k: r.text[:200] for k, r in answered.items() if r.status_code == 403 and r.json().get("reason") == "csrf"}
    assert asked == {}, "a Bearer token needs no CSRF token"


@pytest.mark.slow
def test_many_slowed_down_logins_hold_up_no_other_request(
    station_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal waits asleep and argon2 runs at most people.VERIFYING at a time: 60 bad logins at once
    (more than the API's 40 worker threads) leave every other route answering at once."""
    import threading

    import httpx

    from tests.test_stream import serving

    settings = station_env.model_copy(
        update={"lockout_failures": 1000, "password_time_cost": 1, "password_memory_kib": 8192}
    )
    _person(settings, "lin", "operator")
    admin = _bearer(settings)
    monkeypatch.setattr(people, "slowdown", lambda failures: 4.0)
    with serving(settings) as base:

        def guess() -> None:
            httpx.post(f"{base}/api/session", json={"name": "lin", "password": "wrong password"}, timeout=60)

        guesses = [threading.Thread(target=guess) for _ in range(60)]
        for t in guesses:
            t.start()
        time.sleep(1.5)
        began = time.monotonic()
        reply = httpx.get(f"{base}/api/session", headers=admin, timeout=30)
        took = time.monotonic() - began
        for t in guesses:
            t.join()
    # Held up behind the guesses, it would wait their 4 s slowdown at least; 2 s leaves room for a loaded
    # machine's two cores verifying argon2 hashes beside it (1.4 s seen once with other tests running).
    assert reply.status_code == 200 and took < 2.0, took
    assert _user(settings).failed_logins == 60
