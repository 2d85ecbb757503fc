"""``medattn users``: local accounts of the diagnosis application.

Passwords are never command-line arguments (they would stay in the shell
history and in ``ps``): they come from a hidden prompt (typed twice), from
``$MEDATTN_PASSWORD`` or, with ``--password-stdin``, from the first line of
standard input.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

users_app = typer.Typer(
    help="Manage accounts of the diagnosis application: create, list, set-password, disable, enable, delete.\n\n"
    "The accounts are in the application's database in its data directory ($MEDATTN_DATA_DIR, else "
    "~/.local/share/medattn on Linux); give the same --data-dir / --db as `medattn serve`.",
    no_args_is_help=True,
)

NAME = typer.Argument(..., help="user name")
DB = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in the data directory)")
DATA_DIR = typer.Option(None, "--data-dir", help="the application's data directory (default as for `medattn serve`)")
PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="read the password from the first line of standard input"
)


def _db(db: str | None, data_dir: Path | None):
    from medattn.app.db import Database
    from medattn.app.settings import AppSettings

    settings = AppSettings.from_env(db_url=db, data_dir=data_dir)
    settings.ensure_dirs()
    return Database(settings.database_url)


def _read_password(password_stdin: bool) -> str:
    env = os.environ.get("MEDATTN_PASSWORD")
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if env:
        return env
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("create")
def create(
    name: str = NAME,
    admin: bool = typer.Option(False, "--admin", help="administrator: sees every user's cases"),
    password_stdin: bool = PASSWORD_STDIN,
    db: str = DB,
    data_dir: Path = DATA_DIR,
) -> None:
    """Create an account (password from a prompt, $MEDATTN_PASSWORD, or --password-stdin)."""
    from medattn.app.security import create_user

    database = _db(db, data_dir)
    password = _read_password(password_stdin)
    with database.session() as s:
        create_user(s, name, password, admin=admin)
    typer.echo(f"created {'administrator' if admin else 'user'} {name}")


@users_app.command("list")
def list_users(db: str = DB, data_dir: Path = DATA_DIR) -> None:
    """List the accounts: name, role, creation date, and 'disabled' for disabled ones."""
    from sqlalchemy import select

    from medattn.app.db import User
    from medattn.app.security import is_disabled

    with _db(db, data_dir).session() as s:
        for u in s.scalars(select(User).order_by(User.username)):
            state = "\tdisabled" if is_disabled(u) else ""
            typer.echo(f"{u.username}\t{'admin' if u.is_admin else 'user'}\t{u.created_at:%Y-%m-%d}{state}")


@users_app.command("set-password")
def set_password(name: str = NAME, password_stdin: bool = PASSWORD_STDIN, db: str = DB,
                 data_dir: Path = DATA_DIR) -> None:
    """Give an account a new password, e.g. a lost administrator's (prompt, $MEDATTN_PASSWORD or --password-stdin).

    Run it on the server, with the same --data-dir / --db as `medattn serve`.
    """
    from medattn.app.security import get_user, is_disabled
    from medattn.app.security import set_password as store_password

    database = _db(db, data_dir)
    with database.session() as s:
        get_user(s, name)  # an unknown name is refused before asking for a password
    password = _read_password(password_stdin)
    with database.session() as s:
        disabled = is_disabled(store_password(s, name, password))
    typer.echo(f"new password set for {name}" + (" (the account is disabled: `medattn users enable`)"
                                                  if disabled else ""))


@users_app.command("disable")
def disable(name: str = NAME, db: str = DB, data_dir: Path = DATA_DIR) -> None:
    """Disable an account: no sign-in, its API tokens revoked, open sessions refused; cases kept."""
    from medattn.app.security import set_disabled

    with _db(db, data_dir).session() as s:
        set_disabled(s, name, True)
    typer.echo(f"disabled {name}")


@users_app.command("enable")
def enable(name: str = NAME, db: str = DB, data_dir: Path = DATA_DIR) -> None:
    """Enable a disabled account again, with the password it had."""
    from medattn.app.security import set_disabled

    with _db(db, data_dir).session() as s:
        set_disabled(s, name, False)
    typer.echo(f"enabled {name}")


@users_app.command("delete")
def delete(
    name: str = NAME,
    cases_to: str = typer.Option(None, "--cases-to", metavar="NAME",
                                 help="hand the account's cases to this account (needed when it owns cases)"),
    db: str = DB,
    data_dir: Path = DATA_DIR,
) -> None:
    """Delete an account and its API tokens (the only enabled administrator cannot be deleted)."""
    from medattn.app.security import delete_user

    with _db(db, data_dir).session() as s:
        moved = delete_user(s, name, cases_to)
    typer.echo(f"deleted {name}" + (f"; {moved} cases now belong to {cases_to}" if moved else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
