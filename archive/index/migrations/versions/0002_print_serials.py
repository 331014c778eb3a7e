"""Print serials (单证) and reissues (补发): the serial registry and one row per reissued copy.

Frozen history like 0001: the tables are spelled out here, not imported from archive.index.schema.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "print_serials",
        sa.Column("serial", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("registered", sa.Boolean, nullable=False),
        sa.Column("issued_to", sa.String(64)),
        sa.Column("branch_code", sa.String(6)),
        sa.Column("issued_at", TZ, index=True),
        sa.Column("issued_by", sa.String(64)),
        sa.Column("used_at", TZ, index=True),
        sa.Column("policy_no", sa.String(32), index=True),
        sa.Column("version", sa.Integer),
        sa.Column("used_by", sa.String(64)),
        sa.Column("voided_at", TZ, index=True),
        sa.Column("void_reason", sa.String(200)),
        sa.Column("voided_by", sa.String(64)),
        sa.Column("voided_by_version", sa.Integer),
        sa.Column("reconciled_at", TZ, index=True),
        sa.Column("reconciled_by", sa.String(64)),
    )
    op.create_table(
        "reissues",
        sa.Column("policy_no", sa.String(32), sa.ForeignKey("policies.policy_no"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("reissue_no", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("clerk", sa.String(64), nullable=False),
        sa.Column("reissued_at", TZ, nullable=False),
        sa.Column("requester_id_hmac", sa.String(64)),
        sa.Column("source_version", sa.Integer, nullable=False),
        sa.Column("source_sha256", sa.String(64), nullable=False),
        sa.Column("copy_key", sa.String(300), nullable=False, unique=True),
        sa.Column("copy_sha256", sa.String(64), nullable=False),
        sa.Column("copy_size", sa.BigInteger, nullable=False),
        sa.Column("copy_pages", sa.Integer, nullable=False),
        sa.Column("old_serial", sa.String(32)),
        sa.Column("new_serial", sa.String(32)),
        sa.UniqueConstraint("policy_no", "reissue_no", name="uq_reissues_number"),
    )


def downgrade() -> None:
    op.drop_table("reissues")
    op.drop_table("print_serials")
