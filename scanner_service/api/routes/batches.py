"""Batches as received: their state, pages and PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from scanner_service.api.deps import CurrentToken, SessionDep
from scanner_service.api.schemas import BatchDetail, BatchPublic, OriginalPublic, PageCounts, PagePublic
from scanner_service.archive import access
from scanner_service.archive.filing import batch_fonds
from scanner_service.archive.models import ApiToken, Batch, PageState, Role
from scanner_service.exceptions import NotFound

router = APIRouter(prefix="/api/batches", tags=["batches"])


def _public(batch: Batch) -> dict[str, Any]:
    pages = batch.pages
    return {
        "id": batch.id,
        "name": batch.name,
        "state": batch.state.value,
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


@router.get("", response_model=list[BatchPublic], summary="Batches, newest first")
def list_batches(
    session: SessionDep,
    token: CurrentToken,
    state: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[dict[str, Any]]:
    _staff_only(token)
    stmt = select(Batch).options(selectinload(Batch.pages)).order_by(Batch.id.desc()).limit(limit).offset(offset)
    if state:
        stmt = stmt.where(Batch.state == state)
    # Fonds limits are applied after the query: a township station holds hundreds of batches, not millions.
    return [_public(b) for b in session.scalars(stmt) if access.may_see_batch(token, batch_fonds(b))]


def _staff_only(token: ApiToken) -> None:
    # Batches are the scanning room's work in progress; readers see filed items only.
    access.require_role(token, Role.admin, Role.archivist, Role.operator)


def _get(session: SessionDep, token: ApiToken, batch_id: int) -> Batch:
    _staff_only(token)
    batch = session.get(Batch, batch_id)
    if batch is None or not access.may_see_batch(token, batch_fonds(batch)):
        raise NotFound(f"No batch {batch_id}.")
    return batch


@router.get("/{batch_id}", response_model=BatchDetail, summary="One batch with its pages and originals")
def get_batch(batch_id: int, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    batch = _get(session, token, batch_id)
    names = {o.id: o.name for o in batch.originals}
    return {
        **_public(batch),
        "page_list": [
            PagePublic(
                seq=p.seq,
                state=p.state.value,
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
    response_class=FileResponse,
    summary="The batch's searchable PDF/A (blank pages left out)",
    responses={200: {"content": {"application/pdf": {}}}, 404: {"description": "No batch, or no PDF yet"}},
)
def get_batch_pdf(batch_id: int, session: SessionDep, token: CurrentToken) -> FileResponse:
    batch = _get(session, token, batch_id)
    if not batch.pdf_path or not Path(batch.pdf_path).exists():
        raise NotFound(f"Batch {batch_id} has no PDF yet (state: {batch.state.value}).")
    filename = f"{batch.archival_code or batch.name}.pdf"
    return FileResponse(batch.pdf_path, media_type="application/pdf", filename=filename)
