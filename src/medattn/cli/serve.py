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
    ) -> None:
        """Start the web application and REST API (open http://HOST:PORT, API docs at /docs)."""
        import uvicorn

        from medattn.app.settings import AppSettings
        from medattn.app.web import create_app

        settings = AppSettings.from_env(db_url=db, data_dir=data_dir, workers=workers, max_upload_mb=max_upload_mb)
        application = create_app(settings)
        typer.echo(f"medattn: data in {settings.data_dir}; database {_redact(settings.database_url)}")
        typer.echo(f"medattn: open http://{host}:{port}/ (API docs at /docs)")
        uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
