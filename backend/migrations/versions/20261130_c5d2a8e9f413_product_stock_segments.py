"""product stock segments: a hot product's stock split over rows that orders lock separately

Revision ID: c5d2a8e9f413
Revises: 7b1e4f2c9a55
Create Date: 2026-11-30 18:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "c5d2a8e9f413"
down_revision = "7b1e4f2c9a55"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stock_segments", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_products_stock_segments_range"), "stock_segments BETWEEN 1 AND 64"
        )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.alter_column("stock_segments", server_default=None, existing_type=sa.Integer())

    op.create_table(
        "product_stock_segments",
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("segment", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.CheckConstraint("stock >= 0", name=op.f("ck_product_stock_segments_stock_not_negative")),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_product_stock_segments_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("product_id", "segment", name=op.f("pk_product_stock_segments")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )


def downgrade() -> None:
    # Segmented stock goes back into the product row first: no unit is lost.
    op.execute(
        "UPDATE products SET stock = stock + COALESCE((SELECT SUM(s.stock) FROM "
        "product_stock_segments s WHERE s.product_id = products.id), 0)"
    )
    op.drop_table("product_stock_segments")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_products_stock_segments_range"), type_="check")
        batch_op.drop_column("stock_segments")
