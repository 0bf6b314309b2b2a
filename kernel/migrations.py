"""Alembic, one history per service: applying it, and the kernel's part of every history."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config(script_location: Path, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, script_location: Path, revision: str = "head") -> None:
    """Bring the store at ``engine`` to ``revision`` of the history in ``script_location``."""

    def run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Replicas starting together on an empty database would race to
            # create alembic_version; the first takes the lock, the rest wait
            # and then find the store at head. (SQLite's BEGIN IMMEDIATE already
            # serialises them.)
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7710500001)")
        command.upgrade(alembic_config(script_location, connection), revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def run_migrations() -> None:
    """The body of every service's ``env.py``: migrate the connection we were handed."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through `vestry db upgrade`, which provides the connection"
        )
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def create_kernel_tables() -> None:
    """The outbox and inbox, as the first migration of every service creates them."""
    op.create_table(
        "outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "seq"])
    op.create_table(
        "inbox",
        sa.Column("scope", sa.String(100), primary_key=True),
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )


def create_answers_table() -> None:
    """The record of each command's answer by envelope id (``kernel.store.answers_table``),
    as every service's history adds it."""
    op.create_table(
        "answers",
        sa.Column("scope", sa.String(200), primary_key=True),
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("reply", sa.LargeBinary, nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_answers_answered_at", "answers", ["answered_at"])
