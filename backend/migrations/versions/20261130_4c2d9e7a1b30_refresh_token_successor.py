"""refresh token successor, for the reuse grace period

Revision ID: 4c2d9e7a1b30
Revises: 958ef1baebf2
Create Date: 2026-11-30 13:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "4c2d9e7a1b30"
down_revision = "958ef1baebf2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("successor_encrypted", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("successor_encrypted")
