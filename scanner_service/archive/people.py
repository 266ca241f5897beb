"""People's accounts: a name and a password (argon2id), the same roles and fonds as API tokens; their
login sessions; the lockout after failed logins.

- A login gives two secrets, shown once and stored only as SHA-256: the cookie's value and the CSRF
  token. The CSRF token is HMAC-SHA256(cookie value, "csrf"), so ``csrf_token_of(cookie)`` gives it
  again to a page reloaded (``GET /api/session``) without keeping it anywhere in clear.
- A login lasts ``settings.session_hours`` from the moment it was made (use does not extend it); a
  logout, a new password or disabling the account ends it.
- Failed logins in a row answer more slowly from the third (0.5 s, doubling, at most 4 s) and at
  ``settings.lockout_failures`` lock the account for ``settings.lockout_minutes``; after that while each
  further failure locks it again, until a login succeeds or ``scanstation user enable`` clears it. Each
  attempt is counted before its password is verified, so parallel guesses cannot pass a lock.
- An unknown name answers as a wrong password does: one argon2 verification, the same error, the same
  slow-down and lock (counted in memory, see :class:`_UnknownNames`). A disabled account answers the same
  error too, even to the right password; the log says which it was.
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
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from anyio import to_thread
from anyio.lowlevel import RunVar
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session

from scanner_service.archive.access import Caller, check_role_fonds, parse_fonds, parse_role
from scanner_service.archive.db import session_scope
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
    check_role_fonds(role_value, parse_fonds(fonds))
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


def set_role(session: Session, name: str, *, role: str | None = None, fonds: str | None = None) -> User:
    """Give a person another role and/or other fonds (``fonds`` "" for every fonds, None to keep them).

    Takes effect at the person's next request: a login carries no role of its own."""
    user = find_user(session, name)
    new_role = parse_role(role) if role is not None else user.role
    new_fonds = parse_fonds(fonds) if fonds is not None else user.fonds
    check_role_fonds(new_role, new_fonds)
    user.role, user.fonds = new_role, new_fonds
    log.info("person %r is now %s, fonds %s", user.name, user.role.value, user.fonds or "all")
    return user


def change_user(
    session: Session,
    name: str,
    *,
    by: Caller,
    settings: Settings,
    password: str | None = None,
    disabled: bool | None = None,
    role: str | None = None,
    fonds: str | None = None,
) -> User:
    """Change what is given of a person's account (``scanstation user passwd|disable|enable`` and the role),
    all or nothing. A person may not disable their own account nor change their own role or fonds
    (Conflict ``own_account``): the station is not left without the administrator at the page."""
    user = find_user(session, name)
    if by.user_id == user.id:
        own = (disabled is True) or (role is not None and parse_role(role) != user.role)
        own = own or (fonds is not None and parse_fonds(fonds) != user.fonds)
        if own:
            raise Conflict(
                "A person cannot disable their own account or change their own role or fonds; ask another "
                "administrator (or use 'scanstation user' at the station).",
                reason_code="own_account",
            )
    if password is not None:
        change_password(session, user.name, password, settings=settings)
    if role is not None or fonds is not None:
        set_role(session, user.name, role=role, fonds=fonds)
    if disabled is not None:  # enabling an enabled account still clears a lockout
        set_disabled(session, user.name, disabled)
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
#
# A login is three steps, so that no worker thread waits on the slow parts: the attempt is counted (SQL, or
# the in-process count of an unknown name) before anything is verified; the password is verified (argon2,
# at most VERIFYING at a time, in a thread); a refusal waits its slow-down asleep (no thread held).

VERIFYING = 2  # argon2 verifications at once (each takes settings.password_memory_kib of memory)
_verifiers: RunVar[anyio.CapacityLimiter] = RunVar("password_verifiers")


@dataclass(frozen=True)
class Attempt:
    """One login attempt, counted before the password is verified."""

    name: str
    user_id: int | None  # None: no person has that name
    stored_hash: str | None
    disabled: bool
    failures: int  # this attempt's place in the failures in a row, if it fails
    now: datetime


@dataclass(frozen=True)
class Login:
    """A login opened: who, until when, and the secrets for the browser."""

    caller: Caller
    expires_at: datetime
    secrets: SessionSecrets


async def login(url: str, name: str, password: str, client: str | None, *, settings: Settings) -> Login:
    """Check the name and password and open a login session.

    Unauthorized ``bad_login`` for a wrong password, an unknown name or a disabled account alike (the log
    says which); AccountLocked while the name is locked. Unknown names are counted, slowed down and locked
    like known ones, so neither the time taken nor a 429 tells whether a name exists.
    """
    attempt = await to_thread.run_sync(functools.partial(_begin, url, name, client, settings=settings))
    new_hash = await to_thread.run_sync(_verified, settings, attempt.stored_hash, password, limiter=_limiter())
    if new_hash is None or attempt.disabled:
        delay, refusal = _refusal(attempt, client, right_password=new_hash is not None, settings=settings)
        await anyio.sleep(delay)
        raise refusal
    return await to_thread.run_sync(functools.partial(_open, url, attempt, new_hash, client, settings=settings))


def _limiter() -> anyio.CapacityLimiter:
    try:
        return _verifiers.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(VERIFYING)
        _verifiers.set(limiter)
        return limiter


def _begin(url: str, name: str, client: str | None, *, settings: Settings) -> Attempt:
    """Count the attempt as a failure (committed at once: parallel attempts all count, and none passes a lock
    that an earlier one set); AccountLocked if the name is locked."""
    now = utcnow()
    name = name.strip()  # as stored
    with session_scope(url) as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            return Attempt(name, None, None, False, _unknown.count(name, now, settings=settings), now)
        user_id, stored, disabled = user.id, user.password_hash, user.disabled
        lock = now + timedelta(minutes=settings.lockout_minutes)
        counted = session.execute(
            update(User)
            .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
            .values(
                failed_logins=User.failed_logins + 1,
                locked_until=case((User.failed_logins + 1 >= settings.lockout_failures, lock), else_=User.locked_until),
            )
            .returning(User.failed_logins)
            .execution_options(synchronize_session=False)
        ).scalar()
        if counted is None:
            until = session.scalar(select(User.locked_until).where(User.id == user_id))
            until = as_utc(until) if until is not None else now
            log.warning("login refused: %r is locked until %s, from %s", name, until.isoformat(), client)
            raise _locked(name, until, now)
    return Attempt(name, user_id, stored, disabled, counted, now)


def _verified(settings: Settings, stored: str | None, password: str) -> str | None:
    """The hash to keep if ``password`` is the one ``stored`` (hashed again if the costs changed), else None.

    An unknown name (``stored`` None) costs one verification of a stand-in hash, as a wrong password does."""
    if stored is None:
        _verify(settings, _stand_in_hash(settings.password_time_cost, settings.password_memory_kib), password)
        return None
    if not _verify(settings, stored, password):
        return None
    return hasher(settings).hash(password) if hasher(settings).check_needs_rehash(stored) else stored


def _refusal(
    attempt: Attempt, client: str | None, *, right_password: bool, settings: Settings
) -> tuple[float, Unauthorized | AccountLocked]:
    """What a failed attempt answers, after how many seconds; it is logged with the real reason."""
    name, failures = attempt.name, attempt.failures
    if attempt.user_id is None:
        log.warning("login failed: unknown name %r from %s (%d in a row)", name, client, failures)
    elif right_password:
        log.warning("login refused: %r is disabled (right password), from %s (%d in a row)", name, client, failures)
    else:
        log.warning("login failed: %r from %s (%d in a row)", name, client, failures)
    if failures >= settings.lockout_failures:
        until = attempt.now + timedelta(minutes=settings.lockout_minutes)
        log.warning(
            "account locked: %r after %d failed logins in a row, until %s (from %s)",
            name,
            failures,
            until.isoformat(),
            client,
        )
        return 0.0, _locked(name, until, attempt.now)
    return slowdown(failures), Unauthorized(BAD_LOGIN, reason_code="bad_login")


def _open(url: str, attempt: Attempt, password_hash: str, client: str | None, *, settings: Settings) -> Login:
    """The right password: the count of failures and any lock are cleared, a login session is opened
    (Unauthorized if the password was changed or the account disabled since the attempt began)."""
    now = attempt.now
    with session_scope(url) as session:
        user = session.get_one(User, attempt.user_id)
        if user.password_hash != attempt.stored_hash or user.disabled:  # changed while it was verified
            log.warning("login refused: %r changed password or was disabled meanwhile, from %s", user.name, client)
            raise Unauthorized(BAD_LOGIN, reason_code="bad_login")
        user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
        if password_hash != user.password_hash:
            user.password_hash = password_hash
        cookie = secrets.token_urlsafe(32)
        csrf = csrf_token_of(cookie)
        opened = LoginSession(
            user_id=user.id,
            secret_hash=cookie_hash(cookie),
            csrf_hash=_sha256(csrf),
            created_at=now,
            expires_at=now + timedelta(hours=settings.session_hours),
            client=client[:80] if client else None,
        )
        session.add(opened)
        session.flush()
        log.info("login: %r (%s) from %s", user.name, user.role.value, client)
        return Login(Caller.of_user(user), as_utc(opened.expires_at), SessionSecrets(cookie=cookie, csrf_token=csrf))


def _verify(settings: Settings, stored: str, password: str) -> bool:
    try:
        return hasher(settings).verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


class _UnknownNames:
    """Failed logins of names no person has, counted in this process as the users table counts a person's.

    Kept in memory (no table): an entry goes UNKNOWN_KEPT after its last failure unless it is locked, and
    at most UNKNOWN_MAX names are kept (the oldest go first). Each API process counts on its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: OrderedDict[str, tuple[int, datetime, datetime | None]] = OrderedDict()

    def count(self, name: str, now: datetime, *, settings: Settings) -> int:
        """The failure this attempt will be (as :func:`_begin` counts a person's); AccountLocked if locked."""
        with self._lock:
            self._forget(now)
            failures, _, locked = self._names.get(name, (0, now, None))
            if locked is not None and locked > now:
                log.warning("login refused: unknown name %r is locked until %s", name, locked.isoformat())
                raise _locked(name, locked, now)
            failures += 1
            if failures >= settings.lockout_failures:
                locked = now + timedelta(minutes=settings.lockout_minutes)
            self._names[name] = (failures, now, locked)
            self._names.move_to_end(name)
            while len(self._names) > UNKNOWN_MAX:
                self._names.popitem(last=False)
            return failures

    def _forget(self, now: datetime) -> None:
        for name, (_, last, locked) in list(self._names.items()):
            if now - last > UNKNOWN_KEPT and (locked is None or locked <= now):
                del self._names[name]

    def clear(self) -> None:
        with self._lock:
            self._names.clear()


UNKNOWN_KEPT = timedelta(hours=1)
UNKNOWN_MAX = 10_000
_unknown = _UnknownNames()


def _locked(name: str, until: datetime, now: datetime) -> AccountLocked:
    seconds = max(1, math.ceil((until - now).total_seconds()))
    minutes = math.ceil(seconds / 60)
    return AccountLocked(
        f"Too many failed logins: the account {name} is locked for {minutes} more minute"
        f"{'s' if minutes != 1 else ''} (until {until:%H:%M} UTC); an administrator can unlock it at once "
        "('scanstation user enable').",
        retry_after=seconds,
    )


def cookie_hash(cookie: str) -> str:
    """What is stored of a login's cookie (SHA-256)."""
    return _sha256(cookie)


def active_session(session: Session, cookie: str, now: datetime | None = None) -> LoginSession:
    """The open login session whose cookie is ``cookie``; Unauthorized as :func:`login_of_hash`."""
    return login_of_hash(session, cookie_hash(cookie), now)


def login_of_hash(session: Session, secret_hash: str, now: datetime | None = None) -> LoginSession:
    """The open login session whose cookie's SHA-256 is ``secret_hash``; Unauthorized if it is unknown, ended
    or expired, or its person is disabled."""
    row = session.scalar(select(LoginSession).where(LoginSession.secret_hash == secret_hash))
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
