"""Filed items by 档号: description, PDF (Range, ETag), per-page text, hOCR, images and thumbnails; filing."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import quote

import redis
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ocr_models.registry import ENGINES
from scanner_service.api.deps import CurrentToken, SessionDep, SettingsDep
from scanner_service.api.files import (
    IfNoneMatch,
    PdfResponse,
    RangeHeader,
    is_head,
    not_modified,
    not_modified_response,
    pdf_responses,
)
from scanner_service.api.schemas import (
    NO_NUL,
    CodePath,
    FilterText,
    HistoryEntry,
    Id,
    Limit,
    Offset,
    PageCorrection,
    PageNoPath,
    TimeInput,
    UtcDateTime,
    YearQuery,
    error_responses,
)
from scanner_service.archive import access, filing, people
from scanner_service.archive import archival_code as ac
from scanner_service.archive.access import Caller
from scanner_service.archive.catalogue_store import describe_item
from scanner_service.archive.corrections import batch as batch_corrections
from scanner_service.archive.corrections import history_entry
from scanner_service.archive.corrections import item as item_corrections
from scanner_service.archive.filing import batch_fonds
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import ApiToken, Batch, Correction, Grant, Item, ItemPage, Role
from scanner_service.exceptions import Conflict, NotFound, StorageError
from scanner_service.settings import Settings
from scanner_service.station import queue as q
from workers.hocr import render_hocr
from workers.preview import render_preview

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/items", tags=["items"])

PurposeQuery = Annotated[
    str | None,
    Query(max_length=500, pattern=NO_NUL, description="Why the record is used (利用目的), written to the access log"),
]
PageCheck = Literal["missing_pages", "extra_pages"]
FilingMode = Literal["new", "append", "insert", "replace"]
PAGE_ERRORS = error_responses(401, 404, 422)


STAFF_ONLY = "Staff only (admin, archivist, operator); absent for a reader"


class ItemPagePublic(BaseModel):
    """A page of an item. A reader gets its number, place in the PDF, state and URLs; staff get also
    what the station and people decided about it, and its history (which may name other items)."""

    page: int = Field(description="The page's serial in the item (its master's number)")
    pdf_page: int | None = Field(description="Its page number in the item PDF; null if left out (excluded)")
    state: str = Field(description="done; queued while a correction is derived again; failed if it could not be")
    text_url: str
    hocr_url: str
    image_url: str
    thumbnail_url: str
    master: str | None = Field(default=None, description=STAFF_ONLY)
    flags: list[str] | None = Field(default=None, description=STAFF_ONLY)
    confidence: float | None = Field(default=None, description=STAFF_ONLY)
    batch_id: int | None = Field(default=None, description=STAFF_ONLY)
    batch_page: int | None = Field(default=None, description=STAFF_ONLY)
    version: int | None = Field(default=None, description="Goes up at every correction. " + STAFF_ONLY)
    etag: str | None = Field(
        default=None,
        description='The page\'s ETag, "<page id>.<version>": send it as If-Match to correct, rerun, undo or '
        "withdraw this page. " + STAFF_ONLY,
    )
    decision: dict[str, Any] | None = Field(
        default=None, description="The station's own decision (blank, flags, details). " + STAFF_ONLY
    )
    correction: dict[str, Any] | None = Field(
        default=None, description="What a person decided; {} = the station's decision stands. " + STAFF_ONLY
    )
    details: dict[str, Any] | None = Field(
        default=None, description="What the last derivation of the page did (turn, skew, crop, …). " + STAFF_ONLY
    )
    history: list[HistoryEntry] | None = Field(default=None, description=STAFF_ONLY)


class RerunRequest(BaseModel):
    engine: str | None = Field(
        default=None,
        max_length=40,
        pattern=NO_NUL,
        description=f"OCR engine ({', '.join(ENGINES)}); default the station's",
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, engine: str | None) -> str | None:
        if engine is not None and engine not in ENGINES:
            raise ValueError(f"unknown OCR engine {engine!r}; known: {', '.join(ENGINES)}")
        return engine


class OrderRequest(BaseModel):
    pages: list[Id] = Field(
        max_length=10000, description="Every page of the item once, by its number now, in the new order"
    )
    note: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)


class WithdrawRequest(BaseModel):
    note: str | None = Field(default=None, max_length=2000, pattern=NO_NUL, description="Why the page leaves the item")


class MoveRequest(BaseModel):
    pages: list[Id] = Field(min_length=1, max_length=10000, description="The pages to move, in the order they go")
    to: str = Field(max_length=128, pattern=NO_NUL, description="档号 of the item they go to")
    at: Id | None = Field(default=None, description="Before which page of that item; null: at its end")
    note: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)


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
    page_check: PageCheck | None = Field(description="missing_pages (漏扫) or extra_pages (多扫) against 页数")
    version: int
    filed_at: UtcDateTime | None
    updated_at: UtcDateTime
    pdf_url: str | None
    pdf_sha256: str | None


class ItemDetail(ItemPublic):
    page_list: list[ItemPagePublic]


class MovePublic(BaseModel):
    source: ItemDetail
    target: ItemDetail


class ItemDescription(BaseModel):
    """DA/T 18 fields; only the fields sent are changed."""

    # Lengths as the catalogue stores them (PostgreSQL refuses longer text), free text capped.
    title: str | None = Field(default=None, max_length=2000, pattern=NO_NUL)
    author: str | None = Field(default=None, max_length=500, pattern=NO_NUL)
    date: str | None = Field(default=None, max_length=40, pattern=NO_NUL)
    doc_number: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    pages: int | None = Field(
        default=None, strict=True, ge=1, le=9999, description="页数: 1 to 9999, as the catalogue import takes it"
    )
    classification: str | None = Field(default=None, max_length=20, pattern=NO_NUL)
    open_status: str | None = Field(default=None, max_length=20, pattern=NO_NUL)
    note: str | None = Field(default=None, max_length=10000, pattern=NO_NUL)
    serial: int | None = Field(default=None, strict=True, ge=1, le=999_999, description="序号, as in the 归档文件目录")


class FilingRequest(BaseModel):
    batch_id: Id
    pages: list[Id] | None = Field(
        default=None,
        max_length=10000,
        description="Batch page numbers to file, in order; default: every page not blank",
    )
    mode: FilingMode = Field(default="new", description="new (item empty), append, insert (before 'at'), replace")
    replace: list[Id] = Field(
        default_factory=list, max_length=10000, description="With mode=replace: the item's pages to replace"
    )
    at: Id | None = Field(default=None, description="With mode=insert: the page number the new pages start at")


class FilingPublic(BaseModel):
    archival_code: str
    pages_filed: int
    version: int
    page_check: str | None
    pages: list[int] = Field(description="The item page numbers the new pages got")


class GrantRequest(BaseModel):
    """Exactly one of ``token_id`` (a system) and ``user`` (a person)."""

    token_id: Id | None = Field(default=None, description="The id 'scanstation token list' shows")
    user: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="A person's name ('scanstation user list')",
    )
    reason: str | None = Field(default=None, max_length=500, pattern=NO_NUL)
    expires_at: TimeInput | None = Field(default=None, description="ISO 8601; without an offset, UTC")

    @model_validator(mode="after")
    def _one_grantee(self) -> GrantRequest:
        if (self.token_id is None) == (self.user is None):
            raise ValueError("give exactly one of token_id (a token) and user (a person's name)")
        return self


class GrantPublic(BaseModel):
    archival_code: str
    token_id: int | None
    user: str | None
    expires_at: UtcDateTime | None


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


def _is_staff(token: Caller) -> bool:
    return token.role in access.STAFF


def _page_public(
    item: Item, row: ItemPage, history: list[Correction] | None, pdf_page: dict[int, int | None]
) -> ItemPagePublic:
    """The page as the API shows it; ``history`` None: as a reader sees it (no staff-only fields)."""
    base = f"{item_url(item)}/pages/{row.serial}"
    public = ItemPagePublic(
        page=row.serial,
        pdf_page=pdf_page.get(row.id),
        state=row.state,
        text_url=f"{base}/text",
        hocr_url=f"{base}/hocr",
        image_url=f"{base}/image",
        thumbnail_url=f"{base}/thumbnail",
    )
    if history is None:
        return public
    return public.model_copy(
        update={
            "master": row.master_name,
            "flags": list(row.flags or []),
            "confidence": row.confidence,
            "batch_id": row.batch_id,
            "batch_page": row.batch_seq,
            "version": row.version,
            "etag": _page_etag(row),
            "decision": row.decision,
            "correction": dict(row.correction or {}),
            "details": dict(row.details or {}),
            "history": [HistoryEntry(**history_entry(entry)) for entry in history],
        }
    )


def _page_etag(row: ItemPage) -> str:
    return item_corrections.PageTag.of(row).etag()


def item_etag(item: Item) -> str:
    """The item's ETag, ``"v<version>"``: the If-Match of a new order, a withdrawal or a move."""
    return f'"v{item.version}"'


@router.get(
    "",
    response_model=list[ItemPublic],
    summary="Items the token may see, in archival order",
    responses=error_responses(401, 422),
)
def list_items(
    session: SessionDep,
    token: CurrentToken,
    fonds: FilterText = None,
    category: FilterText = None,
    year: YearQuery = None,
    page_check: Annotated[PageCheck | None, Query(description="missing_pages or extra_pages")] = None,
    filed: Annotated[
        bool | None, Query(description="true: only items with pages; false: only catalogue entries")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=128,
            pattern=NO_NUL,
            description="Words that each appear in the 档号 (separators ignored) or the 题名: a search as you type",
        ),
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    stmt = select(Item).where(access.item_filter(token))
    for word in (q or "").split():
        bare = func.replace(func.replace(func.replace(Item.archival_code, "·", ""), "-", ""), ".", "")
        plain = word.replace("·", "").replace("-", "").replace(".", "").upper()
        stmt = stmt.where(
            or_(Item.title.contains(word, autoescape=True), func.upper(bare).contains(plain, autoescape=True))
        )
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


@router.get(
    "/{code}",
    response_model=ItemDetail,
    response_model_exclude_unset=True,  # a reader's pages leave out the staff-only fields
    summary='One item: description (DA/T 18) and its pages; ETag "v<version>", the If-Match of order, '
    "withdraw and move",
    responses=error_responses(401, 404, 422),
)
def get_item(code: CodePath, response: Response, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    item = access.visible_item(session, token, code)
    response.headers["ETag"] = item_etag(item)
    return _detail(session, item, token)


def _detail(session: Session, item: Item, token: Caller) -> dict[str, Any]:
    """The item and its pages; the pages' staff-only fields (history, decision, …) for staff only."""
    rows = list(item.pages)
    staff = _is_staff(token)
    history = item_corrections.histories(session, rows) if staff else {}
    numbers = filing.pdf_page_numbers(item)
    pages = [_page_public(item, row, history[row.id] if staff else None, numbers) for row in rows]
    return {**public(item), "page_list": pages}


@router.put(
    "/{code}",
    response_model=ItemDetail,
    summary="Create an item or change its description (archivist)",
    responses=error_responses(400, 401, 403, 422),
)
def put_item(
    code: CodePath, body: ItemDescription, settings: SettingsDep, session: SessionDep, token: CurrentToken
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
    return _detail(session, item, token)


@router.post(
    "/{code}/pages",
    response_model=FilingPublic,
    summary="File a batch's pages into the item: new, append, insert or replace (operator, archivist)",
    responses=error_responses(400, 401, 403, 404, 409, 422),
)
def file_pages(
    code: CodePath, body: FilingRequest, settings: SettingsDep, session: SessionDep, token: CurrentToken
) -> dict[str, Any]:
    access.require_role(token, Role.admin, Role.archivist, Role.operator)
    parsed = ac.parse(code)
    access.require_fonds(token, parsed.fonds)
    batch = session.get(Batch, body.batch_id)
    if batch is None or not access.may_see_batch(token, batch_fonds(batch)):
        raise NotFound(f"No batch {body.batch_id}.")
    # The same rules as POST /api/batches/{id}/file: flags looked at, excluded pages left out by default,
    # the caller in every fonds the batch files into, the filing written down in the batch.
    how = {"mode": body.mode, "replace": body.replace, "at": body.at}
    result, _ = batch_corrections.file_chosen(session, settings, token, batch, code, body.pages, **how)
    session.commit()
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
    response_class=PdfResponse,
    summary="The item's searchable PDF/A; Range, ETag and If-None-Match honoured; logged (利用登记)",
    responses=pdf_responses(401, 404, 422),
)
@router.head(
    "/{code}/pdf",
    response_class=PdfResponse,
    summary="The item PDF's headers (Content-Length, ETag, Accept-Ranges) without the body; not logged",
    responses=pdf_responses(401, 404, 422),
)
def get_item_pdf(
    code: CodePath,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    purpose: PurposeQuery = None,
    if_none_match: IfNoneMatch = None,
    _range: RangeHeader = None,
) -> Response:
    item = access.visible_item(session, token, code)
    if not item.pdf_name:
        raise NotFound(f"{item.archival_code} has no pages filed yet.")
    etag = _etag(item)
    cache = {"Cache-Control": "private, no-cache"}
    if not_modified(if_none_match, etag):
        return not_modified_response(etag, cache)
    path = Layout.of(settings).archive / item.folder / item.pdf_name
    if not path.exists():
        raise NotFound(f"The PDF of {item.archival_code} is missing from the archive; run 'scanstation audit'.")
    if not is_head(request):
        access.log_access(
            session,
            token,
            item,
            "pdf",
            byte_range=request.headers.get("range"),
            purpose=purpose,
            client=request.client.host if request.client else None,
        )
    return PdfResponse(path, etag=etag, filename=item.pdf_name, headers=cache)


def _page(session: SessionDep, token: Caller, code: str, page: int) -> tuple[Item, ItemPage]:
    item = access.visible_item(session, token, code)
    row = next((r for r in item.pages if r.serial == page), None)
    if row is None:
        raise NotFound(f"{item.archival_code} has no page {page} (it has {item.pages_filed}).")
    return item, row


def _log_page(
    session: SessionDep, token: Caller, item: Item, action: str, page: int, request: Request, purpose: str | None
) -> None:
    client = request.client.host if request.client else None
    access.log_access(session, token, item, action, page=page, purpose=purpose, client=client)


@router.get(
    "/{code}/pages/{page}/text",
    response_class=PlainTextResponse,
    summary="A page's OCR text (logged)",
    responses={200: {"content": {"text/plain": {}}}, **PAGE_ERRORS},
)
def get_page_text(
    code: CodePath,
    page: PageNoPath,
    request: Request,
    session: SessionDep,
    token: CurrentToken,
    purpose: PurposeQuery = None,
) -> PlainTextResponse:
    item, row = _page(session, token, code, page)
    _log_page(session, token, item, "page_text", page, request, purpose)
    return PlainTextResponse(row.text or "", media_type="text/plain; charset=utf-8")


@router.get(
    "/{code}/pages/{page}/hocr",
    summary="A page's OCR lines with boxes, as hOCR (logged)",
    response_class=Response,
    responses={200: {"content": {"application/xhtml+xml": {}}}, **PAGE_ERRORS},
)
def get_page_hocr(
    code: CodePath,
    page: PageNoPath,
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
    responses={200: {"content": {"image/jpeg": {}, "image/tiff": {}}}, **PAGE_ERRORS},
)
def get_page_image(
    code: CodePath,
    page: PageNoPath,
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
    responses={200: {"content": {"image/jpeg": {}}}, **PAGE_ERRORS},
)
def get_page_thumbnail(
    code: CodePath,
    page: PageNoPath,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    purpose: PurposeQuery = None,
) -> FileResponse:
    return _page_picture(code, page, request, settings, session, token, purpose, thumbnail=True)


@router.get(
    "/{code}/pages/{page}/preview",
    response_class=Response,
    summary="A page's image as a browser shows it: JPEG at most `width` px wide (logged as a page view)",
    description="The usage image of a text page is a bilevel TIFF, which browsers do not show; this is the same "
    "image as grey JPEG, scaled down to the width asked for.",
    responses={200: {"content": {"image/jpeg": {}}}, **PAGE_ERRORS, **error_responses(503)},
)
def get_page_preview(
    code: CodePath,
    page: PageNoPath,
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    width: Annotated[int, Query(ge=100, le=4000, description="At most this many pixels wide")] = 1600,
    purpose: PurposeQuery = None,
) -> Response:
    item, row = _page(session, token, code, page)
    usage, _ = filing.page_files(settings, item, row)
    if not usage.exists():
        raise NotFound(f"The image of {item.archival_code} page {page} is missing; run 'scanstation audit'.")
    try:
        body, media_type = render_preview(usage, width)
    except OSError as exc:  # PIL's UnidentifiedImageError and a truncated file are both OSError
        raise StorageError(
            f"The image of {item.archival_code} page {page} cannot be read ({exc.__class__.__name__}); "
            "run 'scanstation audit'.",
            reason_code="damaged_file",
        ) from exc
    _log_page(session, token, item, "page_image", page, request, purpose)
    return Response(body, media_type=media_type, headers={"Cache-Control": "private, no-cache"})


def _page_picture(
    code: str,
    page: int,
    request: Request,
    settings: Settings,
    session: Session,
    token: Caller,
    purpose: str | None,
    *,
    thumbnail: bool,
) -> FileResponse:
    item, row = _page(session, token, code, page)
    usage, thumb = filing.page_files(settings, item, row)
    _log_page(session, token, item, "thumbnail" if thumbnail else "page_image", page, request, purpose)
    path = thumb if thumbnail else usage
    return FileResponse(path, media_type="image/tiff" if path.suffix == ".tif" else "image/jpeg")


@router.post(
    "/{code}/grants",
    status_code=201,
    response_model=GrantPublic,
    summary="Let one token or one person see this restricted item (archivist)",
    responses=error_responses(400, 401, 403, 404, 422),
)
def grant(code: CodePath, body: GrantRequest, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    access.require_role(token, Role.admin, Role.archivist)
    item = access.visible_item(session, token, code)
    token_id = user_id = person_name = None
    if body.user is not None:
        person = people.find_user(session, body.user)
        user_id, person_name, holder = person.id, person.name, Grant.user_id == person.id
    else:
        grantee = session.get(ApiToken, body.token_id)
        if grantee is None:
            raise NotFound(f"No token {body.token_id}.")
        token_id, holder = grantee.id, Grant.token_id == grantee.id
    existing = session.scalar(select(Grant).where(holder, Grant.item_id == item.id))
    if existing is None:
        existing = Grant(token_id=token_id, user_id=user_id, item_id=item.id, granted_by=token.name)
        session.add(existing)
    # TimeInput made expires_at UTC: SQLite keeps no offset.
    existing.reason, existing.expires_at, existing.granted_by = body.reason, body.expires_at, token.name
    session.flush()
    return {
        "archival_code": item.archival_code,
        "token_id": token_id,
        "user": person_name,
        "expires_at": body.expires_at,
    }


# ---- corrections of a filed item's pages ----------------------------------------------------------

CORRECTION_ERRORS = error_responses(401, 403, 404, 409, 422)
IfMatch = Annotated[
    str | None,
    Header(
        max_length=60,
        description='The page\'s ETag, "<page id>.<version>" (GET …/pages/{page}, or "etag" in the item\'s page '
        "list), the correction was made on: another page at that number now, or an older version, answers 409 "
        'stale_version. The page\'s version alone ("3") is checked against the page now at that number. '
        "* or none: not checked.",
    ),
]
ItemIfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=60,
        description='The item\'s ETag, "v<version>" (GET /api/items/{code}), the change was made on: an item '
        "changed since (its page numbers may name other pages now) answers 409 stale_version. * or none: not checked.",
    ),
]
WithdrawIfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=60,
        description='The page\'s ETag ("<page id>.<version>") or the item\'s ("v<version>") the withdrawal was '
        "decided on; stale: 409 stale_version. * or none: not checked.",
    ),
]


def _corrector(session: Session, token: Caller, code: str) -> Item:
    """The item, if the caller may correct it: an operator, archivist or admin who may see it."""
    access.require_role(token, Role.admin, Role.archivist, Role.operator)
    return access.visible_item(session, token, code)


def _opaque(if_match: str | None) -> str | None:
    """The entity tag sent (without W/ and quotes); None for none or *."""
    if if_match is None or if_match.strip() == "*":
        return None
    return if_match.strip().removeprefix("W/").strip('"')


def _page_tag(if_match: str | None, *, bare: bool = True) -> item_corrections.PageTag | int | None:
    """A page's If-Match: its ETag, "<page id>.<version>", which also makes sure the number still names
    the page seen (pages are reordered, moved, withdrawn); or, where ``bare``, its version alone, "3"
    (the contract of a correction: checked against the page now at that number). A withdrawal, which
    takes the page out of the item, needs the ETag."""
    tag = _opaque(if_match)
    if tag is None:
        return None
    row_id, dot, version = tag.partition(".")
    if bare and not dot and row_id.isdigit():
        return int(row_id)
    if not (row_id.isdigit() and version.isdigit()):
        raise Conflict(
            f'If-Match {if_match!r} is neither a page\'s ETag ("<page id>.<version>") nor its version: send the '
            "ETag of the page as you saw it.",
            reason_code="stale_version",
        )
    return item_corrections.PageTag(int(row_id), int(version))


def _item_version(if_match: str | None) -> int | None:
    """An item's If-Match: its ETag, "v<version>"."""
    tag = _opaque(if_match)
    if tag is None:
        return None
    if not (tag.startswith("v") and tag[1:].isdigit()):
        raise Conflict(
            f'If-Match {if_match!r} is not an item\'s ETag ("v<version>"): send the ETag of the item as you saw it.',
            reason_code="stale_version",
        )
    return int(tag[1:])


def _page_answer(
    session: Session, response: Response, token: Caller, item_id: int, row_id: int | None
) -> ItemPagePublic:
    session.expire_all()
    item = session.get(Item, item_id)
    row = session.get(ItemPage, row_id) if row_id is not None else None
    if item is None or row is None:
        raise NotFound("The page is gone (withdrawn or moved meanwhile).")
    history = item_corrections.histories(session, [row])[row.id] if _is_staff(token) else None
    response.headers["ETag"] = _page_etag(row)
    return _page_public(item, row, history, filing.pdf_page_numbers(item))


@contextlib.contextmanager
def _then_queue(settings: Settings, session: Session, item_id: int) -> Iterator[None]:
    """After the correction (made or refused), queue the item's derivation job if a page is queued."""
    try:
        yield
    finally:
        _queue_derivation(settings, session, item_id)


def _queue_derivation(settings: Settings, session: Session, item_id: int) -> None:
    """Queue the item's derivation job if any of its pages is queued, whatever this call changed or
    refused: a call retried after the job was lost (Redis down, the API stopped after the commit)
    queues it again. Queuing twice is harmless (fixed job ids). Redis unreachable: the correction stands and the
    watcher's sweep queues the job once Redis is back."""
    session.expire_all()
    if not item_corrections.has_queued_pages(session, item_id):
        return
    try:
        connection = q.connect(settings)
        try:
            q.enqueue_item_pages(q.get_queue(connection), settings, item_id)
        finally:
            connection.close()
    except redis.RedisError:
        log.warning("item %s: its derivation job could not be queued now; the watcher will queue it", item_id)


@router.get(
    "/{code}/pages/{page}",
    response_model=ItemPagePublic,
    response_model_exclude_unset=True,  # a reader gets no staff-only fields
    summary="One page: the station's decision, the person's correction, version (ETag), state, history",
    responses=PAGE_ERRORS,
)
def get_page(code: CodePath, page: PageNoPath, response: Response, session: SessionDep, token: CurrentToken) -> Any:
    item, row = _page(session, token, code, page)
    return _page_answer(session, response, token, item.id, row.id)


@router.patch(
    "/{code}/pages/{page}",
    response_model=ItemPagePublic,
    summary="Correct a page: turn, skew_deg, blank, excluded, crop, note (operator, archivist)",
    description="A change of the image or text answers at once with state 'queued': the page is derived again "
    "from its master by a worker, then the PDF is rebuilt. excluded and note are made at once.",
    responses=CORRECTION_ERRORS,
)
def patch_page(
    code: CodePath,
    page: PageNoPath,
    body: PageCorrection,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    if_match: IfMatch = None,
) -> Any:
    item = _corrector(session, token, code)
    patch = body.model_dump(exclude_unset=True)
    with _then_queue(settings, session, item.id):
        outcome = item_corrections.correct_page(
            settings, token, item.archival_code, page, patch, if_match=_page_tag(if_match)
        )
    return _page_answer(session, response, token, outcome.item_id, outcome.row_id)


@router.post(
    "/{code}/pages/{page}/rerun",
    response_model=ItemPagePublic,
    summary="Derive a page again from its master as it is, optionally with another OCR engine",
    responses=CORRECTION_ERRORS,
)
def rerun_page(
    code: CodePath,
    page: PageNoPath,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    body: RerunRequest | None = None,
    if_match: IfMatch = None,
) -> Any:
    item = _corrector(session, token, code)
    engine = body.engine if body is not None else None
    with _then_queue(settings, session, item.id):
        outcome = item_corrections.correct_page(
            settings,
            token,
            item.archival_code,
            page,
            {},
            if_match=_page_tag(if_match),
            action="rerun",
            rerun_engine=engine,
        )
    return _page_answer(session, response, token, outcome.item_id, outcome.row_id)


@router.post(
    "/{code}/pages/{page}/undo",
    response_model=ItemPagePublic,
    summary="Drop the person's correction of a page: back to the station's own decision",
    responses=CORRECTION_ERRORS,
)
def undo_page(
    code: CodePath,
    page: PageNoPath,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    if_match: IfMatch = None,
) -> Any:
    item = _corrector(session, token, code)
    with _then_queue(settings, session, item.id):
        outcome = item_corrections.correct_page(
            settings, token, item.archival_code, page, {}, if_match=_page_tag(if_match), action="undo"
        )
    return _page_answer(session, response, token, outcome.item_id, outcome.row_id)


@router.post(
    "/{code}/order",
    response_model=ItemDetail,
    summary="Put the item's pages in a new order (every page once); the masters are renamed",
    responses=CORRECTION_ERRORS,
)
def order_pages(
    code: CodePath,
    body: OrderRequest,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    if_match: ItemIfMatch = None,
) -> Any:
    item = _corrector(session, token, code)
    with _then_queue(settings, session, item.id):
        item_id = item_corrections.reorder(
            settings, token, item.archival_code, body.pages, note=body.note, item_version=_item_version(if_match)
        )
    return _item_answer(session, response, token, item_id)


@router.post(
    "/{code}/pages/{page}/withdraw",
    response_model=ItemDetail,
    summary="Take a page out of the item; its master is kept apart under withdrawn/",
    responses=CORRECTION_ERRORS,
)
def withdraw_page(
    code: CodePath,
    page: PageNoPath,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    body: WithdrawRequest | None = None,
    if_match: WithdrawIfMatch = None,
) -> Any:
    item = _corrector(session, token, code)
    note = body.note if body is not None else None
    tag = _opaque(if_match)
    page_tag = _page_tag(if_match, bare=False) if tag is not None and not tag.startswith("v") else None
    item_version = _item_version(if_match) if page_tag is None else None
    with _then_queue(settings, session, item.id):
        item_id = item_corrections.withdraw(
            settings, token, item.archival_code, page, note=note, if_match=page_tag, item_version=item_version
        )
    return _item_answer(session, response, token, item_id)


@router.post(
    "/{code}/move",
    response_model=MovePublic,
    summary="Move pages to another item (both change in one journaled change)",
    responses=CORRECTION_ERRORS,
)
def move_pages(
    code: CodePath,
    body: MoveRequest,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    if_match: ItemIfMatch = None,
) -> Any:
    item = _corrector(session, token, code)
    target = _corrector(session, token, body.to)
    with _then_queue(settings, session, item.id):
        source_id, target_id = item_corrections.move_pages(
            settings,
            token,
            item.archival_code,
            body.pages,
            target.archival_code,
            at=body.at,
            note=body.note,
            item_version=_item_version(if_match),
        )
    target_answer = _item_answer(session, Response(), token, target_id)
    return {"source": _item_answer(session, response, token, source_id), "target": target_answer}


def _item_answer(session: Session, response: Response, token: Caller, item_id: int) -> dict[str, Any]:
    """The item after a change, with its new ETag."""
    session.expire_all()
    item = session.get(Item, item_id)
    if item is None:
        raise NotFound("The item is gone.")
    response.headers["ETag"] = item_etag(item)
    return _detail(session, item, token)
