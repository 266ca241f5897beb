"""Request dependencies: settings, catalogue session, the caller's token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from scanner_service.archive.access import Caller
from scanner_service.archive.db import session_scope
from scanner_service.archive.tokens import authenticate
from scanner_service.exceptions import Unauthorized
from scanner_service.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    with session_scope(settings.effective_database_url) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

bearer = HTTPBearer(auto_error=False, description="A token from 'scanstation token create'")


def current_token(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("This needs an API token: send 'Authorization: Bearer <token>'.")
    return Caller.of_token(authenticate(session, credentials.credentials))


CurrentToken = Annotated[Caller, Depends(current_token)]
