"""Filed items by 档号: description, PDF (Range, ETag), per-page text, hOCR, images and thumbnails; filing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.api.deps import CurrentToken, SessionDep, SettingsDep
from scanner_service.archive import access, filing
from scanner_service.archive import archival_code as ac
from scanner_service.archive.catalogue_store import describe_item
from scanner_service.archive.models import ApiToken, Grant, Item, ItemPage, Role
from scanner_service.exceptions import NotFound
from scanner_service.settings import Settings
from workers.hocr import render_hocr

router = APIRouter(prefix="/api/items", tags=["items"])

PurposeQuery = Annotated[
    str | None, Query(max_length=500, description="Why the record is used (利用目的), written to the access log")
]


class ItemPagePublic(BaseModel):
    page: int
    master: str
    flags: list[str]
    confidence: float | None
    batch_id: int | None
    batch_page: int | None
    text_url: str
    hocr_url: str
    image_url: str
    thumbnail_url: str


class ItemPublic(BaseModel):
    archival_code: str
    fonds: str
    category: str
    year: int
    retention: str
    org: str | None
    volume: int | None
    item: int
    serial: int | None = Field(description="序号")
    title: str | None = Field(description="题名")
    author: str | None = Field(description="责任者")
    date: str | None = Field(description="日期")
    doc_number: str | None = Field(description="文件编号")
    pages: int | None = Field(description="页数 in the catalogue")
    classification: str | None = Field(description="密级")
    open_status: str | None = Field(description="开放标识")
    note: str | None = Field(description="附注")
    pages_filed: int
    page_check: str | None = Field(description="missing_pages (漏扫) or extra_pages (多扫) against 页数")
    version: int
    filed_at: datetime | None
    updated_at: datetime
    pdf_url: str | None
    pdf_sha256: str | None


class ItemDetail(ItemPublic):
    page_list: list[ItemPagePublic]


class ItemDescription(BaseModel):
    """DA/T 18 fields; only the fields sent are changed."""

    title: str | None = None
    author: str | None = None
    date: str | None = None
    doc_number: str | None = None
    pages: int | None = Field(default=None, ge=0, le=99999)
    classification: str | None = None
    open_status: str | None = None
    note: str | None = None
    serial: int | None = None


class FilingRequest(BaseModel):
    batch_id: int
    pages: list[int] | None = Field(
        default=None, description="Batch page numbers to file, in order; default: every page not blank"
    )
    mode: str = Field(default="new", description="new (item empty), append, insert (before 'at'), replace")
    replace: list[int] = Field(default_factory=list, description="With mode=replace: the item's pages to replace")
    at: int | None = Field(default=None, description="With mode=insert: the page number the new pages start at")


class FilingPublic(BaseModel):
    archival_code: str
    pages_filed: int
    version: int
    page_check: str | None
    pages: list[int] = Field(description="The item page numbers the new pages got")


class GrantRequest(BaseModel):
    token_id: int
    reason: str | None = None
    expires_at: datetime | None = None


def item_url(item: Item) -> str:
    return f"/api/items/{quote(item.archival_code)}"


def public(item: Item) -> dict[str, Any]:
    described = filing.describe(item)
    described.pop("page_list")
    described.pop("pdf")
    return {
        **described,
        "updated_at": item.updated_at,
        "pdf_url": f"{item_url(item)}/pdf" if item.pdf_name else None,
    }


def _page_public(item: Item, row: ItemPage) -> ItemPagePublic:
    base = f"{item_url(item)}/pages/{row.serial}"
    return ItemPagePublic(
        page=row.serial,
        master=row.master_name,
        flags=list(row.flags or []),
        confidence=row.confidence,
        batch_id=row.batch_id,
        batch_page=row.batch_seq,
        text_url=f"{base}/text",
        hocr_url=f"{base}/hocr",
        image_url=f"{base}/image",
        thumbnail_url=f"{base}/thumbnail",
    )


@router.get("", response_model=list[ItemPublic], summary="Items the token may see, in archival order")
def list_items(
    session: SessionDep,
    token: CurrentToken,
    fonds: str | None = None,
    category: str | None = None,
    year: int | None = None,
    page_check: str | None = Query(None, description="missing_pages or extra_pages"),
    filed: bool | None = Query(None, description="true: only items with pages; false: only catalogue entries"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[dict[str, Any]]:
    stmt = select(Item).where(access.item_filter(token))
    if fonds:
        stmt = stmt.where(Item.fonds == fonds.upper())
    if category:
        stmt = stmt.where(Item.category == category.upper())
    if year:
        stmt = stmt.where(Item.year == year)
    if page_check:
        stmt = stmt.where(Item.page_check == page_check)
    if filed is not None:
        stmt = stmt.where(Item.pages_filed > 0 if filed else Item.pages_filed == 0)
    stmt = stmt.order_by(Item.fonds, Item.category, Item.year, Item.org, Item.volume, Item.item_no)
    return [public(i) for i in session.scalars(stmt.limit(limit).offset(offset))]


@router.get("/{code}", response_model=ItemDetail, summary="One item: description (DA/T 18) and its pages")
def get_item(code: str, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    item = access.visible_item(session, token, code)
    return {**public(item), "page_list": [_page_public(item, row) for row in item.pages]}


@router.put("/{code}", response_model=ItemDetail, summary="Create an item or change its description (archivist)")
def put_item(
    code: str, body: ItemDescription, settings: SettingsDep, session: SessionDep, token: CurrentToken
) -> dict[str, Any]:
    access.require_role(token, Role.admin, Role.archivist)
    parsed = ac.parse(code)
    access.require_fonds(token, parsed.fonds)
    sent = body.model_dump(exclude_unset=True)
    renamed = {"date": "date_text", "pages": "expected_pages"}
    values = {renamed.get(k, k): v for k, v in sent.items()}
    with filing.item_lock(settings, str(parsed)):
        item = describe_item(session, parsed, values, written=code, actor=token.name, settings=settings)
    session.flush()
    return {**public(item), "page_list": [_page_public(item, row) for row in item.pages]}


@router.post(
    "/{code}/pages",
    response_model=FilingPublic,
    summary="File a batch's pages into the item: new, append, insert or replace (operator, archivist)",
    responses={409: {"description": "The pages cannot be filed this way; the reason is in 'detail'"}},
)
def file_pages(
    code: str, body: FilingRequest, settings: SettingsDep, session: SessionDep, token: CurrentToken
) -> dict[str, Any]:
    access.require_role(token, Role.admin, Role.archivist, Role.operator)
    parsed = ac.parse(code)
    access.require_fonds(token, parsed.fonds)
    result = filing.file_batch(
        settings,
        body.batch_id,
        code,
        seqs=body.pages,
        mode=body.mode,
        replace=body.replace,
        at=body.at,
        actor=token.name,
        may_create=True,
    )
    return {
        "archival_code": result.archival_code,
        "pages_filed": result.pages_filed,
        "version": result.version,
        "page_check": result.page_check,
        "pages": result.serials,
    }


def _etag(item: Item) -> str:
    return f'"{item.pdf_sha256}"'


@router.get(
    "/{code}/pdf",
    response_class=FileResponse,
    summary="The item's searchable PDF/A; Range, ETag and If-None-Match honoured; logged (利用登记)",
    responses={
        200: {"content": {"application/pdf": {}}},
        206: {"description": "The requested byte range"},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        404: {"description": "No such item visible to this token, or no pages filed yet"},
    },
)
def get_item_pdf(
    code: str,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    purpose: PurposeQuery = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    item = access.visible_item(session, token, code)
    if not item.pdf_name:
        raise NotFound(f"{item.archival_code} has no pages filed yet.")
    etag = _etag(item)
    if if_none_match and (if_none_match.strip() == "*" or etag in [t.strip() for t in if_none_match.split(",")]):
        return Response(status_code=304, headers={"ETag": etag})
    path = settings.archive_dir / item.folder / item.pdf_name
    if not path.exists():
        raise NotFound(f"The PDF of {item.archival_code} is missing from the archive; run 'scanstation audit'.")
    access.log_access(
        session,
        token,
        item,
        "pdf",
        byte_range=request.headers.get("range"),
        purpose=purpose,
        client=request.client.host if request.client else None,
    )
    return FileResponse(
        path,
        media_type="application/pdf",
        filename=item.pdf_name,
        headers={"ETag": etag, "Cache-Control": "private, no-cache"},
    )


def _page(session: SessionDep, token: ApiToken, code: str, page: int) -> tuple[Item, ItemPage]:
    item = access.visible_item(session, token, code)
    row = next((r for r in item.pages if r.serial == page), None)
    if row is None:
        raise NotFound(f"{item.archival_code} has no page {page} (it has {item.pages_filed}).")
    return item, row


def _log_page(
    session: SessionDep, token: ApiToken, item: Item, action: str, page: int, request: Request, purpose: str | None
) -> None:
    client = request.client.host if request.client else None
    access.log_access(session, token, item, action, page=page, purpose=purpose, client=client)


@router.get("/{code}/pages/{page}/text", response_class=PlainTextResponse, summary="A page's OCR text (logged)")
def get_page_text(
    code: str, page: int, request: Request, session: SessionDep, token: CurrentToken, purpose: PurposeQuery = None
) -> PlainTextResponse:
    item, row = _page(session, token, code, page)
    _log_page(session, token, item, "page_text", page, request, purpose)
    return PlainTextResponse(row.text or "", media_type="text/plain; charset=utf-8")


@router.get(
    "/{code}/pages/{page}/hocr",
    summary="A page's OCR lines with boxes, as hOCR (logged)",
    responses={200: {"content": {"application/xhtml+xml": {}}}},
)
def get_page_hocr(
    code: str,
    page: int,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    purpose: PurposeQuery = None,
) -> Response:
    item, row = _page(session, token, code, page)
    text, dpi, usage = filing.page_text(settings, item, row)
    _log_page(session, token, item, "page_hocr", page, request, purpose)
    body = render_hocr(text, title=f"{item.archival_code} p.{page}", dpi=dpi, image_name=usage.name)
    return Response(body, media_type="application/xhtml+xml; charset=utf-8")


@router.get(
    "/{code}/pages/{page}/image",
    response_class=FileResponse,
    summary="A page's image as in the PDF (logged)",
    responses={200: {"content": {"image/jpeg": {}, "image/tiff": {}}}},
)
def get_page_image(
    code: str,
    page: int,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    purpose: PurposeQuery = None,
) -> FileResponse:
    return _page_picture(code, page, request, settings, session, token, purpose, thumbnail=False)


@router.get(
    "/{code}/pages/{page}/thumbnail",
    response_class=FileResponse,
    summary="A small JPEG of the page (logged)",
    responses={200: {"content": {"image/jpeg": {}}}},
)
def get_page_thumbnail(
    code: str,
    page: int,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    purpose: PurposeQuery = None,
) -> FileResponse:
    return _page_picture(code, page, request, settings, session, token, purpose, thumbnail=True)


def _page_picture(
    code: str,
    page: int,
    request: Request,
    settings: Settings,
    session: Session,
    token: ApiToken,
    purpose: str | None,
    *,
    thumbnail: bool,
) -> FileResponse:
    item, row = _page(session, token, code, page)
    usage, thumb = filing.page_files(settings, item, row)
    _log_page(session, token, item, "thumbnail" if thumbnail else "page_image", page, request, purpose)
    path = thumb if thumbnail else usage
    return FileResponse(path, media_type="image/tiff" if path.suffix == ".tif" else "image/jpeg")


@router.post("/{code}/grants", status_code=201, summary="Let one token see this restricted item (archivist)")
def grant(code: str, body: GrantRequest, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    access.require_role(token, Role.admin, Role.archivist)
    item = access.visible_item(session, token, code)
    grantee = session.get(ApiToken, body.token_id)
    if grantee is None:
        raise NotFound(f"No token {body.token_id}.")
    existing = session.scalar(select(Grant).where(Grant.token_id == grantee.id, Grant.item_id == item.id))
    if existing is None:
        existing = Grant(token_id=grantee.id, item_id=item.id, granted_by=token.name)
        session.add(existing)
    expires = body.expires_at
    if expires is not None:  # stored as UTC: SQLite keeps no offset
        expires = expires.replace(tzinfo=UTC) if expires.tzinfo is None else expires.astimezone(UTC)
    existing.reason, existing.expires_at, existing.granted_by = body.reason, expires, token.name
    session.flush()
    return {"archival_code": item.archival_code, "token_id": grantee.id, "expires_at": body.expires_at}
