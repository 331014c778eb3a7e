"""The desk (issue 24): ``desk_sessions``, one row per signed-in browser (the token's SHA-256, never
the token), and ``reissue_requests``, a clerk's reissue waiting for, or past, a supervisor's approval.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "desk_sessions" not in tables:
        op.create_table(
            "desk_sessions",
            sa.Column("token_sha256", sa.String(64), primary_key=True),
            sa.Column("user_name", sa.String(64), nullable=False),
            sa.Column("csrf", sa.String(64), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("ended_at", sa.DateTime(timezone=True)),
            sa.Column("ended_why", sa.String(16)),
        )
        op.create_index("ix_desk_sessions_user", "desk_sessions", ["user_name"])
    if "reissue_requests" not in tables:
        op.create_table(
            "reissue_requests",
            sa.Column("request_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("policy_no", sa.String(32), nullable=False),
            sa.Column("branch_code", sa.String(6), nullable=False),
            sa.Column("reason", sa.String(16), nullable=False),
            sa.Column("clerk", sa.String(64), nullable=False),
            sa.Column("requester_id_hmac", sa.String(64)),
            sa.Column("requester_role", sa.String(16)),
            sa.Column("new_serial", sa.String(32)),
            sa.Column("status", sa.String(12), nullable=False),
            sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("decided_by", sa.String(64)),
            sa.Column("decided_at", sa.DateTime(timezone=True)),
            sa.Column("note", sa.String(200)),
            sa.Column("version", sa.Integer),
        )
        op.create_index("ix_reissue_requests_policy", "reissue_requests", ["policy_no"])
        op.create_index("ix_reissue_requests_status", "reissue_requests", ["status", "branch_code"])
    # the public page looks an uploaded PDF up by its SHA-256
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("documents")}
    if "ix_documents_customer_sha256" not in indexes:
        op.create_index("ix_documents_customer_sha256", "documents", ["customer_sha256"])
        op.create_index("ix_documents_bundle_sha256", "documents", ["bundle_sha256"])
        op.create_index("ix_reissues_copy_sha256", "reissues", ["copy_sha256"])


def downgrade() -> None:
    op.drop_index("ix_reissues_copy_sha256", "reissues")
    op.drop_index("ix_documents_bundle_sha256", "documents")
    op.drop_index("ix_documents_customer_sha256", "documents")
    op.drop_table("reissue_requests")
    op.drop_table("desk_sessions")
