"""The policy lifecycle and the centre's controls (issue 25).

- ``policies.status`` now reads issued | surrendered | cancelled; ``status_since`` and ``status_by``
  (the endorsement number) say when and by which endorsement it last changed.
- ``lookups``: every value a policy was ever findable by, one row per indexed field and value from the
  version that set it (names, plate and VIN in clear; ID numbers and property addresses as keyed
  hashes), so that a policy is found by its new plate and still by its old one.
- ``documents`` gains what the statistics count by: the endorsement type, the clerk and the
  underwriting approval time (issuance timeliness); ``created_at`` is indexed for date ranges.
- ``rejections``: one row per rejected input line, with what could be read of it (no personal data:
  the numbers are stored as the batch report shows them), for the statistics by branch, product, clerk.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = inspector.get_table_names()
    if "status_by" not in _columns("policies"):
        with op.batch_alter_table("policies") as batch:
            batch.add_column(sa.Column("status_since", sa.DateTime(timezone=True)))
            batch.add_column(sa.Column("status_by", sa.String(32)))
    if "endorsement_type" not in _columns("documents"):
        with op.batch_alter_table("documents") as batch:
            batch.add_column(sa.Column("endorsement_type", sa.String(16)))
            batch.add_column(sa.Column("clerk", sa.String(20)))
            batch.add_column(sa.Column("approved_at", sa.DateTime(timezone=True)))
    if "ix_documents_created_at" not in {i["name"] for i in inspector.get_indexes("documents")}:
        op.create_index("ix_documents_created_at", "documents", ["created_at"])
    if "lookups" not in tables:
        op.create_table(
            "lookups",
            sa.Column("policy_no", sa.String(32), sa.ForeignKey("policies.policy_no"), primary_key=True),
            sa.Column("field", sa.String(40), primary_key=True),
            sa.Column("value", sa.String(100), primary_key=True),
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        )
        op.create_index("ix_lookups_value", "lookups", ["field", "value"])
    if "rejections" not in tables:
        op.create_table(
            "rejections",
            sa.Column(
                "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
            ),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("batch_id", sa.String(64)),
            sa.Column("line", sa.Integer),
            sa.Column("kind", sa.String(16)),
            sa.Column("record_id", sa.String(64)),
            sa.Column("policy_no", sa.String(32)),
            sa.Column("branch_code", sa.String(6)),
            sa.Column("product_code", sa.String(40)),
            sa.Column("clerk", sa.String(20)),
            sa.Column("field", sa.String(60)),
        )
        op.create_index("ix_rejections_at", "rejections", ["at"])


def downgrade() -> None:
    op.drop_index("ix_rejections_at", table_name="rejections")
    op.drop_table("rejections")
    op.drop_index("ix_lookups_value", table_name="lookups")
    op.drop_table("lookups")
    op.drop_index("ix_documents_created_at", table_name="documents")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("approved_at")
        batch.drop_column("clerk")
        batch.drop_column("endorsement_type")
    with op.batch_alter_table("policies") as batch:
        batch.drop_column("status_by")
        batch.drop_column("status_since")
