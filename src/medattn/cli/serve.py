"""``medattn serve``: the auxiliary diagnosis application."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", help="address to listen on (127.0.0.1: this machine only)"),
        port: int = typer.Option(8000, help="TCP port"),
        db: str = typer.Option(None, "--db", help="SQLAlchemy URL (default: SQLite in the data directory)"),
        data_dir: Path = typer.Option(
            None, "--data-dir",
            help="where cases, the SQLite database (with the accounts) and the secret key live "
            "(default: $MEDATTN_DATA_DIR, else the user data folder, ~/.local/share/medattn on Linux)"),
        workers: int = typer.Option(None, help="inference worker threads (default 1)"),
        max_upload_mb: float = typer.Option(None, help="largest accepted upload in MB (default 200)"),
        max_request_mb: float = typer.Option(
            None, help="largest request body in MB, all files together (default 400); refused before reading"),
        keep_file_names: bool = typer.Option(
            False, "--keep-file-names",
            help="store uploads under their own file names (often patient data) instead of <case id>-<n>.<ext>"),
        create_admin: str = typer.Option(
            None, "--create-admin", metavar="NAME",
            help="first start: create this administrator if the database has no account yet "
            "(password from $MEDATTN_PASSWORD, else generated and printed once)"),
    ) -> None:
        """Start the web application and REST API (open http://HOST:PORT, API docs at /docs)."""
        import uvicorn

        from medattn.app.settings import AppSettings
        from medattn.app.web import create_app

        settings = AppSettings.from_env(db_url=db, data_dir=data_dir, workers=workers, max_upload_mb=max_upload_mb,
                                        max_request_mb=max_request_mb,
                                        keep_file_names=keep_file_names or None)
        application = create_app(settings)
        typer.echo(f"medattn: data in {settings.data_dir} (cases, secret key); "
                   f"accounts in the database {_redact(settings.database_url)}")
        if create_admin:
            _first_admin(application, create_admin)
        _account_summary(application, _users_options(db, data_dir))
        typer.echo(f"medattn: open http://{host}:{port}/ (API docs at /docs)")
        uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)


def _first_admin(application, name: str) -> None:
    import os
    import secrets

    from sqlalchemy import func, select

    from medattn.app.db import User
    from medattn.app.security import create_user

    with application.state.medattn.db.session() as s:
        if s.scalar(select(func.count()).select_from(User)):
            return
        password = os.environ.get("MEDATTN_PASSWORD") or secrets.token_urlsafe(12)
        create_user(s, name, password, admin=True)
    shown = "from $MEDATTN_PASSWORD" if os.environ.get("MEDATTN_PASSWORD") else password
    typer.echo(f"medattn: created administrator {name!r}, password: {shown}")


def _users_options(db: str | None, data_dir: Path | None) -> str:
    """The options that make `medattn users` find this server's accounts."""
    return (" --db URL" if db else "") + (f" --data-dir {data_dir}" if data_dir else "")


def _account_summary(application, options: str) -> None:
    """One line on every start: the accounts there are and how to recover one."""
    from sqlalchemy import select

    from medattn.app.db import User
    from medattn.app.security import is_disabled

    with application.state.medattn.db.session() as s:
        users = s.scalars(select(User).order_by(User.username)).all()
        admins = [u.username for u in users if u.is_admin and not is_disabled(u)]
        count = len(users)
    if not count:
        typer.echo(f"medattn: no account yet: `medattn users create --admin NAME{options}` "
                   "(or start with --create-admin NAME)")
        return
    typer.echo(f"medattn: {count} account{'s' if count != 1 else ''}, administrators: {', '.join(admins) or 'none'}; "
               f"lost password: `medattn users set-password NAME{options}`")


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
