"""knowledge kinds: soft targets (white-box KD), preference pairs, job priority and tokenizer,
rationales, taxonomy leaves

Revision ID: 8e2b6d41c9a7
Revises: 3c1f0b7d2e45
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db

revision: str = "8e2b6d41c9a7"
down_revision: str | None = "3c1f0b7d2e45"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tokenizer", JSON, nullable=True))
        batch_op.add_column(
            sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    # the MinHash signature is neither written nor read since the exact dedup index
    with op.batch_alter_table("examples", schema=None) as batch_op:
        batch_op.drop_column("signature")
        batch_op.add_column(sa.Column("rationale", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("topic", sa.String(length=500), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_examples_dataset_id_topic"), ["dataset_id", "topic"], unique=False
        )
    with op.batch_alter_table("skills", schema=None) as batch_op:
        batch_op.add_column(sa.Column("taxonomy", JSON, nullable=True))

    op.create_table(
        "soft_targets",
        sa.Column("example_id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("positions", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=20), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_soft_targets_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["example_id"],
            ["examples.id"],
            name=op.f("fk_soft_targets_example_id_examples"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_soft_targets_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("example_id", name=op.f("pk_soft_targets")),
    )
    with op.batch_alter_table("soft_targets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_soft_targets_dataset_id"), ["dataset_id"], unique=False
        )

    op.create_table(
        "preference_pairs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("prompt_id", sa.Uuid(), nullable=False),
        sa.Column("chosen_id", sa.Uuid(), nullable=False),
        sa.Column("rejected_id", sa.Uuid(), nullable=False),
        sa.Column("chosen_score", sa.Float(), nullable=True),
        sa.Column("rejected_score", sa.Float(), nullable=True),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["chosen_id"],
            ["examples.id"],
            name=op.f("fk_preference_pairs_chosen_id_examples"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_preference_pairs_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_preference_pairs_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["rejected_id"],
            ["examples.id"],
            name=op.f("fk_preference_pairs_rejected_id_examples"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preference_pairs")),
        sa.UniqueConstraint(
            "job_id",
            "chosen_id",
            "rejected_id",
            name=op.f("uq_preference_pairs_job_id_chosen_id_rejected_id"),
        ),
    )
    with op.batch_alter_table("preference_pairs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_preference_pairs_dataset_id"), ["dataset_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("preference_pairs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_preference_pairs_dataset_id"))
    op.drop_table("preference_pairs")
    with op.batch_alter_table("soft_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_soft_targets_dataset_id"))
    op.drop_table("soft_targets")
    with op.batch_alter_table("skills", schema=None) as batch_op:
        batch_op.drop_column("taxonomy")
    with op.batch_alter_table("examples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_examples_dataset_id_topic"))
        batch_op.drop_column("topic")
        batch_op.drop_column("rationale")
        batch_op.add_column(sa.Column("signature", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("priority")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("priority")
        batch_op.drop_column("tokenizer")
