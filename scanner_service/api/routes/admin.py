"""People, API tokens and grants, managed over the API (the web page's 管理 screen, or any client).

- People and tokens: admins only (they decide who may do anything at all); the same rules as
  ``scanstation user …`` and ``scanstation token …``, which call the same functions.
- Grants: admins and archivists, on the items of their fonds (made with ``POST /api/items/{档号}/grants``).

Every change made with a login cookie needs the login's ``X-CSRF-Token`` (checked in ``deps``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from scanner_service.api.deps import CurrentToken, SessionDep, SettingsDep
from scanner_service.api.schemas import NO_NUL, FilterText, Limit, Offset, UtcDateTime, error_responses
from scanner_service.archive import access, grants, people, tokens
from scanner_service.archive.models import ApiToken, Role, User
from scanner_service.archive.tokens import issue_token

router = APIRouter(prefix="/api", tags=["admin"])

RoleName = Literal["admin", "archivist", "operator", "reader"]
FondsCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,8}$", description="全宗号")]
FondsList = Annotated[
    list[FondsCode],
    Field(max_length=100, description="The fonds the account is limited to; empty = every fonds"),
]
PersonName = Annotated[str, Field(min_length=1, max_length=people.NAME_MAX, pattern=NO_NUL)]
PersonPath = Annotated[str, Path(min_length=1, max_length=people.NAME_MAX, pattern=NO_NUL, description="The name")]
Password = Annotated[str, Field(min_length=1, max_length=1024, pattern=NO_NUL, description="At least 8 characters")]
IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _fonds_text(fonds: list[str] | None) -> str | None:
    return None if fonds is None else ",".join(fonds)


# ---- people ----------------------------------------------------------------------------------------


class UserCreate(BaseModel):
    name: PersonName
    role: RoleName
    password: Password
    fonds: FondsList = []


class UserChange(BaseModel):
    """Only what is given changes; all of it or nothing."""

    password: Password | None = Field(default=None, description="A new password: the person's logins end")
    disabled: bool | None = Field(
        default=None, strict=True, description="true: the logins end; false: enabled again and unlocked"
    )
    role: RoleName | None = None
    fonds: FondsList | None = None


class UserPublic(BaseModel):
    name: str
    role: RoleName
    fonds: list[str] = Field(description="Empty = every fonds")
    disabled: bool
    locked_until: UtcDateTime | None = Field(description="Set while failed logins keep the account locked")
    created_at: UtcDateTime
    last_login_at: UtcDateTime | None


def _user_public(user: User) -> UserPublic:
    return UserPublic(
        name=user.name,
        role=user.role.value,
        fonds=user.fonds_list,
        disabled=user.disabled,
        locked_until=people.locked_until(user),
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


@router.get(
    "/users",
    response_model=list[UserPublic],
    summary="People who log in with a name and password (admin)",
    responses=error_responses(401, 403),
)
def list_users(session: SessionDep, token: CurrentToken) -> list[UserPublic]:
    access.require_role(token, Role.admin)
    return [_user_public(u) for u in people.list_users(session)]


@router.post(
    "/users",
    status_code=201,
    response_model=UserPublic,
    summary="Create a person with a password (admin)",
    responses=error_responses(401, 403, 409, 422),
)
def create_user(body: UserCreate, session: SessionDep, settings: SettingsDep, token: CurrentToken) -> UserPublic:
    access.require_role(token, Role.admin)
    user = people.create_user(
        session,
        name=body.name,
        role=body.role,
        password=body.password,
        fonds=_fonds_text(body.fonds),
        settings=settings,
    )
    return _user_public(user)


@router.patch(
    "/users/{name}",
    response_model=UserPublic,
    summary="Change a person's password, role or fonds; disable or enable (and unlock) them (admin)",
    responses=error_responses(401, 403, 404, 409, 422),
)
def change_user(
    name: PersonPath, body: UserChange, session: SessionDep, settings: SettingsDep, token: CurrentToken
) -> UserPublic:
    access.require_role(token, Role.admin)
    user = people.change_user(
        session,
        name,
        by=token,
        settings=settings,
        password=body.password,
        disabled=body.disabled,
        role=body.role,
        fonds=_fonds_text(body.fonds),
    )
    return _user_public(user)


# ---- API tokens ------------------------------------------------------------------------------------


class TokenCreate(BaseModel):
    role: RoleName
    fonds: FondsList = []
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL, description="What system uses it")


class TokenPublic(BaseModel):
    id: int
    name: str
    role: RoleName
    fonds: list[str] = Field(description="Empty = every fonds")
    created_at: UtcDateTime
    revoked: bool


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret, shown this once (only its SHA-256 is kept)")


def _token_public(record: ApiToken) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role.value,
        "fonds": record.fonds_list,
        "created_at": record.created_at,
        "revoked": record.revoked,
    }


@router.get(
    "/tokens",
    response_model=list[TokenPublic],
    summary="API tokens, revoked ones too (admin); never their secrets",
    responses=error_responses(401, 403),
)
def list_tokens(session: SessionDep, token: CurrentToken) -> list[dict[str, Any]]:
    access.require_role(token, Role.admin)
    return [_token_public(t) for t in tokens.list_tokens(session)]


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenCreated,
    summary="Create an API token (admin); the answer holds its secret, shown once",
    responses=error_responses(401, 403, 422),
)
def create_token(body: TokenCreate, session: SessionDep, token: CurrentToken, response: Response) -> dict[str, Any]:
    access.require_role(token, Role.admin)
    record, secret = issue_token(session, role=body.role, fonds=_fonds_text(body.fonds), name=body.name)
    response.headers["Cache-Control"] = "no-store"
    return {**_token_public(record), "token": secret}


@router.delete(
    "/tokens/{token_id}",
    response_model=TokenPublic,
    summary="Revoke an API token for good (admin); revoking it again changes nothing",
    responses=error_responses(401, 403, 404, 422),
)
def revoke_token(token_id: IdPath, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    access.require_role(token, Role.admin)
    return _token_public(tokens.revoke_token(session, token_id))


# ---- grants ----------------------------------------------------------------------------------------


class GrantListed(BaseModel):
    id: int
    archival_code: str
    title: str | None
    token_id: int | None
    token_name: str | None
    user: str | None
    reason: str | None
    granted_by: str
    created_at: UtcDateTime
    expires_at: UtcDateTime | None
    expired: bool


def _grant_public(row: grants.GrantRow) -> GrantListed:
    g = row.grant
    return GrantListed(
        id=g.id,
        archival_code=row.item.archival_code,
        title=row.item.title,
        token_id=g.token_id,
        token_name=row.token.name if row.token else None,
        user=row.user.name if row.user else None,
        reason=g.reason,
        granted_by=g.granted_by,
        created_at=g.created_at,
        expires_at=g.expires_at,
        expired=row.expired,
    )


@router.get(
    "/grants",
    response_model=list[GrantListed],
    summary="Grants on restricted items, newest first (archivist: the items of its fonds)",
    responses=error_responses(401, 403, 404, 422),
)
def list_grants(
    session: SessionDep,
    token: CurrentToken,
    archival_code: Annotated[
        str | None, Query(max_length=128, pattern=NO_NUL, description="Only this item's (档号, either style)")
    ] = None,
    user: FilterText = None,
    token_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    current: Annotated[bool, Query(description="Only grants still in force")] = False,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[GrantListed]:
    access.require_role(token, Role.admin, Role.archivist)
    item_id = access.visible_item(session, token, archival_code).id if archival_code else None
    rows = grants.list_grants(
        session,
        token,
        item_id=item_id,
        user=user,
        token_id=token_id,
        current_only=current,
        limit=limit,
        offset=offset,
    )
    return [_grant_public(r) for r in rows]


@router.delete(
    "/grants/{grant_id}",
    response_model=GrantListed,
    summary="Revoke a grant: the item is hidden from its holder again (archivist)",
    responses=error_responses(401, 403, 404, 422),
)
def revoke_grant(grant_id: IdPath, session: SessionDep, token: CurrentToken) -> GrantListed:
    access.require_role(token, Role.admin, Role.archivist)
    return _grant_public(grants.revoke_grant(session, token, grant_id))
