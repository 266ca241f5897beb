"""Grants: an archivist's permission for one token or one person to see one restricted item.

Made with ``POST /api/items/{档号}/grants``; listed and revoked here. An archivist sees and revokes only
the grants on items of its fonds (all of them if it has no fonds, as an admin).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from scanner_service.archive.access import Caller, fonds_scope
from scanner_service.archive.models import ApiToken, Grant, Item, User, as_utc, utcnow
from scanner_service.exceptions import NotFound


@dataclass(frozen=True)
class GrantRow:
    """One grant with what it names: the item, and the token or person holding it."""

    grant: Grant
    item: Item
    token: ApiToken | None
    user: User | None

    @property
    def expired(self) -> bool:
        return self.grant.expires_at is not None and as_utc(self.grant.expires_at) <= utcnow()


def _in_scope(caller: Caller) -> ColumnElement[bool]:
    scope = fonds_scope(caller)
    return Item.fonds.in_(scope) if scope is not None else true()


def list_grants(
    session: Session,
    caller: Caller,
    *,
    item_id: int | None = None,
    user: str | None = None,
    token_id: int | None = None,
    current_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[GrantRow]:
    """The grants the caller may see, newest first; filtered by item, person's name, token, or still in force."""
    stmt = (
        select(Grant, Item, ApiToken, User)
        .join(Item, Item.id == Grant.item_id)
        .outerjoin(ApiToken, ApiToken.id == Grant.token_id)
        .outerjoin(User, User.id == Grant.user_id)
        .where(_in_scope(caller))
    )
    if item_id is not None:
        stmt = stmt.where(Grant.item_id == item_id)
    if user is not None:
        stmt = stmt.where(User.name == user.strip())
    if token_id is not None:
        stmt = stmt.where(Grant.token_id == token_id)
    if current_only:
        now: datetime = utcnow()
        stmt = stmt.where((Grant.expires_at.is_(None)) | (Grant.expires_at > now))
    stmt = stmt.order_by(Grant.id.desc()).limit(limit).offset(offset)
    return [GrantRow(g, i, t, u) for g, i, t, u in session.execute(stmt).all()]


def revoke_grant(session: Session, caller: Caller, grant_id: int) -> GrantRow:
    """Take a grant back (the item is hidden from its holder again at once); NotFound if there is no such
    grant the caller may see."""
    rows = session.execute(
        select(Grant, Item, ApiToken, User)
        .join(Item, Item.id == Grant.item_id)
        .outerjoin(ApiToken, ApiToken.id == Grant.token_id)
        .outerjoin(User, User.id == Grant.user_id)
        .where(Grant.id == grant_id, _in_scope(caller))
    ).all()
    if not rows:
        raise NotFound(f"No grant {grant_id} that this {caller.kind} may see.")
    grant, item, token, user = rows[0]
    session.delete(grant)
    session.flush()
    return GrantRow(grant, item, token, user)
