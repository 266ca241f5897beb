"""Alembic environment: runs migrations on the URL given by scanner_service.archive.db.alembic_config."""

from __future__ import annotations

from alembic import context

from scanner_service.archive.db import get_engine
from scanner_service.archive.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = get_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()


run_migrations_online()
