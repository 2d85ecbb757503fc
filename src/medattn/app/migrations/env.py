"""Alembic environment: runs on the connection handed over by ``medattn.app.db.init_db``
(or on ``sqlalchemy.url`` when called from the alembic command line)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from medattn.app.db import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE support on SQLite
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
