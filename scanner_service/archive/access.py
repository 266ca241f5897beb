"""Who may see what, and the 利用登记 (access log).

- admin: everything.
- archivist: every fonds, or the fonds listed on its token; catalogue, grants, the access log.
- operator: scans and files within its fonds; sees batches and the items of its fonds.
- reader: searches and reads within its fonds; an item with a 密级, or not marked open (开放), is
  hidden from a reader unless an archivist granted that reader (its token, or the person) the item.

Hidden items answer 404, as if they did not exist: a reader learns nothing from a 档号 it may not see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from scanner_service.archive.archival_code import InvalidArchivalCode
from scanner_service.archive.filing import find_item
from scanner_service.archive.models import (
    ITEM_EVENT_KINDS,
    AccessRecord,
    ApiToken,
    Batch,
    Event,
    Grant,
    Item,
    Role,
    SearchEntry,
    User,
)
from scanner_service.exceptions import ConfigError, Forbidden, NotFound, UnusableInput

OPEN_VALUES = ("开放",)  # as stored: catalogue_store.normal_open_status writes every "open" this way
STAFF = (Role.admin, Role.archivist, Role.operator)


@dataclass(frozen=True)
class Caller:
    """Who is asking: a system with an API token, or a person logged in with a name and password.

    Both have a role and fonds; what either may see and do is decided by those alone. ``token_id`` or
    ``user_id`` says which it is (for grants, the access log and the record of corrections).
    """

    name: str
    role: Role
    fonds_list: tuple[str, ...] = ()
    token_id: int | None = None
    user_id: int | None = None

    @classmethod
    def of_token(cls, token: ApiToken) -> Caller:
        return cls(name=token.name, role=token.role, fonds_list=tuple(token.fonds_list), token_id=token.id)

    @classmethod
    def of_user(cls, user: User) -> Caller:
        return cls(name=user.name, role=user.role, fonds_list=tuple(user.fonds_list), user_id=user.id)

    @property
    def kind(self) -> str:
        return "person" if self.user_id is not None else "token"

    def attribution(self) -> dict[str, Any]:
        """Who did something, as recorded with it (events, corrections)."""
        return {"who": self.name, "kind": self.kind, "token_id": self.token_id, "user_id": self.user_id}


def parse_role(role: str) -> Role:
    """The role ``role`` names (as typed for a token or a person), or ConfigError listing the roles."""
    try:
        return Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ConfigError(f"Unknown role {role!r}; use one of: {allowed}.") from None


def parse_fonds(fonds: str | None) -> str | None:
    """Fonds codes as typed ("c015, C016" or with a full-width comma) as stored: upper case, comma-separated;
    None for none (every fonds)."""
    codes = [c.strip().upper() for c in (fonds or "").replace("，", ",").split(",") if c.strip()]
    return ",".join(codes) or None


def check_role_fonds(role: Role, fonds: str | None) -> None:
    """UnusableInput ``admin_fonds`` for an admin given fonds (as stored by :func:`parse_fonds`): an admin
    sees and manages every fonds whatever is written on it, so a list there would only mislead whoever
    reads "admin, C016" as a limit."""
    if role == Role.admin and fonds:
        raise UnusableInput(
            f"An admin is never limited to fonds ({fonds}): leave the fonds empty, or give the role archivist.",
            reason_code="admin_fonds",
        )


def fonds_scope(token: Caller) -> list[str] | None:
    """The fonds the token is limited to; None = every fonds."""
    if token.role == Role.admin:
        return None
    return list(token.fonds_list) or None


def require_role(token: Caller, *roles: Role) -> None:
    if token.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"This needs the role {allowed}; this {token.kind} is {token.role.value}.")


def require_fonds(token: Caller, fonds: str) -> None:
    scope = fonds_scope(token)
    if scope is not None and fonds.upper() not in scope:
        raise Forbidden(f"This {token.kind} is limited to fonds {', '.join(scope)}, not {fonds}.")


def is_restricted(item: Item) -> bool:
    """An item readers do not see without a grant: it has a 密级, or it is not marked open."""
    return bool(item.classification) or item.open_status not in OPEN_VALUES


def _granted(token: Caller, item_id: Any) -> ColumnElement[bool]:
    now = datetime.now(UTC)
    holder = Grant.user_id == token.user_id if token.user_id is not None else Grant.token_id == token.token_id
    return exists().where(
        holder,
        Grant.item_id == item_id,
        or_(Grant.expires_at.is_(None), Grant.expires_at > now),
    )


def may_see(session: Session, token: Caller, item: Item) -> bool:
    scope = fonds_scope(token)
    if scope is not None and item.fonds not in scope:
        return False
    if token.role != Role.reader or not is_restricted(item):
        return True
    return bool(session.scalar(select(_granted(token, item.id))))


def visible_item(session: Session, token: Caller, text: str) -> Item:
    """The item ``text`` names, if the token may see it; otherwise NotFound (the same answer as no item)."""
    item = find_item(session, text)
    if item is None or not may_see(session, token, item):
        raise NotFound(f"No item {text} that this token may see.")
    return item


def item_filter(token: Caller) -> ColumnElement[bool]:
    """The SQL condition on Item for the items the token may see (list, events)."""
    scope = fonds_scope(token)
    condition: ColumnElement[bool] = Item.fonds.in_(scope) if scope is not None else true()
    if token.role == Role.reader:
        unrestricted = and_(
            or_(Item.classification.is_(None), Item.classification == ""),
            Item.open_status.in_(OPEN_VALUES),
        )
        condition = and_(condition, or_(unrestricted, _granted(token, Item.id)))
    return condition


def search_filter(token: Caller) -> ColumnElement[bool]:
    """The SQL condition on SearchEntry (outer-joined to Item) for the pages the token may find.

    Pages of batches not filed yet are for staff only.
    """
    if token.role == Role.reader:
        return and_(SearchEntry.item_id.is_not(None), item_filter(token))
    filed = and_(SearchEntry.item_id.is_not(None), item_filter(token))
    unfiled = and_(SearchEntry.item_id.is_(None), _batch_scope(token, SearchEntry.fonds))
    return or_(filed, unfiled)


def _batch_scope(token: Caller, fonds: Any) -> ColumnElement[bool]:
    """Batches a staff token sees: all, or those of its fonds; a limited operator also sees batches
    whose fonds is not known yet (named by no 档号), since it is the one who files them."""
    scope = fonds_scope(token)
    if scope is None:
        return true()
    if token.role == Role.operator:
        return or_(fonds.in_(scope), fonds.is_(None))
    return fonds.in_(scope)


def may_see_batch(token: Caller, fonds: str | None) -> bool:
    """The same rule as :func:`_batch_scope`, for one batch whose fonds is known (or None)."""
    scope = fonds_scope(token)
    if scope is None:
        return True
    return fonds in scope if fonds else token.role == Role.operator


def batch_filter(token: Caller) -> ColumnElement[bool]:
    """The SQL condition on Batch for the batches a staff caller may see: :func:`may_see_batch` in the
    query, so that a list's limit and offset count only what the caller sees."""
    if fonds_scope(token) is None:
        return true()
    return _batch_code_scope(token)


def event_filter(token: Caller) -> ColumnElement[bool]:
    """The SQL condition on Event for the events the caller may see (``GET /api/events`` and ``/api/stream``).

    - An item's events (``item_id`` set) as the item is seen (:func:`item_filter`); a reader sees only the
      item kinds of them (filed, pages changed, described), never a correction or a page's progress.
    - Every other event (a batch's progress, flags, corrections before filing) is for staff only, and is
      seen as its batch is (:func:`may_see_batch`, by the batch's fonds as it is now); an event whose batch
      is gone, or that names none, by the fonds it was written with.
    """
    item_seen = select(Item.id).where(Item.id == Event.item_id, item_filter(token)).correlate_except(Item).exists()
    of_item = and_(Event.item_id.is_not(None), item_seen)
    if token.role == Role.reader:
        return and_(of_item, Event.kind.in_([k.value for k in ITEM_EVENT_KINDS]))
    scope = fonds_scope(token)
    if scope is None:
        return or_(of_item, Event.item_id.is_(None))
    batch_seen = select(Batch.id).where(Batch.id == Event.batch_id, _batch_code_scope(token)).correlate_except(Batch)
    batch_exists = select(Batch.id).where(Batch.id == Event.batch_id).correlate_except(Batch).exists()
    of_batch = or_(batch_seen.exists(), and_(~batch_exists, _batch_scope(token, Event.fonds)))
    return or_(of_item, and_(Event.item_id.is_(None), of_batch))


def _batch_code_scope(token: Caller) -> ColumnElement[bool]:
    """:func:`_batch_scope` on Batch, whose fonds is not a column: it is the first part of the 档号 the batch
    was filed under or is named by (``filing.batch_fonds``), both stored as formatted (``C015-WS·…``)."""
    code = func.coalesce(func.nullif(Batch.archival_code, ""), Batch.filing["target"].as_string())
    scope = fonds_scope(token) or []
    known = or_(false(), *(func.substr(code, 1, len(f) + 1) == f"{f}-" for f in scope))
    return or_(known, code.is_(None)) if token.role == Role.operator else known


def logged_code(session: Session, text: str) -> str:
    """The 档号 as the access log wrote it (the item's own spelling) for a code typed in either style; the
    text as it is when it names no item."""
    try:
        item = find_item(session, text)
    except InvalidArchivalCode:
        return text
    return item.archival_code if item is not None else text


def log_access(
    session: Session,
    token: Caller,
    item: Item,
    action: str,
    *,
    page: int | None = None,
    byte_range: str | None = None,
    purpose: str | None = None,
    client: str | None = None,
) -> None:
    """Write one 利用登记 line: who, what, when, and why if the caller said."""
    session.add(
        AccessRecord(
            token_id=token.token_id,
            user_id=token.user_id,
            who=token.name,
            role=token.role.value,
            action=action,
            archival_code=item.archival_code,
            fonds=item.fonds,
            page=page,
            byte_range=byte_range[:80] if byte_range else None,
            purpose=(purpose or None) and purpose[:500],
            client=client,
        )
    )
