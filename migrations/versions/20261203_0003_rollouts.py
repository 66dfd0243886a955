"""rollouts: stepwise canaries driven by the gateway under a lease

Revision ID: 20261203_0003
Revises: 20261203_0002

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "20261203_0003"
down_revision: str | Sequence[str] | None = "20261203_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "state IN ('waiting', 'running', 'paused')"


def upgrade() -> None:
    """The rollouts table; a partial unique index keeps one active rollout per model."""
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=256), nullable=False),
        sa.Column("baseline", sa.String(length=256), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=True),
        sa.Column("steps", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.Column("gates", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("history", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("lease_holder", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("step_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_rollouts_model_id_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.create_index("ix_rollouts_model_id", ["model_id"], unique=False)
        batch_op.create_index("ix_rollouts_state", ["state"], unique=False)
        batch_op.create_index(
            "uq_rollouts_active_model",
            ["model_id"],
            unique=True,
            sqlite_where=sa.text(ACTIVE),
            postgresql_where=sa.text(ACTIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("rollouts", schema=None) as batch_op:
        batch_op.drop_index("uq_rollouts_active_model")
        batch_op.drop_index("ix_rollouts_state")
        batch_op.drop_index("ix_rollouts_model_id")
    op.drop_table("rollouts")
