"""送档下乡 through the API (archivists): start an offline export, follow it, download its disc images.

An export asked here is written by the API process in the background, into the station's own
``data/exports/`` (a folder per export, with its ISO images); ``GET /api/exports/{id}`` says how far it
is, and ``GET /api/exports/{id}/iso`` downloads a volume's image. The same as ``scanstation export``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from scanner_service.api.deps import CurrentToken, SessionDep, SettingsDep
from scanner_service.api.schemas import INT32_MAX, NO_NUL, UtcDateTime, error_responses
from scanner_service.archive import access
from scanner_service.archive.export import ExportSpec
from scanner_service.archive.export.choose import EXPORTERS, parse_volume_size, parse_years
from scanner_service.archive.export.run import prepare_export
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ExportRecord, ExportState
from scanner_service.exceptions import Conflict, NotFound

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/exports", tags=["exports"])
ExportId = Annotated[int, Path(ge=1, le=INT32_MAX)]


class ExportRequest(BaseModel):
    fonds: str | None = Field(default=None, max_length=8, pattern=r"^[A-Za-z0-9]*$", description="全宗号")
    category: str | None = Field(default=None, max_length=4, pattern=r"^[A-Za-z]*$", description="门类 (WS, KJ …)")
    years: str | None = Field(default=None, max_length=20, pattern=NO_NUL, description="2013 or 1998-2013")
    items: list[Annotated[str, Field(max_length=128, pattern=NO_NUL)]] = Field(
        default_factory=list, max_length=10_000, description="档号 of the items (either style); empty = all asked"
    )
    include_restricted: bool = Field(
        default=False, strict=True, description="Also the restricted items named in 'items' (密级, or not 开放)"
    )
    recipient: str | None = Field(default=None, max_length=200, pattern=NO_NUL, description="For whom (利用登记)")
    purpose: str | None = Field(default=None, max_length=500, pattern=NO_NUL, description="Why (利用登记)")
    volume_size: str | None = Field(
        default=None, max_length=20, pattern=NO_NUL, description="CD, DVD, DVD-DL, BD or a size such as 650M"
    )
    iso: bool = Field(default=True, strict=True, description="Write an ISO 9660 image of each volume")


class LeftOutPublic(BaseModel):
    archival_code: str
    reason_code: str = Field(description="restricted, no_pages, pdf_changed, too_big")
    reason: str


class ExportPublic(BaseModel):
    id: int
    at: UtcDateTime
    finished_at: UtcDateTime | None
    who: str
    role: str
    recipient: str | None
    purpose: str | None
    request: dict[str, Any] = Field(description="What was asked: fonds, category, years, items, volume size")
    state: str = Field(description="running, done or failed")
    items: int
    pages: int
    bytes: int = Field(description="Of every file written, all volumes")
    volumes: int
    isos: int = Field(description="ISO images written (one per volume), downloaded by GET …/iso?volume=N")
    done_bytes: int = Field(description="PDF bytes copied so far")
    total_bytes: int = Field(description="PDF bytes to copy in all")
    left_out: list[LeftOutPublic]
    error: str | None


def _public(record: ExportRecord) -> dict[str, Any]:
    return {
        **{name: getattr(record, name) for name in ExportPublic.model_fields if name != "isos"},
        "state": record.state.value,
        "isos": len(record.isos or []),
    }


def _visible(token: access.Caller, record: ExportRecord) -> bool:
    """An admin (or an archivist of every fonds) sees every export; an archivist of some fonds, the exports
    it made and those whose every fonds (asked, exported, left out) is one of its own: a record lists the
    items left out, restricted ones too."""
    scope = access.fonds_scope(token)
    if scope is None:
        return True
    own = (token.user_id is not None and record.user_id == token.user_id) or (
        token.token_id is not None and record.token_id == token.token_id
    )
    touched = set((record.request or {}).get("fonds_touched") or [])
    return own or (bool(touched) and touched <= set(scope))


def _record(session: SessionDep, token: access.Caller, export_id: int) -> ExportRecord:
    access.require_role(token, *EXPORTERS)
    record = session.get(ExportRecord, export_id)
    if record is None or not _visible(token, record):
        raise NotFound(f"No export {export_id} that this caller may see.")
    return record


@router.post(
    "",
    status_code=202,
    response_model=ExportPublic,
    summary="Start an offline export (送档下乡) of the items asked (archivists); it is written in the background",
    responses=error_responses(401, 403, 404, 422),
)
def start_export(
    body: ExportRequest, settings: SettingsDep, token: CurrentToken, session: SessionDep
) -> dict[str, Any]:
    """Only open items go in (and restricted ones an archivist names with ``include_restricted``); what was
    left out is listed at once. Poll ``GET /api/exports/{id}`` until its state is done or failed."""
    access.require_role(token, *EXPORTERS)
    spec = ExportSpec(
        fonds=body.fonds or None,
        category=body.category or None,
        years=parse_years(body.years),
        items=tuple(body.items),
        include_restricted=body.include_restricted,
        recipient=body.recipient,
        purpose=body.purpose,
        volume_size=parse_volume_size(body.volume_size),
    )
    folder = Layout.of(settings).data / "exports" / f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    try:
        prepared = prepare_export(
            settings, token, spec, folder / "export", iso=folder / "export.iso" if body.iso else None
        )
    except BaseException:
        folder.rmdir()  # nothing was written in it: the request was refused
        raise

    def write() -> None:
        try:
            prepared.write()
        except Exception:  # recorded on the export (state failed, error); the log keeps the trace
            log.exception("export %s failed", prepared.export_id)

    threading.Thread(target=write, name=f"export-{prepared.export_id}", daemon=True).start()
    record = session.get(ExportRecord, prepared.export_id)
    assert record is not None
    return _public(record)


@router.get(
    "",
    response_model=list[ExportPublic],
    summary="The exports made, newest first (archivists: those of their fonds)",
    responses=error_responses(401, 403, 422),
)
def list_exports(
    session: SessionDep,
    token: CurrentToken,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    access.require_role(token, *EXPORTERS)
    records = session.scalars(select(ExportRecord).order_by(ExportRecord.id.desc()).limit(limit * 4))
    return [_public(r) for r in records if _visible(token, r)][:limit]


@router.get(
    "/{export_id}",
    response_model=ExportPublic,
    summary="One export: its state and progress, what went in and what was left out",
    responses=error_responses(401, 403, 404, 422),
)
def get_export(export_id: ExportId, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    return _public(_record(session, token, export_id))


@router.get(
    "/{export_id}/iso",
    response_class=FileResponse,
    summary="Download one volume's ISO 9660 image (Joliet and Rock Ridge: the Chinese names kept)",
    responses={200: {"content": {"application/x-iso9660-image": {}}}, **error_responses(401, 403, 404, 409, 422)},
)
def get_export_iso(
    export_id: ExportId,
    session: SessionDep,
    token: CurrentToken,
    volume: Annotated[int, Query(ge=1, le=1000, description="The volume, from 1")] = 1,
) -> FileResponse:
    record = _record(session, token, export_id)
    if record.state != ExportState.done:
        raise Conflict(f"Export {export_id} is {record.state.value}: its images are ready when it is done.")
    isos = record.isos or []
    if volume > len(isos):
        raise NotFound(f"Export {export_id} has {len(isos)} ISO image(s), not a volume {volume}.")
    path = isos[volume - 1]
    if not os.path.isfile(path):
        raise NotFound(f"Export {export_id}'s image {path} is no longer on the station.")
    name = f"export-{export_id}" + (f"-{volume}" if len(isos) > 1 else "") + ".iso"
    return FileResponse(path, media_type="application/x-iso9660-image", filename=name)
