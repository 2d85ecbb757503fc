"""``medattn users``: local accounts of the diagnosis application."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

users_app = typer.Typer(help="Manage accounts of the diagnosis application.", no_args_is_help=True)


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
    name: str = typer.Argument(..., help="user name"),
    admin: bool = typer.Option(False, "--admin", help="administrator: sees every user's cases"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
    db: str = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in the data directory)"),
    data_dir: Path = typer.Option(None, "--data-dir", help="the application's data directory"),
) -> None:
    """Create an account (password from a prompt, $MEDATTN_PASSWORD, or --password-stdin)."""
    from medattn.app.security import create_user

    database = _db(db, data_dir)
    password = _read_password(password_stdin)
    with database.session() as s:
        create_user(s, name, password, admin=admin)
    typer.echo(f"created {'administrator' if admin else 'user'} {name}")


@users_app.command("list")
def list_users(
    db: str = typer.Option(None, "--db", help="SQLAlchemy URL"),
    data_dir: Path = typer.Option(None, "--data-dir", help="the application's data directory"),
) -> None:
    """List the accounts."""
    from sqlalchemy import select

    from medattn.app.db import User

    with _db(db, data_dir).session() as s:
        for u in s.scalars(select(User).order_by(User.username)):
            typer.echo(f"{u.username}\t{'admin' if u.is_admin else 'user'}\t{u.created_at:%Y-%m-%d}")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
