"""trust and curation: one answer per prompt, teacher availability, workers, benchmarks

Revision ID: 3c1f0b7d2e45
Revises: 6a882f4cfc80
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db

revision: str = "3c1f0b7d2e45"
down_revision: str | None = "6a882f4cfc80"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # one answer per prompt (labeling, relabel)
    with op.batch_alter_table("examples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("superseded_by", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_examples_source_id"), ["source_id"], unique=False)
    _link_existing_answers()

    # teacher availability per job
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("teacher_errors", JSON, nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(sa.Column("last_teacher_error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("teacher_down_since", app.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "teacher_wait_seconds", sa.Float(), nullable=False, server_default=sa.text("0")
            )
        )
        batch_op.add_column(sa.Column("system_prompt", sa.Text(), nullable=True))

    op.create_table(
        "workers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=300), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=300), nullable=True),
        sa.Column("backend", sa.String(length=40), nullable=True),
        sa.Column("kinds", JSON, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("teacher_state", sa.String(length=20), nullable=False),
        sa.Column("teacher_down_since", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_teacher_error", sa.Text(), nullable=True),
        sa.Column("last_teacher_error_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("started_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("name", name=op.f("uq_workers_name")),
    )

    op.create_table(
        "benchmarks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_benchmarks_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmarks")),
    )
    with op.batch_alter_table("benchmarks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_benchmarks_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "benchmark_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("benchmark_id", sa.Uuid(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["benchmark_id"],
            ["benchmarks.id"],
            name=op.f("fk_benchmark_items_benchmark_id_benchmarks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_items")),
        sa.UniqueConstraint(
            "benchmark_id", "idx", name=op.f("uq_benchmark_items_benchmark_id_idx")
        ),
    )


def _link_existing_answers(batch: int = 1000) -> None:
    """Answers labeled before this revision: `source_id` from `metadata.source_example_id`; where
    a prompt has several accepted answers (earlier relabels, or a second job), every one but the
    newest is marked replaced by it (the prompt's own output too), so exports have one per prompt.
    """
    examples = sa.table(
        "examples",
        sa.column("id", sa.Uuid()),
        sa.column("method", sa.String()),
        sa.column("status", sa.String()),
        sa.column("metadata", sa.JSON()),
        sa.column("source_id", sa.Uuid()),
        sa.column("superseded_by", sa.Uuid()),
    )
    bind = op.get_bind()
    source_text = examples.c["metadata"]["source_example_id"].as_string()
    labeled = bind.execute(
        sa.select(examples.c.id, source_text.label("source"), examples.c.status).where(
            examples.c.method == "labeling", examples.c.source_id.is_(None)
        )
    ).all()
    links: list[dict[str, Any]] = []
    answers: dict[uuid.UUID, list[uuid.UUID]] = {}
    for row in labeled:
        try:
            source = uuid.UUID(str(row.source))
        except ValueError:
            continue
        links.append({"b_id": row.id, "b_source": source})
        if row.status == "accepted":
            answers.setdefault(source, []).append(row.id)
    if not links:
        return
    set_source = (
        sa.update(examples)
        .where(examples.c.id == sa.bindparam("b_id"))
        .values(source_id=sa.bindparam("b_source"))
    )
    for start in range(0, len(links), batch):
        bind.execute(set_source, links[start : start + batch])
    replaced = [
        {"b_id": old, "b_new": max(ids)}
        for source, ids in answers.items()
        for old in [source, *ids]
        if old != max(ids)
    ]
    mark = (
        sa.update(examples)
        .where(
            examples.c.id == sa.bindparam("b_id"),
            examples.c.status == "accepted",
            examples.c.superseded_by.is_(None),
        )
        .values(superseded_by=sa.bindparam("b_new"))
    )
    for start in range(0, len(replaced), batch):
        bind.execute(mark, replaced[start : start + batch])


def downgrade() -> None:
    op.drop_table("benchmark_items")
    with op.batch_alter_table("benchmarks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_benchmarks_tenant_id"))
    op.drop_table("benchmarks")
    op.drop_table("workers")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("system_prompt")
        batch_op.drop_column("teacher_wait_seconds")
        batch_op.drop_column("teacher_down_since")
        batch_op.drop_column("last_teacher_error")
        batch_op.drop_column("teacher_errors")
    with op.batch_alter_table("examples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_examples_source_id"))
        batch_op.drop_column("superseded_by")
        batch_op.drop_column("source_id")
