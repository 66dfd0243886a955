"""per-token inference rate limits

Revision ID: 20261203_0002
Revises: 20261121_0001

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "20261203_0002"
down_revision: str | Sequence[str] | None = "20261121_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two nullable columns: existing tokens keep the gateway's default limit."""
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("rate_limit_rps", sa.Float(), nullable=True))
        batch.add_column(sa.Column("rate_limit_burst", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("rate_limit_burst")
        batch.drop_column("rate_limit_rps")
