"""API tokens: random secrets shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.archive.access import parse_fonds, parse_role
from scanner_service.archive.models import ApiToken
from scanner_service.exceptions import Unauthorized


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, *, role: str, fonds: str | None = None, name: str | None = None) -> str:
    """Store a new token and return its secret; the secret itself is never stored."""
    role_value = parse_role(role)
    secret = "sst_" + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name or f"{role_value.value} token",
            role=role_value,
            fonds=parse_fonds(fonds),
            token_hash=hash_token(secret),
        )
    )
    session.flush()
    return secret


def authenticate(session: Session, token: str) -> ApiToken:
    """The token's record, or Unauthorized."""
    return token_of_hash(session, hash_token(token))


def token_of_hash(session: Session, token_hash: str) -> ApiToken:
    """The record of the token whose SHA-256 is ``token_hash``, or Unauthorized if unknown or revoked."""
    record = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if record is None or record.revoked:
        raise Unauthorized("The API token is unknown or revoked.")
    return record
