"""People's accounts: a name and a password (argon2id), the same roles and fonds as API tokens; their
login sessions; the lockout after failed logins.

- A login gives two secrets, shown once and stored only as SHA-256: the cookie's value and the CSRF
  token. The CSRF token is HMAC-SHA256(cookie value, "csrf"), so ``csrf_token_of(cookie)`` gives it
  again to a page reloaded (``GET /api/session``) without keeping it anywhere in clear.
- A login lasts ``settings.session_hours`` from the moment it was made (use does not extend it); a
  logout, a new password or disabling the account ends it.
- Failed logins in a row answer more slowly from the third (0.5 s, doubling, at most 4 s) and at
  ``settings.lockout_failures`` lock the account for ``settings.lockout_minutes``; after that while each
  further failure locks it again, until a login succeeds or ``scanstation user enable`` clears it.
- An unknown name costs one argon2 verification, as a wrong password does, and answers the same
  error. (The slow-down and the lockout, from the third failure on one name, do tell that it exists.)
- Every login, failure, lockout and logout is logged here with the name and the client's address;
  never a password.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import secrets
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from scanner_service.archive.access import Caller, parse_fonds, parse_role
from scanner_service.archive.models import LoginSession, User, as_utc, utcnow
from scanner_service.exceptions import AccountLocked, Conflict, Forbidden, NotFound, Unauthorized, UnusableInput
from scanner_service.settings import Settings

log = logging.getLogger(__name__)

MIN_PASSWORD = 8
NAME_MAX = 200  # the catalogue's column
SLOWDOWN_FROM = 3  # the failure in a row that first answers slowly
SLOWDOWN_FIRST = 0.5  # seconds, doubled at each further failure
SLOWDOWN_MAX = 4.0
BAD_LOGIN = "Wrong name or password."


@dataclass(frozen=True)
class SessionSecrets:
    """What a login hands to the browser, once: the cookie's value and the CSRF token."""

    cookie: str
    csrf_token: str


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def csrf_token_of(cookie: str) -> str:
    """The CSRF token of the login whose cookie is ``cookie`` (the same every time it is asked)."""
    return hmac.new(cookie.encode("utf-8"), b"csrf", hashlib.sha256).hexdigest()


def hasher(settings: Settings) -> PasswordHasher:
    """argon2id with the station's costs (argon2-cffi's defaults unless the settings say otherwise)."""
    return PasswordHasher(time_cost=settings.password_time_cost, memory_cost=settings.password_memory_kib)


@functools.lru_cache(maxsize=4)
def _stand_in_hash(time_cost: int, memory_kib: int) -> str:
    """A hash of no one's password, verified for an unknown name so that it costs what a wrong password does."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib).hash(secrets.token_urlsafe(16))


def slowdown(failures: int) -> float:
    """Seconds a failed login waits before answering, the ``failures``-th in a row."""
    if failures < SLOWDOWN_FROM:
        return 0.0
    return min(SLOWDOWN_FIRST * 2 ** (failures - SLOWDOWN_FROM), SLOWDOWN_MAX)


def check_password_rules(password: str) -> None:
    """UnusableInput unless the password is long enough to be stored."""
    if len(password) < MIN_PASSWORD:
        raise UnusableInput(
            f"A password needs at least {MIN_PASSWORD} characters; nothing was changed.", reason_code="weak_password"
        )


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or any(unicodedata.category(c).startswith("C") for c in name):
        raise UnusableInput(
            f"A person's name is 1 to {NAME_MAX} characters, with no control characters: {name!r}.",
            reason_code="bad_name",
        )
    return name


# ---- accounts --------------------------------------------------------------------------------------


def create_user(
    session: Session, *, name: str, role: str, password: str, settings: Settings, fonds: str | None = None
) -> User:
    """Store a new person with the password hashed (argon2id); Conflict if the name is taken."""
    name = check_new_name(session, name)
    role_value = parse_role(role)
    check_password_rules(password)
    user = User(name=name, role=role_value, fonds=parse_fonds(fonds), password_hash=hasher(settings).hash(password))
    session.add(user)
    session.flush()
    log.info("person created: %r (%s, fonds %s)", name, role_value.value, user.fonds or "all")
    return user


def check_new_name(session: Session, name: str) -> str:
    """The name as it will be stored; UnusableInput if it cannot be, Conflict if a person has it."""
    name = _checked_name(name)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"There is already a person named {name}; 'scanstation user list' shows them.")
    return name


def find_user(session: Session, name: str) -> User:
    """The person named ``name``, or NotFound."""
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None:
        raise NotFound(f"No person named {name}; 'scanstation user list' shows them.")
    return user


def list_users(session: Session) -> list[User]:
    """Every person, by name."""
    return list(session.scalars(select(User).order_by(User.name)))


def change_password(session: Session, name: str, password: str, *, settings: Settings) -> User:
    """Set a new password; the person's logins end (whoever knew the old one is logged out)."""
    check_password_rules(password)
    user = find_user(session, name)
    user.password_hash = hasher(settings).hash(password)
    _end_sessions(session, user)
    log.info("password changed: %r", user.name)
    return user


def set_disabled(session: Session, name: str, disabled: bool) -> User:
    """Disable a person (their logins end and no password opens the account) or enable them again,
    which also clears a lockout."""
    user = find_user(session, name)
    user.disabled = disabled
    if disabled:
        _end_sessions(session, user)
    else:
        user.failed_logins, user.locked_until = 0, None
    log.info("person %s: %r", "disabled" if disabled else "enabled", user.name)
    return user


def _end_sessions(session: Session, user: User) -> None:
    session.execute(
        update(LoginSession)
        .where(LoginSession.user_id == user.id, LoginSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def locked_until(user: User, now: datetime | None = None) -> datetime | None:
    """When the person's lockout ends, if it has not yet."""
    if user.locked_until is None:
        return None
    until = as_utc(user.locked_until)
    return until if until > (now or utcnow()) else None


# ---- logging in and out ----------------------------------------------------------------------------


def login(
    session: Session, name: str, password: str, client: str | None, *, settings: Settings
) -> tuple[User, LoginSession, SessionSecrets]:
    """Check the name and password and open a login session.

    Unauthorized for a wrong name or password (the same answer for both) or a disabled account;
    AccountLocked while the account is locked. A failure is committed on ``session`` before the
    error is raised, so the count survives the caller's rollback.
    """
    now = utcnow()
    name = name.strip()  # as stored
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        _verify(settings, _stand_in_hash(settings.password_time_cost, settings.password_memory_kib), password)
        log.warning("login failed: unknown name %r from %s", name, client)
        raise Unauthorized(BAD_LOGIN, reason_code="bad_login")
    until = locked_until(user, now)
    if until is not None:
        log.warning("login refused: %r is locked until %s, from %s", user.name, until.isoformat(), client)
        raise _locked(user, until, now)
    if not _verify(settings, user.password_hash, password):
        _failed(session, user, client, now, settings=settings)
    if user.disabled:
        log.warning("login refused: %r is disabled, from %s", user.name, client)
        raise Unauthorized(
            f"The account {user.name} is disabled; an administrator can enable it ('scanstation user enable').",
            reason_code="disabled",
        )
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    if hasher(settings).check_needs_rehash(user.password_hash):
        user.password_hash = hasher(settings).hash(password)
    cookie = secrets.token_urlsafe(32)
    csrf = csrf_token_of(cookie)
    opened = LoginSession(
        user_id=user.id,
        secret_hash=_sha256(cookie),
        csrf_hash=_sha256(csrf),
        created_at=now,
        expires_at=now + timedelta(hours=settings.session_hours),
        client=client[:80] if client else None,
    )
    session.add(opened)
    session.flush()
    log.info("login: %r (%s) from %s", user.name, user.role.value, client)
    return user, opened, SessionSecrets(cookie=cookie, csrf_token=csrf)


def _verify(settings: Settings, stored: str, password: str) -> bool:
    try:
        return hasher(settings).verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _failed(session: Session, user: User, client: str | None, now: datetime, *, settings: Settings) -> NoReturn:
    """Count one failure (in SQL, so that parallel tries all count), commit it, wait, and raise."""
    failures = session.execute(
        update(User)
        .where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
    ).scalar_one()
    locked = failures >= settings.lockout_failures
    if locked:
        user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
    session.commit()  # the caller's transaction rolls back on the error below; the count must stay
    log.warning("login failed: %r from %s (%d in a row)", user.name, client, failures)
    if locked:
        until = as_utc(user.locked_until) if user.locked_until else now
        log.warning(
            "account locked: %r after %d failed logins in a row, until %s (from %s)",
            user.name,
            failures,
            until.isoformat(),
            client,
        )
        raise _locked(user, until, now)
    time.sleep(slowdown(failures))
    raise Unauthorized(BAD_LOGIN, reason_code="bad_login")


def _locked(user: User, until: datetime, now: datetime) -> AccountLocked:
    seconds = max(1, math.ceil((until - now).total_seconds()))
    minutes = math.ceil(seconds / 60)
    return AccountLocked(
        f"Too many failed logins: the account {user.name} is locked for {minutes} more minute"
        f"{'s' if minutes != 1 else ''} (until {until:%H:%M} UTC); an administrator can unlock it at once "
        "('scanstation user enable').",
        retry_after=seconds,
    )


def active_session(session: Session, cookie: str, now: datetime | None = None) -> LoginSession:
    """The open login session whose cookie is ``cookie``; Unauthorized if it is unknown, ended or expired,
    or its person is disabled."""
    row = session.scalar(select(LoginSession).where(LoginSession.secret_hash == _sha256(cookie)))
    if row is None or row.ended_at is not None:
        raise Unauthorized("This login is unknown or has ended; log in again.", reason_code="session_ended")
    if as_utc(row.expires_at) <= (now or utcnow()):
        raise Unauthorized("This login has expired; log in again.", reason_code="session_expired")
    if row.user.disabled:
        raise Unauthorized(f"The account {row.user.name} is disabled.", reason_code="disabled")
    return row


def require_csrf(login_session: LoginSession, token: str | None) -> None:
    """Forbidden (reason ``csrf``) unless ``token`` is the login's CSRF token."""
    if not token or not hmac.compare_digest(_sha256(token), login_session.csrf_hash):
        raise Forbidden(
            "A change made with a login cookie needs the header X-CSRF-Token with the csrf_token of "
            "POST or GET /api/session.",
            reason_code="csrf",
        )


def session_caller(session: Session, cookie: str) -> Caller:
    """The person logged in with ``cookie``, as a Caller (Unauthorized as :func:`active_session`)."""
    return Caller.of_user(active_session(session, cookie).user)


def logout(session: Session, cookie: str, client: str | None) -> User | None:
    """End the login whose cookie is ``cookie``; the person, or None if it had ended already (or never was)."""
    row = session.scalar(
        select(LoginSession).where(LoginSession.secret_hash == _sha256(cookie), LoginSession.ended_at.is_(None))
    )
    if row is None:
        return None
    row.ended_at = utcnow()
    log.info("logout: %r from %s", row.user.name, client)
    return row.user
