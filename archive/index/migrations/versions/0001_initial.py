"""Initial schema: batches, records, policies, parties, documents, ledger.

A migration is frozen history: it spells its tables out instead of importing archive.index.schema, so a later
change to the schema does not change what this step created.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("input_name", sa.String(255), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=False, index=True),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("finished_at", TZ),
        sa.Column("records", sa.Integer),
        sa.Column("archived", sa.Integer),
        sa.Column("already_archived", sa.Integer),
        sa.Column("rejected", sa.Integer),
        sa.Column("operator", sa.String(64), nullable=False),
    )
    op.create_table(
        "records",
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("policy_no", sa.String(32), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("batch_id", sa.String(64)),
        sa.Column("line", sa.Integer),
        sa.Column("archived_at", TZ, nullable=False),
    )
    op.create_table(
        "policies",
        sa.Column("policy_no", sa.String(32), primary_key=True),
        sa.Column("proposal_no", sa.String(32), nullable=False),
        sa.Column("product_code", sa.String(40), nullable=False, index=True),
        sa.Column("branch_code", sa.String(6), nullable=False, index=True),
        sa.Column("branch_name", sa.String(60), nullable=False),
        sa.Column("applicant_name", sa.String(100), nullable=False),
        sa.Column("insured_name", sa.String(100), nullable=False, index=True),
        sa.Column("insured_id_masked", sa.String(40), nullable=False),
        sa.Column("plate", sa.String(8), index=True),
        sa.Column("vin", sa.String(17), index=True),
        sa.Column("period_start", TZ, nullable=False),
        sa.Column("period_end", TZ, nullable=False),
        sa.Column("total_premium", sa.Numeric(16, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("print_serial", sa.String(32), index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("missing_images", sa.String(200), nullable=False),
        sa.Column("issued_at", TZ, nullable=False, index=True),
        sa.Column("key_prefix", sa.String(200), nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("retain_until", TZ, nullable=False),
    )
    op.create_table(
        "parties",
        sa.Column("policy_no", sa.String(32), sa.ForeignKey("policies.policy_no"), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("id_type", sa.String(20), nullable=False),
        sa.Column("id_hmac", sa.String(64), nullable=False, index=True),
        sa.Column("id_masked", sa.String(40), nullable=False),
    )
    op.create_table(
        "documents",
        sa.Column("policy_no", sa.String(32), sa.ForeignKey("policies.policy_no"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("record_id", sa.String(64)),
        sa.Column("endorsement_no", sa.String(32)),
        sa.Column("batch_id", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("customer_key", sa.String(300), nullable=False),
        sa.Column("customer_sha256", sa.String(64), nullable=False),
        sa.Column("customer_size", sa.BigInteger, nullable=False),
        sa.Column("customer_pages", sa.Integer, nullable=False),
        sa.Column("bundle_key", sa.String(300), nullable=False),
        sa.Column("bundle_sha256", sa.String(64), nullable=False),
        sa.Column("bundle_size", sa.BigInteger, nullable=False),
        sa.Column("bundle_pages", sa.Integer, nullable=False),
        sa.Column("manifest_key", sa.String(300), nullable=False, unique=True),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("manifest_size", sa.BigInteger, nullable=False),
        sa.Column("seal_id", sa.String(40)),
        sa.Column("seal_version", sa.String(40)),
        sa.Column("retain_until", TZ, nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    op.create_index("ix_ledger_subject", "ledger", ["subject"])
    op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("seq", name="uq_ledger_head_seq"),
    )
    op.execute(sa.text("INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, :h)").bindparams(h="0" * 64))


def downgrade() -> None:
    for table in ("ledger_head", "ledger", "documents", "parties", "policies", "records", "batches"):
        op.drop_table(table)
