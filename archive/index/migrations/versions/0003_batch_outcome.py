"""A batch row says how its run ended — finished, interrupted or aborted — with the reason of an aborted
run and how many lines it never attempted (issue 21: an outage is not a finished batch).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("batches")}
    with op.batch_alter_table("batches") as batch:
        for column in (
            sa.Column("ended", sa.String(16)),
            sa.Column("not_attempted", sa.Integer),
            sa.Column("reason", sa.String(500)),
        ):
            if column.name not in have:  # an index whose version row was set back keeps its columns
                batch.add_column(column)
    # rows written before this revision ended as their finished_at says
    op.execute("UPDATE batches SET ended = 'finished' WHERE finished_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("reason")
        batch.drop_column("not_attempted")
        batch.drop_column("ended")
