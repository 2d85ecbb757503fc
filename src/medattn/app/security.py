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
