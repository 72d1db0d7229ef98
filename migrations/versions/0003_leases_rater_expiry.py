"""a rater's live leases by one index: ix_leases_rater_expiry (rater_id, experiment_id, expires_at) replaces
ix_leases_rater_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 15:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_leases_rater_expiry", "leases", ["rater_id", "experiment_id", "expires_at"])
    op.drop_index("ix_leases_rater_id", table_name="leases")


def downgrade() -> None:
    op.create_index("ix_leases_rater_id", "leases", ["rater_id"])
    op.drop_index("ix_leases_rater_expiry", table_name="leases")
