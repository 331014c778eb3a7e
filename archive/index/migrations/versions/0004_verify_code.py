"""Every document version has a verification code (issue 23: the QR code on page 1 leads to it): an
opaque HMAC of policy number and version, unique, looked up by ``issuance verify --code``.

Versions indexed before this revision get their code here when the index is opened with its HMAC key
(``Index.migrate`` hands the key over); migrated without it, they keep NULL: they were issued without
a QR code, and nothing looks them up by one. The codes come from ``core.verification``, the one
derivation, so that a backfilled code is the code a new row would get.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import context, op

from core.verification import verification_code

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEX = "ix_documents_verify_code"


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "verify_code" not in {c["name"] for c in inspector.get_columns("documents")}:
        with op.batch_alter_table("documents") as batch:  # an index set back to 0001 keeps its columns
            batch.add_column(sa.Column("verify_code", sa.String(32)))
    if INDEX not in {i["name"] for i in inspector.get_indexes("documents")}:
        op.create_index(INDEX, "documents", ["verify_code"], unique=True)
    key = context.config.attributes.get("hmac_key")
    if not key:
        return
    documents = sa.table(
        "documents",
        sa.column("policy_no", sa.String),
        sa.column("version", sa.Integer),
        sa.column("verify_code", sa.String),
    )
    missing = bind.execute(
        sa.select(documents.c.policy_no, documents.c.version).where(documents.c.verify_code.is_(None))
    ).all()
    fill = (
        sa.update(documents)
        .where(documents.c.policy_no == sa.bindparam("p"), documents.c.version == sa.bindparam("v"))
        .values(verify_code=sa.bindparam("code"))
    )
    for start in range(0, len(missing), 1000):
        rows = missing[start : start + 1000]
        bind.execute(fill, [{"p": p, "v": v, "code": verification_code(key, p, v)} for p, v in rows])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="documents")
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("verify_code")
