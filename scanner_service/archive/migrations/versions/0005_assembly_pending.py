"""assembly_queued means "an assembly is pending": batches assembled before it did are not pending

Until issue 10, ``batches.assembly_queued`` stayed true once a batch's assembly had been claimed. It
now means that an assembly is still due (the watcher queues it again if its job is lost), so every
batch that has settled is cleared; without this, the first sweep after an upgrade would assemble
every batch of the catalogue again.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SETTLED = "('done', 'needs_review', 'failed', 'discarded')"


def upgrade() -> None:
    op.execute(f"UPDATE batches SET assembly_queued = false WHERE state IN {SETTLED}")


def downgrade() -> None:
    # The old meaning: claimed once, true for ever.
    op.execute(f"UPDATE batches SET assembly_queued = true WHERE state IN {SETTLED}")
