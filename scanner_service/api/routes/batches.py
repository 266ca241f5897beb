"""Batches as received: their state, pages and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi import Path as PathParam
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.api.deps import CurrentToken, SessionDep, SettingsDep
from scanner_service.api.files import (
    IfNoneMatch,
    PdfResponse,
    RangeHeader,
    not_modified,
    not_modified_response,
    pdf_responses,
)
from scanner_service.api.schemas import (
    INT32_MAX,
    AcceptRequest,
    BatchDetail,
    BatchFileRequest,
    BatchIdPath,
    BatchPublic,
    DiscardRequest,
    FlagCounts,
    HistoryEntry,
    Limit,
    Offset,
    OrderRequest,
    OriginalPublic,
    PageCorrection,
    PageCounts,
    PagePublic,
    RerunRequest,
    SplitRequest,
    error_responses,
)
from scanner_service.archive import access, corrections, previews
from scanner_service.archive import archival_code as ac
from scanner_service.archive.access import Caller
from scanner_service.archive.batches import PageSummary, claim_assembly, in_order, page_summaries, summarise
from scanner_service.archive.corrections import batch as batch_corrections
from scanner_service.archive.corrections import history_entry
from scanner_service.archive.filing import batch_fonds
from scanner_service.archive.models import (
    Batch,
    BatchState,
    Correction,
    Item,
    ItemPage,
    Original,
    Page,
    PageState,
    Role,
)
from scanner_service.exceptions import Conflict, NotFound, UnusableInput
from scanner_service.settings import Settings
from scanner_service.station import intake
from scanner_service.station import queue as q

router = APIRouter(prefix="/api/batches", tags=["batches"])
SeqPath = Annotated[int, PathParam(ge=1, le=INT32_MAX, description="The page's number in scan order (seq), from 1")]


def _public(batch: Batch, summary: PageSummary | None = None) -> dict[str, Any]:
    """A batch as every answer shows it; ``summary``: its pages' numbers if already counted in SQL
    (the list), else counted from its loaded pages."""
    if summary is None:
        summary = summarise(batch.pages)
    return {
        "id": batch.id,
        "name": batch.name,
        "state": batch.state,
        "archival_code": batch.archival_code,
        "pages": PageCounts(total=summary.total, done=summary.done, blank=summary.blank, failed=summary.failed),
        "flags": FlagCounts(**summary.flags),
        "pages_per_minute": summary.pages_per_minute(),
        "seconds_left": summary.seconds_left(batch.state),
        "error": batch.error,
        "error_code": batch.error_code,
        "duplicate_of": batch.duplicate_of,
        "created_at": batch.created_at,
        "finished_at": batch.finished_at,
        "assembling": bool(batch.assembly_queued) and batch.state != BatchState.discarded,
        "pdf_url": f"/api/batches/{batch.id}/pdf" if batch.pdf_path else None,
        "filing": dict(batch.filing or {}),
    }


StateFilter = Annotated[
    list[BatchState] | None, Query(max_length=10, description="Only batches in these states (?state=a&state=b)")
]
BatchIds = Annotated[
    list[Annotated[int, Field(ge=1, le=INT32_MAX)]] | None,
    Query(max_length=200, description="Only these batches (?ids=3&ids=5): to refresh some rows of a list"),
]


@router.get(
    "",
    response_model=list[BatchPublic],
    summary="Batches, newest first",
    responses=error_responses(401, 403, 422),
)
def list_batches(
    session: SessionDep,
    token: CurrentToken,
    state: StateFilter = None,
    ids: BatchIds = None,
    before: Annotated[
        int | None,
        Query(
            ge=1,
            le=INT32_MAX,
            description="Only batches older than this id: the next page of the list, which stays the same "
            "while new batches arrive (an offset would shift)",
        ),
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Newest first. Each batch's page and flag counts are aggregated in SQL (no page row is loaded), and
    the fonds limits are part of the query, so that limit and offset page through what the caller sees."""
    _staff_only(token)
    stmt = select(Batch).where(access.batch_filter(token)).order_by(Batch.id.desc()).limit(limit).offset(offset)
    if state:
        stmt = stmt.where(Batch.state.in_(state))
    if ids:
        stmt = stmt.where(Batch.id.in_(ids))
    if before is not None:
        stmt = stmt.where(Batch.id < before)
    found = [b for b in session.scalars(stmt) if access.may_see_batch(token, batch_fonds(b))]
    summaries = page_summaries(session, [b.id for b in found])
    return [_public(b, summaries.get(b.id, PageSummary())) for b in found]


def _staff_only(token: Caller) -> None:
    # Batches are the scanning room's work in progress; readers see filed items only.
    access.require_role(token, Role.admin, Role.archivist, Role.operator)


def _get(session: SessionDep, token: Caller, batch_id: int) -> Batch:
    _staff_only(token)
    batch = session.get(Batch, batch_id)
    if batch is None or not access.may_see_batch(token, batch_fonds(batch)):
        raise NotFound(f"No batch {batch_id}.")
    return batch


@router.get(
    "/{batch_id}",
    response_model=BatchDetail,
    summary="One batch with its pages and originals",
    responses=error_responses(401, 403, 404, 422),
)
def get_batch(batch_id: BatchIdPath, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    """The batch; per page its state, the station's decision, the person's correction, the flags still
    open, its version (If-Match) and history, in the batch's order."""
    batch = _get(session, token, batch_id)
    return _detail(session, batch)


def _detail(session: Session, batch: Batch) -> dict[str, Any]:
    rows = session.scalars(
        select(Correction).where(Correction.batch_id == batch.id, Correction.seq.is_(None)).order_by(Correction.id)
    )
    return {
        **_public(batch),
        "page_list": _page_views(session, batch),
        "originals": _originals(batch),
        "history": [HistoryEntry(**history_entry(row)) for row in rows],
    }


def _originals(batch: Batch) -> list[OriginalPublic]:
    return [
        OriginalPublic(name=o.name, size=o.size, sha256=o.sha256, quarantined=o.quarantined, error=o.error)
        for o in batch.originals
    ]


@router.get(
    "/{batch_id}/pdf",
    response_class=PdfResponse,
    summary="The batch's searchable PDF/A (blank pages left out); Range, ETag and If-None-Match honoured",
    responses=pdf_responses(401, 403, 404, 422),
)
@router.head(
    "/{batch_id}/pdf",
    response_class=PdfResponse,
    summary="The batch PDF's headers (Content-Length, ETag, Accept-Ranges) without the body",
    responses=pdf_responses(401, 403, 404, 422),
)
def get_batch_pdf(
    batch_id: BatchIdPath,
    session: SessionDep,
    token: CurrentToken,
    if_none_match: IfNoneMatch = None,
    _range: RangeHeader = None,
) -> Response:
    batch = _get(session, token, batch_id)
    if not batch.pdf_path or not Path(batch.pdf_path).exists():
        raise NotFound(f"Batch {batch_id} has no PDF yet (state: {batch.state.value}).")
    path = Path(batch.pdf_path)
    # The assembly records the PDF's SHA-256; a PDF from before that has its size and time as a tag.
    etag = f'"{batch.pdf_sha256}"' if batch.pdf_sha256 else f'"{path.stat().st_mtime_ns:x}-{path.stat().st_size:x}"'
    if not_modified(if_none_match, etag):
        return not_modified_response(etag)
    return PdfResponse(path, etag=etag, filename=f"{batch.archival_code or batch.name}.pdf")


# ---- corrections before filing ---------------------------------------------------------------------

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=100,
        description="The page's version (its ETag) the correction was made on; a stale one answers 409",
    ),
]
CORRECTION_ERRORS = error_responses(400, 401, 403, 404, 409, 422)


def _page_views(session: Session, batch: Batch, pages: list[Page] | None = None) -> list[PagePublic]:
    """The pages as the API shows them: state, the station's decision, the person's correction, the
    flags still open, the version and the history; in the batch's order."""
    names = {o.id: o.name for o in batch.originals}
    ordered = in_order(batch.pages)
    place = {p.seq: n for n, p in enumerate(ordered, start=1)}
    history: dict[int, list[dict[str, Any]]] = {}
    for row in session.scalars(
        select(Correction).where(Correction.batch_id == batch.id, Correction.seq.is_not(None)).order_by(Correction.id)
    ):
        history.setdefault(row.seq or 0, []).append(history_entry(row))
    filed = dict(
        session.execute(
            select(ItemPage.batch_seq, Item.archival_code)
            .join(Item, Item.id == ItemPage.item_id)
            .where(ItemPage.batch_id == batch.id)
        ).all()
    )
    return [
        PagePublic(
            seq=p.seq,
            state=p.state,
            attempts=p.attempts,
            blank=p.blank,
            flags=list(p.flags or []),
            confidence=p.confidence,
            dpi=p.dpi,
            error=p.error,
            error_code=p.error_code,
            source=f"{names.get(p.original_id, '?')}#{p.source_index + 1}",
            source_file=names.get(p.original_id, "?"),
            source_page=p.source_index + 1,
            details=dict(p.details or {}),
            position=place[p.seq],
            version=p.version,
            decision=p.decision,
            correction=dict(p.correction or {}),
            open_flags=corrections.open_flags(p.flags or [], p.correction or {}),
            filed_in=filed.get(p.seq),
            history=[HistoryEntry(**h) for h in history.get(p.seq, [])],
        )
        for p in (ordered if pages is None else pages)
    ]


def _follow(settings: Settings, session: Session, batch_id: int, follow: batch_corrections.Followup) -> None:
    """After the commit: derive the pages again at the front of the queue, or rebuild the batch PDF.

    What an earlier request left undone (its queueing failed after its commit, Redis being down) is
    done too, even if this request changed nothing: pages left queued, an assembly claimed but not queued.
    """
    waiting = session.scalars(select(Page.id).where(Page.batch_id == batch_id, Page.state == PageState.queued)).all()
    claimed = bool(session.scalar(select(Batch.assembly_queued).where(Batch.id == batch_id)))
    session.rollback()  # nothing to write: the reads' transaction ends before Redis is asked
    derive = list(dict.fromkeys([*follow.derive, *waiting]))
    if not derive and not follow.assemble and not claimed:
        return
    url = settings.effective_database_url
    connection = q.connect(settings)
    try:
        queue = q.get_queue(connection)
        for page_id in derive:
            q.enqueue_page(queue, settings, page_id, at_front=True)
        if not derive and claim_assembly(url, batch_id, reclaim=True):
            q.enqueue_assembly(queue, settings, batch_id, at_front=True)
    finally:
        connection.close()


def _page_answer(
    session: Session,
    settings: Settings,
    batch: Batch,
    page: Page,
    follow: batch_corrections.Followup,
    response: Response,
) -> PagePublic:
    session.commit()
    _follow(settings, session, batch.id, follow)
    session.refresh(batch)
    session.refresh(page)
    [view] = _page_views(session, batch, [page])
    response.headers["ETag"] = f'"{page.version}"'
    return view


@router.patch(
    "/{batch_id}/pages/{seq}",
    response_model=PagePublic,
    summary="Correct a page before filing: turn, skew_deg, blank, excluded, crop, note (operator, archivist)",
    responses=CORRECTION_ERRORS,
)
def patch_page(
    batch_id: BatchIdPath,
    seq: SeqPath,
    body: PageCorrection,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    if_match: IfMatch = None,
) -> PagePublic:
    batch = _get(session, token, batch_id)
    patch = body.model_dump(include=body.model_fields_set)
    page, follow = batch_corrections.correct_page(
        session, token, batch, seq, patch, if_match=batch_corrections.parse_version(if_match)
    )
    return _page_answer(session, settings, batch, page, follow, response)


@router.post(
    "/{batch_id}/pages/{seq}/rerun",
    response_model=PagePublic,
    summary="Read a page again (optionally with another OCR engine); it goes to the front of the queue",
    responses=CORRECTION_ERRORS,
)
def rerun_page(
    batch_id: BatchIdPath,
    seq: SeqPath,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    body: RerunRequest | None = None,
    if_match: IfMatch = None,
) -> PagePublic:
    batch = _get(session, token, batch_id)
    engine = body.engine if body is not None else None
    page, follow = batch_corrections.rerun(
        session, token, batch, seq, engine=engine, if_match=batch_corrections.parse_version(if_match)
    )
    return _page_answer(session, settings, batch, page, follow, response)


@router.post(
    "/{batch_id}/pages/{seq}/undo",
    response_model=PagePublic,
    summary="Back to the station's own decision for a page: the correction cleared, the page derived again",
    responses=CORRECTION_ERRORS,
)
def undo_page(
    batch_id: BatchIdPath,
    seq: SeqPath,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    if_match: IfMatch = None,
) -> PagePublic:
    batch = _get(session, token, batch_id)
    page, follow = batch_corrections.undo(
        session, token, batch, seq, if_match=batch_corrections.parse_version(if_match)
    )
    return _page_answer(session, settings, batch, page, follow, response)


def _batch_answer(
    session: Session, settings: Settings, batch: Batch, follow: batch_corrections.Followup | None = None
) -> dict[str, Any]:
    session.commit()
    if follow is not None:
        _follow(settings, session, batch.id, follow)
    session.refresh(batch)
    return _detail(session, batch)


@router.post(
    "/{batch_id}/order",
    response_model=BatchDetail,
    summary="Put the batch's pages in a new order (every page once); the PDF and filing follow it",
    responses=CORRECTION_ERRORS,
)
def order_pages(
    batch_id: BatchIdPath, body: OrderRequest, settings: SettingsDep, session: SessionDep, token: CurrentToken
) -> dict[str, Any]:
    batch = _get(session, token, batch_id)
    follow = batch_corrections.reorder(session, token, batch, body.seqs)
    return _batch_answer(session, settings, batch, follow)


@router.post(
    "/{batch_id}/accept",
    response_model=BatchDetail,
    summary="Accept the flags of the pages (all, or 'seqs') as they are; once nothing is open the batch is filed",
    responses=CORRECTION_ERRORS,
)
def accept_flags(
    batch_id: BatchIdPath, body: AcceptRequest, settings: SettingsDep, session: SessionDep, token: CurrentToken
) -> dict[str, Any]:
    batch = _get(session, token, batch_id)
    batch_corrections.require_named_fonds(token, batch)  # accepting files the batch where it says
    follow = batch_corrections.accept(session, token, batch, note=body.note, seqs=body.seqs)
    return _batch_answer(session, settings, batch, follow)


@router.post(
    "/{batch_id}/file",
    response_model=BatchDetail,
    summary="File the batch's pages (default: every usable page, in order) under a 档号 (operator, archivist)",
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
def file_batch_pages(
    batch_id: BatchIdPath, body: BatchFileRequest, settings: SettingsDep, session: SessionDep, token: CurrentToken
) -> dict[str, Any]:
    batch = _get(session, token, batch_id)
    how = {"mode": body.mode, "at": body.at, "replace": body.replace}
    _, batch = batch_corrections.file_chosen(session, settings, token, batch, body.archival_code, body.seqs, **how)
    return _batch_answer(session, settings, batch)


@router.post(
    "/{batch_id}/split",
    response_model=BatchDetail,
    summary="File the batch's pages as several items, each under its 档号 (operator, archivist)",
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
def split_batch(
    batch_id: BatchIdPath, body: SplitRequest, settings: SettingsDep, session: SessionDep, token: CurrentToken
) -> dict[str, Any]:
    batch = _get(session, token, batch_id)
    batch_corrections.require_named_fonds(token, batch)
    batch_corrections.refuse_discarded(batch)
    batch_corrections.refuse_busy(batch, "split")
    every = [seq for part in body.items for seq in part.seqs]
    twice = sorted({s for s in every if every.count(s) > 1})
    if twice:
        raise Conflict(
            f"A page goes into one item only: page(s) {', '.join(map(str, twice))} are named twice.",
            reason_code="bad_split",
        )
    for part in body.items:
        access.require_fonds(token, ac.parse(part.archival_code).fonds)
        for seq in part.seqs:
            batch_corrections.page_of(batch, seq)
    batch_corrections.refuse_filed(session, batch, every)
    batch_corrections.refuse_open(batch, every)
    session.commit()
    for part in body.items:  # each item written down once filed: those before a refusal stay filed, and said
        _, batch = batch_corrections.file_by_hand(
            session, settings, token, batch_id, part.archival_code, list(part.seqs), action="split", mode="new"
        )
        session.commit()
    return _batch_answer(session, settings, batch)


@router.post(
    "/{batch_id}/discard",
    response_model=BatchDetail,
    summary="Discard a batch not filed: its originals go to quarantine (never deleted); it ends 'discarded'",
    responses=CORRECTION_ERRORS,
)
def discard_batch(
    batch_id: BatchIdPath, body: DiscardRequest, settings: SettingsDep, session: SessionDep, token: CurrentToken
) -> dict[str, Any]:
    batch = _get(session, token, batch_id)
    batch_corrections.require_named_fonds(token, batch)
    reason = f"Discarded by {token.name}" + (f": {body.note}" if body.note else ".")

    def set_aside(original: Original) -> None:
        intake.set_aside_original(settings, batch, original, UnusableInput(reason, reason_code="discarded"))

    batch_corrections.discard(session, token, batch, note=body.note, set_aside=set_aside)
    answer = _batch_answer(session, settings, batch)
    previews.forget(settings, batch.id)  # its pages are shown no more (409 discarded)
    return answer


# ---- page pictures for the review screen -----------------------------------------------------------

PICTURE_FOREVER = "private, max-age=31536000, immutable"


@router.get(
    "/{batch_id}/pages/{seq}/image",
    response_class=Response,
    summary="A page's picture: the master as scanned or the processed page, as JPEG or PNG (staff)",
    description="`width` scales it down (thumbnails). With `v` equal to the page's version the answer may be "
    "cached for good (a correction raises the version, so the next URL differs); `ETag` and `If-None-Match` "
    "otherwise. 409 with reason `page_not_ready` (not processed yet, or being derived again), `page_failed`, "
    "`too_large` (over SCANSTATION_MAX_PIXELS), `original_set_aside` or `discarded` (the batch was discarded) "
    "when the page has no such picture now; "
    "503 `damaged_file` when the processed image in the spool cannot be read.",
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}},
        304: {"description": "Not modified (If-None-Match)"},
        **error_responses(401, 403, 404, 409, 422, 503),
    },
)
def get_page_picture(
    batch_id: BatchIdPath,
    seq: SeqPath,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    view: Annotated[
        previews.View, Query(description="master: the page as scanned; processed: as the station made it")
    ] = "processed",
    width: Annotated[int | None, Query(ge=16, le=4000, description="At most this many pixels wide")] = None,
    v: Annotated[int | None, Query(ge=0, le=INT32_MAX, description="The page's version, for caching")] = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    batch = _get(session, token, batch_id)
    # One row, not the batch's page list: a grid asks for dozens of these at once.
    page = session.scalar(select(Page).where(Page.batch_id == batch.id, Page.seq == seq))
    if page is None:
        raise NotFound(f"Batch {batch.id} has no page {seq}.")
    picture = previews.page_picture(settings, batch, page, view, width)
    headers = {"ETag": picture.etag, "Cache-Control": PICTURE_FOREVER if v == page.version else "private, no-cache"}
    if not_modified(if_none_match, picture.etag):
        return Response(status_code=304, headers=headers)
    data, media_type = picture.read()
    return Response(data, media_type=media_type, headers=headers)
