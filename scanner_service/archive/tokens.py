"""API tokens: random secrets shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import logging
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.archive.access import check_role_fonds, parse_fonds, parse_role
from scanner_service.archive.models import ApiToken
from scanner_service.exceptions import NotFound, Unauthorized

log = logging.getLogger(__name__)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, *, role: str, fonds: str | None = None, name: str | None = None) -> str:
    """Store a new token and return its secret; the secret itself is never stored."""
    return issue_token(session, role=role, fonds=fonds, name=name)[1]


def issue_token(
    session: Session, *, role: str, fonds: str | None = None, name: str | None = None
) -> tuple[ApiToken, str]:
    """Store a new token: its record (with its id) and its secret, which is shown once and never stored."""
    role_value = parse_role(role)
    check_role_fonds(role_value, parse_fonds(fonds))
    secret = "sst_" + secrets.token_urlsafe(32)
    record = ApiToken(
        name=(name or "").strip() or f"{role_value.value} token",
        role=role_value,
        fonds=parse_fonds(fonds),
        token_hash=hash_token(secret),
    )
    session.add(record)
    session.flush()
    return record, secret


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, revoked ones too, by id (what 'scanstation token list' prints)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int) -> ApiToken:
    """Revoke a token for good: it opens the API no more (an open event stream ends within 15 s). Revoking
    it again changes nothing; NotFound if there is no such token."""
    record = session.get(ApiToken, token_id)
    if record is None:
        raise NotFound(f"No token {token_id}; 'scanstation token list' shows them.")
    if not record.revoked:
        record.revoked = True
        log.info("token revoked: %d (%s, %r)", record.id, record.role.value, record.name)
    return record


def authenticate(session: Session, token: str) -> ApiToken:
    """The token's record, or Unauthorized."""
    return token_of_hash(session, hash_token(token))


def token_of_hash(session: Session, token_hash: str) -> ApiToken:
    """The record of the token whose SHA-256 is ``token_hash``, or Unauthorized if unknown or revoked."""
    record = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if record is None or record.revoked:
        raise Unauthorized("The API token is unknown or revoked.")
    return record
