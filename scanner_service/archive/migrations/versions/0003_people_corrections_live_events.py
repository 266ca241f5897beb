"""people, corrections, live events

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 00:21:57.142569
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum("admin", "archivist", "operator", "reader", name="role", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("fonds", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("who", sa.String(length=200), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("item_page_id", sa.Integer(), nullable=True),
        sa.Column("serial", sa.Integer(), nullable=True),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["item_page_id"], ["item_pages.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("corrections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_corrections_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_corrections_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_corrections_item_id"), ["item_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_corrections_item_page_id"), ["item_page_id"], unique=False)

    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_access_log_user_id", "users", ["user_id"], ["id"], ondelete="SET NULL")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page", sa.Integer(), nullable=True))

    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.alter_column("token_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_index(batch_op.f("ix_grants_user_id"), ["user_id"], unique=False)
        batch_op.create_unique_constraint("uq_grants_user_item", ["user_id", "item_id"])
        batch_op.create_foreign_key("fk_grants_user_id", "users", ["user_id"], ["id"], ondelete="CASCADE")

    with op.batch_alter_table("item_pages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("decision", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("correction", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("state", sa.String(length=20), nullable=False, server_default="done"))

    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decision", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("correction", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.drop_column("version")
        batch_op.drop_column("correction")
        batch_op.drop_column("decision")
    with op.batch_alter_table("item_pages", schema=None) as batch_op:
        for column in ("state", "version", "correction", "decision", "details"):
            batch_op.drop_column(column)
    op.execute("DELETE FROM grants WHERE token_id IS NULL")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_constraint("fk_grants_user_id", type_="foreignkey")
        batch_op.drop_constraint("uq_grants_user_item", type_="unique")
        batch_op.drop_index(batch_op.f("ix_grants_user_id"))
        batch_op.alter_column("token_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("user_id")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("page")
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.drop_constraint("fk_access_log_user_id", type_="foreignkey")
        batch_op.drop_column("user_id")
    with op.batch_alter_table("corrections", schema=None) as batch_op:
        for name in ("item_page_id", "item_id", "batch_id", "at"):
            batch_op.drop_index(batch_op.f(f"ix_corrections_{name}"))
    op.drop_table("corrections")
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_sessions_user_id"))
    op.drop_table("login_sessions")
    op.drop_table("users")
