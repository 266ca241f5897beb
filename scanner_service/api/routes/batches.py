"""Batches as received: their state, pages and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scanner_service.api.deps import CurrentToken, SessionDep
from scanner_service.api.files import (
    IfNoneMatch,
    PdfResponse,
    RangeHeader,
    not_modified,
    not_modified_response,
    pdf_responses,
)
from scanner_service.api.schemas import (
    BatchDetail,
    BatchIdPath,
    BatchPublic,
    Limit,
    Offset,
    OriginalPublic,
    PageCounts,
    PagePublic,
    error_responses,
)
from scanner_service.archive import access
from scanner_service.archive.access import Caller
from scanner_service.archive.filing import batch_fonds
from scanner_service.archive.models import Batch, BatchState, PageState, Role
from scanner_service.exceptions import NotFound

router = APIRouter(prefix="/api/batches", tags=["batches"])


def _public(batch: Batch) -> dict[str, Any]:
    pages = batch.pages
    return {
        "id": batch.id,
        "name": batch.name,
        "state": batch.state,
        "archival_code": batch.archival_code,
        "pages": PageCounts(
            total=len(pages),
            done=sum(p.state == PageState.done for p in pages),
            blank=sum(p.blank for p in pages),
            failed=sum(p.state == PageState.failed for p in pages),
        ),
        "error": batch.error,
        "error_code": batch.error_code,
        "duplicate_of": batch.duplicate_of,
        "created_at": batch.created_at,
        "finished_at": batch.finished_at,
        "pdf_url": f"/api/batches/{batch.id}/pdf" if batch.pdf_path else None,
        "filing": dict(batch.filing or {}),
    }


@router.get(
    "",
    response_model=list[BatchPublic],
    summary="Batches, newest first",
    responses=error_responses(401, 403, 422),
)
def list_batches(
    session: SessionDep,
    token: CurrentToken,
    state: Annotated[BatchState | None, Query(description="Only batches in this state")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    _staff_only(token)
    stmt = select(Batch).options(selectinload(Batch.pages)).order_by(Batch.id.desc()).limit(limit).offset(offset)
    if state:
        stmt = stmt.where(Batch.state == state)
    # Fonds limits are applied after the query: a township station holds hundreds of batches, not millions.
    return [_public(b) for b in session.scalars(stmt) if access.may_see_batch(token, batch_fonds(b))]


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
    batch = _get(session, token, batch_id)
    names = {o.id: o.name for o in batch.originals}
    return {
        **_public(batch),
        "page_list": [
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
            )
            for p in batch.pages
        ],
        "originals": [
            OriginalPublic(name=o.name, size=o.size, sha256=o.sha256, quarantined=o.quarantined, error=o.error)
            for o in batch.originals
        ],
    }


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
