"""experiments can fail: status "failed" and the error that says why

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 12:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('created', 'running', 'paused', 'done')"
NEW_STATUSES = "status IN ('created', 'running', 'paused', 'done', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("experiments") as batch:
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.drop_constraint(op.f("ck_experiments_status"), type_="check")
        batch.create_check_constraint("status", NEW_STATUSES)


def downgrade() -> None:
    op.execute("UPDATE experiments SET status = 'created' WHERE status = 'failed'")
    with op.batch_alter_table("experiments") as batch:
        batch.drop_constraint(op.f("ck_experiments_status"), type_="check")
        batch.create_check_constraint("status", OLD_STATUSES)
        batch.drop_column("error")
