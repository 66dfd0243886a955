"""external OIP servers registered by the admin API

Revision ID: 20261203_0005
Revises: 20261203_0004

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "20261203_0005"
down_revision: str | Sequence[str] | None = "20261203_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A table of its own: registrations are configuration, not heartbeats (``workers``)."""
    op.create_table(
        "external_servers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("serves", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_external_servers")),
    )


def downgrade() -> None:
    op.drop_table("external_servers")
