"""Accounts, password hashing (Argon2id), personal API tokens, CSRF tokens."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from medattn.app.db import ApiToken, User, utcnow
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


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected, given)
