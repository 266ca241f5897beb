"""Which batch pages are filed, and the item's page order after filing in each mode (new, append,
insert, replace). Pure decisions: nothing is read from disk or written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from scanner_service.archive.models import Batch, BatchState, FilingMode, Page, PageState
from scanner_service.exceptions import Conflict, NotFound

E = TypeVar("E")  # a page the item has
N = TypeVar("N")  # a page being filed


class FilingRefused(Conflict):
    """The pages cannot be filed this way (the item already has pages, a count does not match, …);
    ``reason_code`` says which."""

    code = "filing_refused"

    def __init__(self, message: str, *, reason_code: str) -> None:
        super().__init__(message, reason_code=reason_code)


def filing_mode(mode: str) -> FilingMode:
    """The mode named ``mode``, or FilingRefused(bad_mode)."""
    try:
        return FilingMode(mode)
    except ValueError:
        modes = ", ".join(m.value for m in FilingMode)
        raise FilingRefused(f"Unknown filing mode {mode!r}; use one of: {modes}.", reason_code="bad_mode") from None


def arrange(
    existing: Sequence[E], new: Sequence[N], mode: FilingMode, replace: Sequence[int], at: int | None
) -> tuple[list[E | N], list[E]]:
    """The item's pages after filing, in order, and the existing pages that leave it (replaced)."""
    old: list[E | N] = list(existing)
    if mode is FilingMode.new:
        if existing:
            raise FilingRefused(
                f"The item already has {len(existing)} pages; a rescan must say whether it appends, inserts or "
                "replaces pages.",
                reason_code="item_has_pages",
            )
        return list(new), []
    if mode is FilingMode.append:
        return old + list(new), []
    if mode is FilingMode.insert:
        if at is None or not 1 <= at <= len(existing) + 1:
            raise FilingRefused(
                f"Insert needs 'at', a page number from 1 to {len(existing) + 1}.", reason_code="bad_position"
            )
        return old[: at - 1] + list(new) + old[at - 1 :], []
    if not replace:
        raise FilingRefused(
            "Replace needs 'replace': the page numbers the new pages take the place of, e.g. [3] or "
            f"[1, …, {len(existing)}] for all of them.",
            reason_code="bad_position",
        )
    if sorted(set(replace)) != sorted(replace) or any(not 1 <= s <= len(existing) for s in replace):
        raise FilingRefused(
            f"Pages to replace must be distinct page numbers from 1 to {len(existing)}.", reason_code="bad_position"
        )
    if len(replace) != len(new):
        raise FilingRefused(
            f"{len(replace)} pages to replace but {len(new)} new pages: the counts must match.",
            reason_code="count_mismatch",
        )
    gone = [existing[serial - 1] for serial in replace]
    for serial, page in zip(replace, new, strict=True):
        old[serial - 1] = page
    return old, gone


def pages_to_file(batch: Batch, seqs: Sequence[int] | None) -> list[Page]:
    """The batch pages to file: the named ones, or every finished page that is not blank or a separator.
    A discarded batch files nothing (its originals are in quarantine)."""
    if batch.state == BatchState.discarded:
        raise FilingRefused(
            f"Batch {batch.id} was discarded: its originals are in quarantine and it files nothing; rescan the "
            "pages to file them.",
            reason_code="discarded",
        )
    by_seq = {p.seq: p for p in batch.pages}
    if seqs is not None:
        missing = [s for s in seqs if s not in by_seq]
        if missing:
            raise NotFound(f"Batch {batch.id} has no page {', '.join(map(str, missing))}.")
        chosen = [by_seq[s] for s in seqs]
    else:
        chosen = [p for p in batch.pages if not p.blank and "separator" not in (p.flags or [])]
    unfinished = [p.seq for p in chosen if p.state != PageState.done]
    if unfinished:
        raise FilingRefused(
            f"Page(s) {', '.join(map(str, unfinished))} of batch {batch.id} are not processed (failed or still "
            "running); file the other pages by number, or rescan.",
            reason_code="pages_not_done",
        )
    if not chosen:
        raise FilingRefused(f"Batch {batch.id} has no page to file.", reason_code="no_pages")
    return chosen
