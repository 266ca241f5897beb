"""The steps of one filing, in order, and the hook through which tests inject a fault at a step.

Filing calls :func:`reached` after each step with the step's name and the item's 档号 key. In
production ``hook`` is None and nothing happens; a test sets it to raise an exception, fill the disk
or kill the process at one step, and checks that the item comes out as it was or fully filed.
"""

from __future__ import annotations

from collections.abc import Callable

# Before the catalogue transaction (no write lock held): everything slow is built in a staging folder.
PREPARE = "prepare"  # the journal says "preparing"; the staging folder exists
STAGE_MASTER = "stage_master"  # after each new master is written to staging
STAGE_PAGE = "stage_page"  # after each new page's usage image and thumbnail are written to staging
STAGE_PDF = "stage_pdf"  # the item's new PDF/A is built in staging, from the planned page order
# Inside the catalogue transaction:
CATALOGUE = "catalogue"  # every catalogue write is done (flushed, not committed)
STAGE_SIDECARS = "stage_sidecars"  # the new pages' OCR sidecars and item.json are written to staging
JOURNAL = "journal"  # the journal lists every move and says "moving"; no move done yet
MOVE_ASIDE = "move_aside"  # after each existing file is moved out of the way (old PDF, renamed masters, …)
MOVE_IN = "move_in"  # after each staged file is moved to its place in the item folder
MOVED = "moved"  # every move done and flushed; the transaction is about to commit
# After the commit:
COMMITTED = "committed"  # the catalogue has committed; the journal is not yet marked
CLEANUP = "cleanup"  # the journal says "committed"; staging and journal are about to be removed

STEPS = (
    PREPARE,
    STAGE_MASTER,
    STAGE_PAGE,
    STAGE_PDF,
    CATALOGUE,
    STAGE_SIDECARS,
    JOURNAL,
    MOVE_ASIDE,
    MOVE_IN,
    MOVED,
    COMMITTED,
    CLEANUP,
)
BEFORE_COMMIT = STEPS[: STEPS.index(MOVED) + 1]

FaultHook = Callable[[str, str], None]
hook: FaultHook | None = None


def reached(step: str, code_key: str) -> None:
    """Filing has done ``step`` for the item ``code_key``: run the fault hook, if a test set one."""
    if hook is not None:
        hook(step, code_key)
