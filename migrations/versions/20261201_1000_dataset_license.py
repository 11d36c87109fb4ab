"""dataset license (what the dataset declares, carried by its card); teacher requests in flight
per worker (live job views)

Revision ID: b7e4d2a91c53
Revises: 5d7a3c9e1f20
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b7e4d2a91c53"
down_revision: str | None = "5d7a3c9e1f20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("license", sa.String(64), nullable=True))
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "teacher_in_flight", sa.Integer(), nullable=False, server_default=sa.text("0")
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("teacher_in_flight")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("license")
