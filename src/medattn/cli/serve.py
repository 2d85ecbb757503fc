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
        data_dir: Path = typer.Option(None, "--data-dir", help="where cases and the SQLite database live"),
        workers: int = typer.Option(None, help="inference worker threads (default 1)"),
        max_upload_mb: float = typer.Option(None, help="largest accepted upload in MB (default 200)"),
        create_admin: str = typer.Option(
            None, "--create-admin", metavar="NAME",
            help="first start: create this administrator if the database has no account yet "
            "(password from $MEDATTN_PASSWORD, else generated and printed once)"),
    ) -> None:
        """Start the web application and REST API (open http://HOST:PORT, API docs at /docs)."""
        import uvicorn

        from medattn.app.settings import AppSettings
        from medattn.app.web import create_app

        settings = AppSettings.from_env(db_url=db, data_dir=data_dir, workers=workers, max_upload_mb=max_upload_mb)
        application = create_app(settings)
        if create_admin:
            _first_admin(application, create_admin)
        typer.echo(f"medattn: data in {settings.data_dir}; database {_redact(settings.database_url)}")
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
    typer.echo(f"medattn: created administrator {name!r}, password: {shown} (change it by creating a new account)")


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
