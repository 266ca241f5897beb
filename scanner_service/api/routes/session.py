"""A person's login: name and password for a session cookie (and its CSRF token); who is logged in; logout.

The cookie (``scanstation_session``) is HttpOnly, SameSite=Strict, Path=/, Secure when the request came
over https, and lasts ``settings.session_hours``. The CSRF token is derived from the cookie (see
:mod:`scanner_service.archive.people`): ``GET /api/session`` gives it again to a page reloaded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Cookie, Request, Response
from pydantic import BaseModel, Field

from scanner_service.api.deps import (
    CSRF_HEADER,
    SESSION_COOKIE,
    CurrentLogin,
    SessionCookie,
    SessionDep,
    SettingsDep,
    client_address,
)
from scanner_service.api.schemas import NO_NUL, UtcDateTime, error_responses
from scanner_service.archive import people
from scanner_service.archive.models import utcnow
from scanner_service.exceptions import Unauthorized

router = APIRouter(prefix="/api/session", tags=["session"])


class LoginRequest(BaseModel):
    name: str = Field(min_length=1, max_length=people.NAME_MAX, pattern=NO_NUL)
    password: str = Field(min_length=1, max_length=1024, pattern=NO_NUL)


class SessionPublic(BaseModel):
    name: str
    kind: Literal["person", "token"] = Field(description="A person's login, or an API token")
    role: str
    fonds: list[str] = Field(description="The fonds the caller is limited to; empty = every fonds")
    csrf_token: str | None = Field(
        description=f"A login's: send it as {CSRF_HEADER} with every POST, PUT, PATCH and DELETE made with the cookie"
    )
    expires_at: UtcDateTime | None = Field(description="When the login ends (it is not extended by use)")


@router.post(
    "",
    response_model=SessionPublic,
    summary="Log in with a name and password: sets the session cookie",
    responses=error_responses(401, 422, 429),
)
async def log_in(body: LoginRequest, request: Request, response: Response, settings: SettingsDep) -> dict[str, Any]:
    # async: a slowed-down refusal sleeps without holding a worker thread (see people.login)
    url = settings.effective_database_url
    opened = await people.login(url, body.name, body.password, client_address(request), settings=settings)
    response.set_cookie(
        SESSION_COOKIE,
        opened.secrets.cookie,
        max_age=max(0, int((opened.expires_at - utcnow()).total_seconds())),
        expires=opened.expires_at,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    caller = opened.caller
    fonds = list(caller.fonds_list)
    return _public("person", caller.name, caller.role.value, fonds, opened.secrets.csrf_token, opened.expires_at)


@router.get(
    "",
    response_model=SessionPublic,
    summary="Who is asking: the person logged in (with the login's CSRF token) or the API token",
    responses=error_responses(401),
)
def who_am_i(login: CurrentLogin, cookie: SessionCookie) -> dict[str, Any]:
    caller = login.caller
    fonds = list(caller.fonds_list)
    if login.login is None or not cookie:
        return _public("token", caller.name, caller.role.value, fonds, None, None)
    return _public("person", caller.name, caller.role.value, fonds, people.csrf_token_of(cookie), login.expires_at)


@router.delete(
    "",
    status_code=204,
    response_class=Response,
    summary=f"Log out: the login ends and its cookie is cleared (needs {CSRF_HEADER} while the login is open)",
    responses=error_responses(403, 422),
)
def log_out(
    request: Request,
    session: SessionDep,
    cookie: Annotated[
        str | None, Cookie(alias=SESSION_COOKIE, description="The login to end; none: nothing to do")
    ] = None,
) -> Response:
    if cookie:
        try:
            login = people.active_session(session, cookie)
        except Unauthorized:
            pass  # ended or expired already: logging out again is no error
        else:
            people.require_csrf(login, request.headers.get(CSRF_HEADER))
            people.logout(session, cookie, client_address(request))
    reply = Response(status_code=204)
    reply.delete_cookie(
        SESSION_COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )
    return reply


def _public(
    kind: str, name: str, role: str, fonds: list[str], csrf_token: str | None, expires_at: datetime | None
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "role": role,
        "fonds": fonds,
        "csrf_token": csrf_token,
        "expires_at": expires_at,
    }
