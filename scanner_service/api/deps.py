"""Request dependencies: settings, catalogue session, the caller (an API token or a person's login)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from scanner_service.archive import people
from scanner_service.archive.access import Caller
from scanner_service.archive.db import session_scope
from scanner_service.archive.tokens import authenticate
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


def current_token(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    cookie: SessionCookie,
) -> Caller:
    """The caller: a Bearer token if one is sent (no CSRF token needed: a browser never adds one on its
    own), otherwise the login cookie, whose changes need the login's CSRF token in ``X-CSRF-Token``."""
    if credentials is not None:  # HTTPBearer gives only a "Bearer" one
        return Caller.of_token(authenticate(session, credentials.credentials))
    if cookie:
        login = people.active_session(session, cookie)
        if request.method in STATE_CHANGING:
            people.require_csrf(login, request.headers.get(CSRF_HEADER))
        return Caller.of_user(login.user)
    raise Unauthorized("This needs an API token ('Authorization: Bearer <token>') or a login (POST /api/session).")


CurrentToken = Annotated[Caller, Depends(current_token)]


def client_address(request: Request) -> str | None:
    """The client's address as the server saw it (the proxy's, behind one), for the logs."""
    return request.client.host if request.client else None
