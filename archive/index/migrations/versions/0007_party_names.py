"""Parties searchable by name (issue 24, the desk's search): an index on ``parties.name``.

``Index.find(name=...)`` looks a name up among every party of every policy; without this index
PostgreSQL and SQLite read the whole ``parties`` table for each search (see docs/performance.md, "The
desk at 10^6 policies").

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEX = "ix_parties_name"


def upgrade() -> None:
    if INDEX in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("parties")}:
        return  # an index set back to an older revision keeps its indexes
    op.create_index(INDEX, "parties", ["name"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="parties")
