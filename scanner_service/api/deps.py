"""Request dependencies: settings, catalogue session, the caller (an API token or a person's login)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from scanner_service.archive import people
from scanner_service.archive.access import Caller
from scanner_service.archive.db import session_scope
from scanner_service.archive.models import LoginSession, as_utc
from scanner_service.archive.tokens import hash_token, token_of_hash
from scanner_service.exceptions import Unauthorized
from scanner_service.settings import Settings

SESSION_COOKIE = "scanstation_session"
CSRF_HEADER = "X-CSRF-Token"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    with session_scope(settings.effective_database_url) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

bearer = HTTPBearer(auto_error=False, description="A token from 'scanstation token create'")
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description=f"A person's login (POST /api/session); POST, PUT, PATCH and DELETE also need the header {CSRF_HEADER}",
)
SessionCookie = Annotated[str | None, Depends(session_cookie)]


@dataclass(frozen=True)
class Credential:
    """What a request was authenticated with, as stored: the SHA-256 of an API token or of a login cookie.

    A long request (the event stream) keeps it to ask again whether it still opens the API."""

    kind: Literal["token", "login"]
    secret_hash: str


@dataclass(frozen=True)
class Authenticated:
    """The caller, the credential it came with, and the login (a person's; None for a token)."""

    caller: Caller
    credential: Credential
    login: LoginSession | None = None
    expires_at: datetime | None = None  # when the login ends by itself (a token does not)


def authenticate(session: Session, credential: Credential) -> Authenticated:
    """Who ``credential`` is now; Unauthorized if it no longer opens the API (revoked, logged out, expired,
    the person disabled or given a new password)."""
    if credential.kind == "token":
        return Authenticated(Caller.of_token(token_of_hash(session, credential.secret_hash)), credential)
    login = people.login_of_hash(session, credential.secret_hash)
    return Authenticated(Caller.of_user(login.user), credential, login, as_utc(login.expires_at))


def current_login(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    cookie: SessionCookie,
) -> Authenticated:
    """The caller: a Bearer token if one is sent (no CSRF token needed: a browser never adds one on its
    own), otherwise the login cookie, whose changes need the login's CSRF token in ``X-CSRF-Token``."""
    if credentials is not None:  # HTTPBearer gives only a "Bearer" one
        return authenticate(session, Credential("token", hash_token(credentials.credentials)))
    if cookie:
        found = authenticate(session, Credential("login", people.cookie_hash(cookie)))
        if request.method in STATE_CHANGING and found.login is not None:
            people.require_csrf(found.login, request.headers.get(CSRF_HEADER))
        return found
    raise Unauthorized("This needs an API token ('Authorization: Bearer <token>') or a login (POST /api/session).")


CurrentLogin = Annotated[Authenticated, Depends(current_login)]


def current_token(login: CurrentLogin) -> Caller:
    """The caller of :func:`current_login` (the same lookup: FastAPI makes it once per request)."""
    return login.caller


CurrentToken = Annotated[Caller, Depends(current_token)]


def client_address(request: Request) -> str | None:
    """The client's address as the server saw it (the proxy's, behind one), for the logs."""
    return request.client.host if request.client else None
