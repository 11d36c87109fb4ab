"""job counters in shard rows: completions of one job no longer queue on its row

Revision ID: 5d7a3c9e1f20
Revises: 8e2b6d41c9a7
Create Date: 2026-12-01 09:00:00

The counts of existing jobs move into their shard 0 (the ``jobs`` columns become 0); a count is
the column plus the sum of the job's shards (app.job_counters). Downgrade adds the shards back
into the columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d7a3c9e1f20"
down_revision: str | None = "8e2b6d41c9a7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "completed",
    "accepted",
    "rejected",
    "failed",
    "prompt_tokens",
    "completion_tokens",
    "teacher_seconds",
)


def upgrade() -> None:
    op.create_table(
        "job_counters",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in COUNTERS
            if name != "teacher_seconds"
        ),
        sa.Column("teacher_seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "shard"),
    )
    op.create_index(
        "ix_tasks_job_active",
        "tasks",
        ["job_id"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
        sqlite_where=sa.text("status IN ('queued', 'running')"),
    )
    columns = ", ".join(COUNTERS)
    nonzero = " OR ".join(f"{name} <> 0" for name in COUNTERS)
    op.execute(
        f"INSERT INTO job_counters (job_id, shard, {columns}) "
        f"SELECT id, 0, {columns} FROM jobs WHERE {nonzero}"
    )
    zeroed = ", ".join(f"{name} = 0" for name in COUNTERS)
    op.execute(f"UPDATE jobs SET {zeroed} WHERE {nonzero}")


def downgrade() -> None:
    added = ", ".join(
        f"{name} = {name} + (SELECT COALESCE(SUM(c.{name}), 0) FROM job_counters c "
        f"WHERE c.job_id = jobs.id)"
        for name in COUNTERS
    )
    op.execute(f"UPDATE jobs SET {added} WHERE id IN (SELECT job_id FROM job_counters)")
    op.drop_table("job_counters")
    op.drop_index("ix_tasks_job_active", table_name="tasks")
