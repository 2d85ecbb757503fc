"""Accounts, password hashing (Argon2id), personal API tokens, server-side sessions, CSRF tokens,
sign-in throttling."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections import deque
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from medattn.app.db import ApiToken, User, WebSession, utcnow
from medattn.errors import MedattnError

_hasher = PasswordHasher()
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
TOKEN_PREFIX = "mdt_"


class AuthError(MedattnError):
    """Bad credentials or an invalid account request."""


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AuthError("password must have at least 8 characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(session: Session, username: str, password: str, admin: bool = False) -> User:
    if not _USERNAME.match(username):
        raise AuthError(f"invalid user name {username!r}: use 2-64 letters, digits, '_', '.', '@' or '-'")
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise AuthError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), is_admin=admin)
    session.add(user)
    session.flush()
    return user


# A dummy hash so that unknown users take as long to reject as wrong passwords.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """Create a personal API token; the plain token is returned once and never stored."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tok = ApiToken(user_id=user.id, name=name[:100] or "token", token_hash=_token_digest(plain), prefix=plain[:12])
    session.add(tok)
    session.flush()
    return tok, plain


def token_for(session: Session, plain: str) -> ApiToken | None:
    """The token record of a plain token (read only)."""
    if not plain.startswith(TOKEN_PREFIX):
        return None
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_digest(plain)))


def user_for_token(session: Session, plain: str) -> User | None:
    tok = token_for(session, plain)
    return None if tok is None else tok.user


def token_use_is_stale(tok: ApiToken, seconds: float = 60.0) -> bool:
    """Whether ``last_used_at`` should be refreshed (at most once a minute: a write per request would
    serialise every API call on the database's write lock)."""
    return tok.last_used_at is None or (utcnow() - tok.last_used_at).total_seconds() > seconds


def record_token_use(db: Any, token_id: int) -> None:
    """Refresh ``last_used_at`` in its own short transaction, never inside a request's session."""
    with db.session() as s:
        tok = s.get(ApiToken, token_id)
        if tok is not None:
            tok.last_used_at = utcnow()


# ---------------------------------------------------------------- server-side sessions


def start_session(session: Session, user: User, max_age_s: int) -> str:
    """Record a new sign-in; returns the random id to put in the (signed) cookie. Expired rows are purged."""
    from sqlalchemy import delete

    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    plain = secrets.token_urlsafe(32)
    session.add(WebSession(user_id=user.id, token_hash=_token_digest(plain), created_at=now,
                           expires_at=now + dt.timedelta(seconds=max_age_s)))
    session.flush()
    return plain


def session_user(session: Session, plain: str | None) -> User | None:
    """The user of a live (not signed out, not expired) session id, else ``None``."""
    if not plain:
        return None
    row = session.scalar(select(WebSession).where(WebSession.token_hash == _token_digest(plain)))
    if row is None or row.expires_at < utcnow():
        return None
    return row.user


def end_session(session: Session, plain: str | None) -> None:
    """Sign out: the session id stops working everywhere, whoever holds a copy of the cookie."""
    from sqlalchemy import delete

    if plain:
        session.execute(delete(WebSession).where(WebSession.token_hash == _token_digest(plain)))


# ---------------------------------------------------------------- sign-in throttling


class LoginThrottle:
    """Failed sign-ins per account and per client address in a sliding window (in memory, per process).

    After ``per_account`` failures for one user name, or ``per_address`` from one address, within
    ``window_s`` seconds, further attempts are refused (HTTP 429) until the oldest failure leaves the
    window, whether the password is right or not; :meth:`retry_after` says how long. A successful
    sign-in clears the account's failures.
    """

    def __init__(self, per_account: int = 5, per_address: int = 20, window_s: float = 900.0,
                 clock: Any = time.monotonic) -> None:
        self.per_account, self.per_address, self.window_s = per_account, per_address, window_s
        self._clock = clock
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _wait(self, key: str, limit: int, now: float) -> float:
        q = self._fails.get(key)
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            self._fails.pop(key, None)
            return 0.0
        return q[0] + self.window_s - now if len(q) >= limit else 0.0

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until ``username`` may try again from ``address`` (0: now)."""
        now = self._clock()
        with self._lock:
            wait = max(self._wait("u:" + username.lower(), self.per_account, now),
                       self._wait("a:" + address, self.per_address, now))
        return math.ceil(wait)

    #: distinct keys kept at most; beyond it, keys whose failures all left the window are dropped
    MAX_KEYS = 100_000

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._fails) > self.MAX_KEYS:
                for key in [k for k, q in self._fails.items() if q[-1] <= now - self.window_s]:
                    del self._fails[key]
            for key in ("u:" + username.lower(), "a:" + address):
                self._fails.setdefault(key, deque()).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._fails.pop("u:" + username.lower(), None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected, given)


# ---------------------------------------------------------------- account management (``medattn users``)

#: prefixed to the password hash of a disabled account (as ``passwd -l`` does): no password matches it
DISABLED_MARK = "!"


def is_disabled(user: User) -> bool:
    return user.password_hash.startswith(DISABLED_MARK)


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AuthError(f"no user {username!r} (see `medattn users list`)")
    return user


def _check_not_last_admin(session: Session, user: User, action: str) -> None:
    if not user.is_admin or is_disabled(user):
        return
    admins = session.scalars(select(User).where(User.is_admin)).all()
    if not any(a.id != user.id and not is_disabled(a) for a in admins):
        raise AuthError(f"cannot {action} {user.username!r}: it is the only enabled administrator "
                        "(create another with `medattn users create --admin NAME` first)")


def set_password(session: Session, username: str, password: str) -> User:
    """Give ``username`` a new password; a disabled account stays disabled (``enable`` it)."""
    user = get_user(session, username)
    user.password_hash = (DISABLED_MARK if is_disabled(user) else "") + hash_password(password)
    return user


def set_disabled(session: Session, username: str, disabled: bool) -> User:
    """Disable (no sign-in, API tokens revoked, open sessions refused) or enable an account.

    Enabling restores the password the account had.
    """
    user = get_user(session, username)
    if disabled and not is_disabled(user):
        _check_not_last_admin(session, user, "disable")
        user.password_hash = DISABLED_MARK + user.password_hash
        user.tokens.clear()
    elif not disabled and is_disabled(user):
        user.password_hash = user.password_hash.removeprefix(DISABLED_MARK)
    return user


def delete_user(session: Session, username: str, cases_to: str | None = None) -> int:
    """Delete an account and its API tokens; its cases go to ``cases_to``. Returns the cases moved.

    An account that owns cases is only deleted with ``cases_to`` (disable it to keep them as they are).
    """
    from sqlalchemy import func, update

    from medattn.app.db import Case

    user = get_user(session, username)
    _check_not_last_admin(session, user, "delete")
    owned = session.scalar(select(func.count()).select_from(Case).where(Case.owner_id == user.id)) or 0
    if owned and cases_to is None:
        raise AuthError(f"{username!r} owns {owned} cases: give --cases-to NAME to hand them to another account, "
                        "or disable the account instead")
    if owned:
        heir = get_user(session, cases_to)
        if heir.id == user.id:
            raise AuthError("--cases-to must name another account")
        session.execute(update(Case).where(Case.owner_id == user.id).values(owner_id=heir.id))
    session.delete(user)
    session.flush()
    return int(owned)
