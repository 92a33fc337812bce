"""payments, refunds and completion: refund bookkeeping on orders, shipping and completion
times, refund idempotency keys

Revision ID: 7b1e4f2c9a55
Revises: 4c2d9e7a1b30
Create Date: 2026-11-30 15:30:00.000000
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Microsecond DATETIME on MySQL/MariaDB, as minishop.models.types.UtcDateTime maps it.
UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "7b1e4f2c9a55"
down_revision = "4c2d9e7a1b30"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shipped_at", UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column("completed_at", UTC_DATETIME, nullable=True))
        batch_op.add_column(
            sa.Column("refunded_fen", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("status_before_refund", sa.String(24), nullable=True))
        batch_op.create_check_constraint(
            batch_op.f("ck_orders_refunded_within_total"), "refunded_fen BETWEEN 0 AND total_fen"
        )
        batch_op.create_index(
            batch_op.f("ix_orders_status_shipped_at"), ["status", "shipped_at"], unique=False
        )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.alter_column("refunded_fen", server_default=None, existing_type=sa.Integer())

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payments_status_created_at"), ["status", "created_at"], unique=False
        )

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(64), nullable=False))
        batch_op.add_column(sa.Column("request_hash", sa.String(64), nullable=False))
        batch_op.create_unique_constraint(
            batch_op.f("uq_refunds_order_id_idempotency_key"), ["order_id", "idempotency_key"]
        )
        batch_op.create_index(
            batch_op.f("ix_refunds_status_created_at"), ["status", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_status_created_at"))
        batch_op.drop_constraint(batch_op.f("uq_refunds_order_id_idempotency_key"), type_="unique")
        batch_op.drop_column("request_hash")
        batch_op.drop_column("idempotency_key")

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_status_created_at"))

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_status_shipped_at"))
        batch_op.drop_constraint(batch_op.f("ck_orders_refunded_within_total"), type_="check")
        batch_op.drop_column("status_before_refund")
        batch_op.drop_column("refunded_fen")
        batch_op.drop_column("completed_at")
        batch_op.drop_column("shipped_at")
