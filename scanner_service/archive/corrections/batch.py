"""Corrections of a batch's pages before filing: a page turned, straightened, cropped, its blank verdict
changed, left out, noted, read again, undone; the pages put in order, the flags accepted, the batch
discarded.

What every function here guarantees:

- the page's ``version`` is compared and set in one SQL statement (``UPDATE … WHERE version = :seen``),
  so of two people correcting the same page, the second is told (409 ``stale_version``), never
  silently overwritten;
- the same request twice is the same result: a change that changes nothing writes nothing, queues
  nothing and records nothing;
- nothing touches an original: a page is derived again from it by the workers (:class:`Followup`
  says what the caller must queue, after committing);
- every change is one :class:`~scanner_service.archive.models.Correction` row (who, before → after);
- a page already filed in an item is corrected there, not here (409 ``page_filed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.attributes import set_committed_value

from scanner_service.archive import archival_code as ac
from scanner_service.archive import filing
from scanner_service.archive.access import Caller, require_fonds
from scanner_service.archive.batches import in_order, is_excluded, no_decision, usable
from scanner_service.archive.corrections import (
    merged,
    needs_derivation,
    open_flags,
    record_correction,
)
from scanner_service.archive.filing import batch_fonds
from scanner_service.archive.filing.items import find_item, station_decision
from scanner_service.archive.models import Batch, BatchState, Item, ItemPage, Original, Page, PageState, SearchEntry
from scanner_service.exceptions import Conflict, NotFound
from scanner_service.settings import Settings

ENGINES = ("rapidocr", "tesseract")


@dataclass
class Followup:
    """What the caller queues once the change is committed: pages to derive again (at the front of
    the queue: a person is waiting), and whether the batch PDF is rebuilt (the assembly job)."""

    derive: list[int] = field(default_factory=list)
    assemble: bool = False


# ---- reading -------------------------------------------------------------------------------------


def page_of(batch: Batch, seq: int) -> Page:
    for page in batch.pages:
        if page.seq == seq:
            return page
    raise NotFound(f"Batch {batch.id} has no page {seq}.")


def open_pages(batch: Batch) -> dict[int, list[str]]:
    """The pages whose flags still want a person, with those flags (scan numbers → flags)."""
    found = {}
    for page in batch.pages:
        flags = open_flags(page.flags or [], page.correction or {})
        if flags:
            found[page.seq] = flags
    return found


def settled_state(batch: Batch) -> BatchState:
    """``needs_review`` while anything wants a person: open flags, failed pages not left out, filing
    problems, a page count off (as its item says now) or an error of the batch not accepted; else ``done``."""
    report = batch.filing or {}
    failed = [p for p in batch.pages if p.state == PageState.failed and not is_excluded(p)]
    reviewed = report.get("reviewed") or {}
    accepted = reviewed.get("page_checks") or {}
    unsettled = (
        open_pages(batch)
        or failed
        or report.get("problems")
        or (batch.error and batch.error != reviewed.get("error"))
        or any(accepted.get(code) != check for code, check in page_checks(batch).items())
    )
    return BatchState.needs_review if unsettled else BatchState.done


def page_checks(batch: Batch) -> dict[str, str]:
    """The items this batch was filed into whose page count is off against 页数, as each item says now
    (档号 → ``missing_pages`` or ``extra_pages``): the report's entries are what it was at filing time."""
    report = batch.filing or {}
    codes = sorted(
        {e["archival_code"] for e in [*report.get("items", []), *report.get("by_hand", [])] if e.get("page_check")}
    )
    session = object_session(batch)
    found = {}
    for code in codes:
        item = find_item(session, code) if session is not None else None
        check = item.page_check if item is not None else None
        if check:
            found[code] = check
    return found


def _filed_in(session: Session, batch_id: int, seqs: Iterable[int]) -> dict[int, tuple[str, int]]:
    rows = session.execute(
        select(ItemPage.batch_seq, Item.archival_code, ItemPage.serial)
        .join(Item, Item.id == ItemPage.item_id)
        .where(ItemPage.batch_id == batch_id, ItemPage.batch_seq.in_(list(seqs)))
    ).all()
    return {seq: (code, serial) for seq, code, serial in rows if seq is not None}


def refuse_filed(session: Session, batch: Batch, seqs: Iterable[int]) -> None:
    """409 ``page_filed`` if any of these pages is filed in an item: it is corrected there."""
    filed = _filed_in(session, batch.id, seqs)
    if filed:
        where = "; ".join(
            f"page {seq} is page {serial} of {code} (PATCH /api/items/{code}/pages/{serial})"
            for seq, (code, serial) in sorted(filed.items())
        )
        raise Conflict(f"Batch {batch.id}: already filed, correct it in its item: {where}.", reason_code="page_filed")


def refuse_discarded(batch: Batch) -> None:
    if batch.state == BatchState.discarded:
        raise Conflict(f"Batch {batch.id} was discarded; its originals are in quarantine.", reason_code="discarded")


def parse_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` header names (``3``, ``"3"`` or ``W/"3"``); None without one."""
    if if_match is None or not if_match.strip() or if_match.strip() == "*":
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 9:
        raise Conflict(
            f"If-Match must be the page's version as GET or PATCH gave it (ETag), not {if_match[:40]!r}.",
            reason_code="stale_version",
        )
    return int(text)


# ---- writing one page ----------------------------------------------------------------------------


def _keep_station_decision(session: Session, page: Page) -> None:
    """A page processed before decisions were kept: its present state is the station's decision.

    Written only where no decision is (``decision IS NULL``) and the page is still as read: a decision
    the worker stored meanwhile is never overwritten (the API never writes ``decision`` otherwise)."""
    if page.decision is None and page.state == PageState.done and not page.correction:
        decision = station_decision(page)
        result = session.execute(
            update(Page)
            .where(Page.id == page.id, Page.version == page.version, no_decision())
            .values(decision=decision)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            set_committed_value(page, "decision", decision)  # the page stays as read: its version is compared


def _refuse_turn_without_decision(page: Page, patch: Mapping[str, Any]) -> None:
    """409 ``not_processed``: a turn is added to the station's own turn, which this page has not (yet)."""
    if not patch.get("turn") or page.decision is not None:
        return
    if page.state in (PageState.queued, PageState.processing):
        why = "it has not been processed yet; turn it once it is done"
    elif page.state == PageState.failed:
        why = (
            "it failed before the station decided anything: run it again "
            f"(POST /api/batches/{page.batch_id}/pages/{page.seq}/rerun), then turn it"
        )
    else:
        why = (
            "the station's own decision was not kept (it was first derived with a person's choices): undo it "
            f"(POST /api/batches/{page.batch_id}/pages/{page.seq}/undo), then turn it"
        )
    raise Conflict(
        f"Page {page.seq} of batch {page.batch_id}: a turn is added to the station's own turn, but {why}.",
        reason_code="not_processed",
    )


def _write(session: Session, page: Page, seen: int, correction: dict[str, Any], *, derive: bool) -> None:
    """Compare-and-set: the new correction and version, only if the page is still at version ``seen``."""
    values: dict[str, Any] = {"correction": correction, "version": Page.version + 1}  # never ``decision``
    if derive:
        values.update(state=PageState.queued, error=None, error_code=None)
    result = session.execute(
        update(Page)
        .where(Page.id == page.id, Page.version == seen)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(page)
        raise Conflict(
            f"Page {page.seq} of batch {page.batch_id} was changed by someone else (now version {page.version}); "
            "reload it and apply the correction again.",
            reason_code="stale_version",
        )
    session.refresh(page)


def _check_version(page: Page, if_match: int | None) -> int:
    if if_match is not None and if_match != page.version:
        raise Conflict(
            f"Page {page.seq} of batch {page.batch_id} is at version {page.version}, not {if_match}: someone "
            "changed it meanwhile; reload it and apply the correction again.",
            reason_code="stale_version",
        )
    return page.version if if_match is None else if_match


def _change_page(
    session: Session,
    caller: Caller,
    batch: Batch,
    page: Page,
    after: dict[str, Any],
    action: str,
    *,
    if_match: int | None,
    force_derive: bool = False,
    note: str | None = None,
) -> Followup:
    before = dict(page.correction or {})
    if after == before and not force_derive:
        return Followup()  # nothing changes: a retry of the same request
    seen = _check_version(page, if_match)
    derive = force_derive or needs_derivation(before, after)
    _write(session, page, seen, after, derive=derive)
    record_correction(
        session,
        caller,
        action,
        before=before,
        after=after,
        batch_id=batch.id,
        seq=page.seq,
        fonds=batch_fonds(batch),
        note=note,
    )
    _reopen(batch, derive=derive)
    return Followup(derive=[page.id] if derive else [], assemble=True)


def _reopen(batch: Batch, *, derive: bool) -> None:
    """The batch is assembled again after the change (and is processing while a page is derived)."""
    batch.assembly_queued = False
    if derive:
        batch.state = BatchState.processing


def _page_to_change(session: Session, batch: Batch, seq: int) -> Page:
    refuse_discarded(batch)
    page = page_of(batch, seq)
    refuse_filed(session, batch, [seq])
    _keep_station_decision(session, page)
    return page


def correct_page(
    session: Session, caller: Caller, batch: Batch, seq: int, patch: Mapping[str, Any], *, if_match: int | None
) -> tuple[Page, Followup]:
    """Apply a person's ``patch`` (turn, skew_deg, crop, blank, excluded, note) to a page."""
    page = _page_to_change(session, batch, seq)
    _refuse_turn_without_decision(page, patch)
    after = merged(page.correction or {}, patch)
    follow = _change_page(session, caller, batch, page, after, "page", if_match=if_match, note=patch.get("note"))
    return page, follow


def rerun(
    session: Session, caller: Caller, batch: Batch, seq: int, *, engine: str | None, if_match: int | None
) -> tuple[Page, Followup]:
    """Read the page again (with ``engine`` if given). A page already waiting for its derivation is
    not queued twice."""
    page = _page_to_change(session, batch, seq)
    after = merged(page.correction or {}, {"engine": engine}) if engine else dict(page.correction or {})
    if page.state in (PageState.queued, PageState.processing) and after == (page.correction or {}):
        return page, Followup()
    follow = _change_page(session, caller, batch, page, after, "rerun", if_match=if_match, force_derive=True)
    return page, follow


def undo(session: Session, caller: Caller, batch: Batch, seq: int, *, if_match: int | None) -> tuple[Page, Followup]:
    """Back to the station's own decision: the correction cleared; the page derived again if the
    correction had changed its image or text."""
    page = _page_to_change(session, batch, seq)
    return page, _change_page(session, caller, batch, page, {}, "undo", if_match=if_match)


# ---- the batch -----------------------------------------------------------------------------------


def reorder(session: Session, caller: Caller, batch: Batch, seqs: Sequence[int]) -> Followup:
    """Put the pages in the order ``seqs`` (every page of the batch once); the PDF and filing follow."""
    refuse_discarded(batch)
    have = sorted(p.seq for p in batch.pages)
    if sorted(seqs) != have:
        missing = sorted(set(have) - set(seqs))
        unknown = sorted(set(seqs) - set(have))
        twice = sorted({s for s in seqs if list(seqs).count(s) > 1})
        said = "; ".join(
            text
            for text in (
                f"missing {', '.join(map(str, missing))}" if missing else "",
                f"not in the batch {', '.join(map(str, unknown))}" if unknown else "",
                f"given twice {', '.join(map(str, twice))}" if twice else "",
            )
            if text
        )
        raise Conflict(
            f"The order must name every page of batch {batch.id} once (pages 1 to {len(have)}): {said}.",
            reason_code="bad_order",
        )
    before = [p.seq for p in in_order(batch.pages)]
    if before == list(seqs):
        return Followup()
    refuse_filed(session, batch, seqs)
    by_seq = {p.seq: p for p in batch.pages}
    for position, seq in enumerate(seqs, start=1):
        by_seq[seq].position = position
    record_correction(
        session,
        caller,
        "order",
        before={"seqs": before},
        after={"seqs": list(seqs)},
        batch_id=batch.id,
        fonds=batch_fonds(batch),
    )
    _reopen(batch, derive=False)
    return Followup(assemble=True)


def accept(session: Session, caller: Caller, batch: Batch, *, note: str | None, seqs: Sequence[int] | None) -> Followup:
    """The flags of the pages (all, or ``seqs``) looked at and accepted as they are; once nothing is
    open, the batch is done and filed as its filing says (by the assembly this queues)."""
    refuse_discarded(batch)
    pages = [page_of(batch, s) for s in seqs] if seqs is not None else list(batch.pages)
    refuse_filed(session, batch, [p.seq for p in pages if open_flags(p.flags or [], p.correction or {})])
    follow = Followup()
    for page in pages:
        flags = open_flags(page.flags or [], page.correction or {})
        if not flags:
            continue
        _keep_station_decision(session, page)
        before = dict(page.correction or {})
        after = merged(before, {"accepted": [*before.get("accepted", []), *flags]})  # the page's note kept
        follow.assemble |= _change_page(
            session, caller, batch, page, after, "accept", if_match=None, note=note
        ).assemble
    if seqs is None:
        follow.assemble |= _review_batch(session, caller, batch, note)
    return follow


def _review_batch(session: Session, caller: Caller, batch: Batch, note: str | None) -> bool:
    """The batch's own error and its items' page counts off, looked at and accepted as they are (in the
    report's ``reviewed``, and the history); True if anything was not accepted before."""
    report = dict(batch.filing or {})
    reviewed = dict(report.get("reviewed") or {})
    after: dict[str, Any] = {}
    if batch.error and reviewed.get("error") != batch.error:
        reviewed["error"] = after["error"] = batch.error
    accepted = dict(reviewed.get("page_checks") or {})
    checks = {code: check for code, check in page_checks(batch).items() if accepted.get(code) != check}
    if checks:
        reviewed["page_checks"] = {**accepted, **checks}
        after["page_checks"] = checks
    if not after:
        return False
    report["reviewed"] = {**reviewed, "by": caller.name, "note": note}
    batch.filing = report
    record_correction(
        session, caller, "accept", before={}, after=after, batch_id=batch.id, fonds=batch_fonds(batch), note=note
    )
    _reopen(batch, derive=False)
    return True


def refuse_open(batch: Batch, seqs: Iterable[int]) -> None:
    """409 ``open_flags`` if a page to file still has flags a person has not looked at."""
    waiting = {s: f for s, f in open_pages(batch).items() if s in set(seqs)}
    if waiting:
        listed = "; ".join(f"page {s}: {', '.join(f)}" for s, f in sorted(waiting.items()))
        raise Conflict(
            f"Batch {batch.id} has pages with open flags ({listed}): correct them (PATCH …/pages/{{seq}}) or "
            f"accept them (POST /api/batches/{batch.id}/accept) first.",
            reason_code="open_flags",
        )


def refuse_busy(batch: Batch, what: str) -> None:
    """409 ``batch_busy`` while the batch is received, a page of it is (re)derived or its assembly is due
    or running (``assembly_queued``): filing or discarding it then would leave that page out, quarantine
    what a worker reads, or be undone by the assembly (which files the batch if nothing is open)."""
    busy = [p.seq for p in batch.pages if p.state in (PageState.queued, PageState.processing)]
    if busy or batch.state == BatchState.receiving:
        pages = f" (page(s) {', '.join(map(str, busy))} queued or processing)" if busy else ""
        raise Conflict(
            f"Batch {batch.id} is still being processed{pages}; {what} it once its pages are done.",
            reason_code="batch_busy",
        )
    if batch.assembly_queued:
        raise Conflict(
            f"Batch {batch.id}'s PDF is being assembled (and filed if nothing is open); {what} it once that is done.",
            reason_code="batch_busy",
        )


def pages_for_filing(session: Session, batch: Batch, seqs: Sequence[int] | None) -> list[int]:
    """The batch pages a filing by hand takes (``POST /api/batches/{id}/file``, ``…/split`` and
    ``POST /api/items/{档号}/pages``), or why it may not: the named pages, else every usable page not
    filed yet in the batch's order (excluded ones left out). Refused (409) while the batch is discarded
    or a page is derived, and while a page to file (by default: any page) has flags not looked at."""
    refuse_discarded(batch)
    refuse_busy(batch, "file")
    chosen = list(seqs) if seqs is not None else filing_seqs(session, batch)
    for seq in chosen:
        page_of(batch, seq)
    # By default the whole batch is filed: every page must have been looked at (a blank left out too).
    refuse_open(batch, chosen if seqs is not None else [p.seq for p in batch.pages])
    return chosen


def named_fonds(batch: Batch) -> list[str]:
    """Every fonds the batch is filed into or would be: its 档号, its folder's, the items of its filing
    report and proposal, the 档号 its separator sheets print."""
    report = batch.filing or {}
    codes = [batch.archival_code, report.get("target")]
    for key in ("items", "by_hand", "proposed"):
        codes += [entry.get("archival_code") for entry in report.get(key) or []]
    codes += [((p.details or {}).get("separator") or {}).get("archival_code") for p in batch.pages]
    found = set()
    for code in codes:
        if code:
            try:
                found.add(ac.parse(code).fonds)
            except ac.InvalidArchivalCode:
                continue  # a sheet's unreadable print files nothing
    return sorted(found)


def require_named_fonds(caller: Caller, batch: Batch) -> None:
    """403 unless the caller may work in every fonds the batch files into (:func:`named_fonds`): a
    batch split at separator sheets has no fonds of its own, and its sheets may name another's items."""
    for fonds in named_fonds(batch):
        require_fonds(caller, fonds)


def filing_seqs(session: Session, batch: Batch) -> list[int]:
    """The pages a filing takes by default: every usable page not filed yet, in the batch's order."""
    filed = _filed_in(session, batch.id, [p.seq for p in batch.pages])
    return [p.seq for p in in_order(batch.pages) if usable(p) and p.seq not in filed]


def file_chosen(
    session: Session,
    settings: Settings,
    caller: Caller,
    batch: Batch,
    code: str,
    seqs: Sequence[int] | None,
    **how: Any,
) -> tuple[filing.FilingResult, Batch]:
    """A person files the batch's pages ``seqs`` (None: as :func:`pages_for_filing` chooses) into ``code``:
    the checks of every filing by hand (every fonds the batch files into, flags looked at, nothing busy),
    then :func:`file_by_hand`. ``POST /api/batches/{id}/file`` and ``POST /api/items/{档号}/pages``."""
    require_named_fonds(caller, batch)
    chosen = pages_for_filing(session, batch, seqs)
    session.commit()  # the filing runs in transactions of its own
    return file_by_hand(session, settings, caller, batch.id, code, chosen, action="file", **how)


def file_by_hand(
    session: Session,
    settings: Settings,
    caller: Caller,
    batch_id: int,
    code: str,
    seqs: Sequence[int],
    *,
    action: str,
    **how: Any,
) -> tuple[filing.FilingResult, Batch]:
    """File the pages ``seqs`` (as :func:`pages_for_filing` chose them, that transaction committed) into
    the item ``code`` (``how``: mode, at, replace) and write it down in the batch (:func:`record_filed`):
    its report, its history, its state, its pages in search. The one way a person files a batch's pages
    (``POST /api/batches/{id}/file``, ``…/split``, ``POST /api/items/{档号}/pages``); 403 unless the
    caller may work in the item's fonds. The caller commits."""
    require_fonds(caller, ac.parse(code).fonds)
    result = filing.file_batch(settings, batch_id, code, seqs=seqs, actor=caller.name, may_create=True, **how)
    entry = {
        "archival_code": result.archival_code,
        "batch_pages": list(seqs),
        "pages_filed": result.pages_filed,
        "page_check": result.page_check,
        "pages": result.serials,
        "by": caller.name,
    }
    session.expire_all()  # the filing wrote in sessions of its own
    batch = session.get(Batch, batch_id)
    assert batch is not None
    record_filed(session, caller, batch, [entry], action)
    filing.index_batch(session, batch)
    return result, batch


def record_filed(session: Session, caller: Caller, batch: Batch, entries: list[dict[str, Any]], action: str) -> None:
    """A filing by hand (:func:`file_by_hand`): in the batch's report, the history, its state."""
    report = dict(batch.filing or {})
    report["by_hand"] = [*report.get("by_hand", []), *entries]
    report.pop("proposed", None)
    report["problems"] = []
    batch.filing = report
    for entry in entries:
        record_correction(
            session,
            caller,
            action,
            before={},
            after=entry,
            batch_id=batch.id,
            archival_code=entry["archival_code"],
            fonds=batch_fonds(batch),
        )
    session.flush()
    session.refresh(batch)
    if batch.archival_code is None and entries:
        batch.archival_code = entries[0]["archival_code"]
    batch.state = settled_state(batch)


def discard(
    session: Session,
    caller: Caller,
    batch: Batch,
    *,
    note: str | None,
    set_aside: Callable[[Original], None],
) -> bool:
    """Discard a batch not filed: its originals go to quarantine (``set_aside``, never deleted), its
    pages leave search, the batch ends ``discarded``. False if it was discarded already."""
    if batch.state == BatchState.discarded:
        return False
    refuse_filed(session, batch, [p.seq for p in batch.pages])
    refuse_busy(batch, "discard")
    before = {"state": batch.state.value}
    for original in batch.originals:
        if not original.quarantined:
            set_aside(original)
    session.execute(delete(SearchEntry).where(SearchEntry.batch_id == batch.id))
    batch.state = BatchState.discarded
    batch.error = f"Discarded by {caller.name}" + (f": {note}" if note else ".")
    batch.error_code = "discarded"
    record_correction(
        session,
        caller,
        "discard",
        before=before,
        after={"state": "discarded"},
        batch_id=batch.id,
        fonds=batch_fonds(batch),
        note=note,
    )
    return True


__all__ = [
    "ENGINES",
    "Followup",
    "accept",
    "correct_page",
    "discard",
    "file_by_hand",
    "filing_seqs",
    "open_pages",
    "page_checks",
    "named_fonds",
    "page_of",
    "pages_for_filing",
    "parse_version",
    "record_filed",
    "refuse_busy",
    "refuse_filed",
    "refuse_open",
    "require_named_fonds",
    "reorder",
    "rerun",
    "settled_state",
    "undo",
]
