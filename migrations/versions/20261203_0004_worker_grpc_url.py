"""a worker's gRPC endpoint

Revision ID: 20261203_0004
Revises: 20261203_0003

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "20261203_0004"
down_revision: str | Sequence[str] | None = "20261203_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nullable: a worker that serves no gRPC (or announced before it could) has none."""
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("grpc_url", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("grpc_url")
