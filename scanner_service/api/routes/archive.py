"""Search, events for downstream systems, the access log (利用登记), fonds settings and catalogue import."""

from __future__ import annotations

import csv
import io
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from starlette.background import BackgroundTask

from scanner_service.api.deps import CurrentToken, SessionDep, SettingsDep
from scanner_service.api.routes.items import item_url
from scanner_service.api.schemas import (
    EVENT_ID,
    INT32_MAX,
    NO_NUL,
    FilterText,
    FondsPath,
    Limit,
    Offset,
    RowIssue,
    TimeInput,
    UtcDateTime,
    YearQuery,
    as_utc,
    error_responses,
    parse_time,
)
from scanner_service.archive import access, browse, search
from scanner_service.archive import archival_code as ac
from scanner_service.archive.catalogue_import import CatalogueImportError, read_catalogue
from scanner_service.archive.catalogue_store import check_catalogue, ensure_fonds, import_catalogue, items_for_sheets
from scanner_service.archive.models import ITEM_EVENT_KINDS, AccessRecord, Event, EventKind, Fonds, Item, Role
from scanner_service.archive.separator_sheets import SeparatorEntry, render_separator_sheets
from scanner_service.exceptions import NotFound, UnusableInput

router = APIRouter(prefix="/api", tags=["archive"])


def utc(moment: datetime) -> datetime:
    """A time as UTC (a time without an offset is taken as UTC): SQLite keeps no offset, so every time
    stored and compared is UTC."""
    return as_utc(moment)


class FacetValue(BaseModel):
    value: str = Field(description="全宗号, 门类 code or 年度 (as text)")
    name: str | None = Field(description="The fonds' name (fonds level only)")
    items: int = Field(description="Items the caller may see under this value (catalogue entries too)")
    filed: int = Field(description="Of them, items with pages filed")
    pages_filed: int = Field(description="Pages filed in them")
    missing_pages: int = Field(description="Items with fewer pages filed than 页数 (漏扫)")
    extra_pages: int = Field(description="Items with more pages filed than 页数 (多扫)")


class FacetsPublic(BaseModel):
    level: browse.Level = Field(description="fonds (nothing chosen), category (a fonds chosen), year (both)")
    fonds: str | None
    category: str | None
    values: list[FacetValue]


@router.get(
    "/facets",
    response_model=FacetsPublic,
    summary="The next level of the archive (全宗 → 门类 → 年度) with its counts, of the items the caller may see",
    description="No fonds: the fonds; a fonds: its categories; a fonds and a category: their years. The counts are "
    "of the items GET /api/items lists for the same caller and filters.",
    responses=error_responses(401, 422),
)
def item_facets(
    session: SessionDep, token: CurrentToken, fonds: FilterText = None, category: FilterText = None
) -> dict[str, Any]:
    level, values = browse.facets(session, access.item_filter(token), fonds=fonds, category=category)
    return {
        "level": level,
        "fonds": fonds.upper() if fonds else None,
        "category": category.upper() if category else None,
        "values": [FacetValue(**vars(v)) for v in values],
    }


class SearchHit(BaseModel):
    archival_code: str | None = Field(description="档号 of the filed item; None for a batch not filed yet")
    title: str | None
    page: int = Field(description="Page number in the item's PDF (or in the batch when not filed)")
    snippet: str = Field(description="HTML: page text around the match, matches in <mark>")
    batch_id: int | None
    item_url: str | None
    pdf_url: str | None


class SearchResults(BaseModel):
    query: str
    total: int
    hits: list[SearchHit]


@router.get(
    "/search",
    response_model=SearchResults,
    summary="Full-text search (Chinese aware) over what the token may see",
    responses=error_responses(401, 422),
)
def search_pages(
    session: SessionDep,
    token: CurrentToken,
    q: Annotated[str, Query(pattern=NO_NUL, description="Words or a name; 王强 finds the two characters side by side")],
    fonds: FilterText = None,
    category: FilterText = None,
    year: YearQuery = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    result = search.search(
        session,
        q,
        where=access.search_filter(token),
        fonds=fonds.upper() if fonds else None,
        category=category.upper() if category else None,
        year=year,
        limit=limit,
        offset=offset,
    )
    items = {
        i.id: i for i in session.scalars(select(Item).where(Item.id.in_({h.item_id for h in result.hits if h.item_id})))
    }
    hits = []
    for hit in result.hits:
        item = items.get(hit.item_id) if hit.item_id else None
        hits.append(
            SearchHit(
                archival_code=item.archival_code if item else None,
                title=item.title if item else None,
                page=hit.page_no,
                snippet=hit.snippet,
                batch_id=hit.batch_id,
                item_url=item_url(item) if item else None,
                pdf_url=f"{item_url(item)}/pdf#page={hit.page_no}" if item else f"/api/batches/{hit.batch_id}/pdf",
            )
        )
    return {"query": q, "total": result.total, "hits": hits}


class EventPublic(BaseModel):
    id: int
    at: UtcDateTime
    kind: str = Field(description="item_filed, item_pages_changed or item_described; others when asked by kind=")
    archival_code: str | None
    fonds: str | None
    item_url: str | None
    batch_id: int | None = Field(default=None, description="The batch it came from, if any")
    page: int | None = Field(default=None, description="The page it is about: seq in the batch, or serial in the item")
    detail: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventPublic]
    next_since: int = Field(description="Pass as ?since= next time to get only what is newer")


@router.get(
    "/events",
    response_model=EventPage,
    summary="What was filed or changed since a cursor (or a time)",
    responses=error_responses(401, 422),
)
def list_events(
    session: SessionDep,
    token: CurrentToken,
    since: Annotated[
        str,
        Query(
            max_length=64,
            description="An event id from next_since, or an ISO time such as 2026-11-01T00:00:00Z",
        ),
    ] = "0",
    limit: Limit = 100,
    kind: Annotated[
        list[EventKind] | None,
        Query(description="Kinds to list (repeat for several); default: the item kinds (filed, changed, described)"),
    ] = None,
) -> dict[str, Any]:
    kinds = [k.value for k in (kind or ITEM_EVENT_KINDS)]
    stmt = select(Event, Item).outerjoin(Item, Item.id == Event.item_id).where(Event.kind.in_(kinds))
    cursor = int(since) if EVENT_ID.fullmatch(since) else None
    if cursor is not None:
        if cursor > INT32_MAX:
            raise UnusableInput(
                f"'since' {since} is beyond any event id (at most {INT32_MAX}).", reason_code="bad_since"
            )
        stmt = stmt.where(Event.id > cursor)
    else:
        try:
            stmt = stmt.where(Event.at > parse_time(since))
        except ValueError:
            raise UnusableInput(
                f"'since' must be an event id or an ISO time such as 2026-11-01T00:00:00Z, not {since!r}.",
                reason_code="bad_since",
            ) from None
    stmt = stmt.where(access.event_filter(token)).order_by(Event.id).limit(limit)
    rows = session.execute(stmt).all()
    events = [
        EventPublic(
            id=e.id,
            at=e.at,
            kind=e.kind,
            archival_code=item.archival_code if item else e.archival_code,
            fonds=e.fonds,
            item_url=item_url(item) if item else None,
            batch_id=e.batch_id,
            page=e.page,
            detail=dict(e.detail or {}),
        )
        for e, item in rows
    ]
    last = (
        rows[-1][0].id if rows else (cursor if cursor is not None else session.scalar(select(func.max(Event.id))) or 0)
    )
    return {"events": events, "next_since": last}


class AccessPublic(BaseModel):
    at: UtcDateTime
    who: str
    role: str
    action: str
    archival_code: str
    fonds: str
    page: int | None
    byte_range: str | None
    purpose: str | None
    client: str | None


_LOG_COLUMNS = list(AccessPublic.model_fields)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """A cell of the CSV as Excel or WPS should show it: text that would start a formula (利用目的 and names
    are typed by anyone who reads) gets a leading apostrophe, so it is shown as text, never run."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@router.get(
    "/access-log",
    response_model=list[AccessPublic],
    summary="利用登记: every download and page view (archivist); format=csv exports it",
    responses={200: {"content": {"text/csv": {}}}, **error_responses(401, 403, 422)},
)
def access_log(
    session: SessionDep,
    token: CurrentToken,
    fonds: FilterText = None,
    archival_code: Annotated[
        str | None,
        Query(max_length=128, pattern=NO_NUL, description="One item's 档号, in either style: that item's lines"),
    ] = None,
    who: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    since: Annotated[TimeInput | None, Query(description="From this time on (ISO 8601; UTC without offset)")] = None,
    until: Annotated[TimeInput | None, Query(description="Before this time")] = None,
    format: Literal["json", "csv"] = "json",
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000,
    offset: Offset = 0,
) -> Any:
    access.require_role(token, Role.admin, Role.archivist)
    stmt = select(AccessRecord).order_by(AccessRecord.id.desc())
    scope = access.fonds_scope(token)
    if scope is not None:
        stmt = stmt.where(AccessRecord.fonds.in_(scope))
    if fonds:
        stmt = stmt.where(AccessRecord.fonds == fonds.upper())
    if archival_code:
        stmt = stmt.where(AccessRecord.archival_code == access.logged_code(session, archival_code))
    if who:
        stmt = stmt.where(AccessRecord.who == who)
    if since:
        stmt = stmt.where(AccessRecord.at >= since)
    if until:
        stmt = stmt.where(AccessRecord.at < until)
    rows = [
        AccessPublic.model_validate(r, from_attributes=True) for r in session.scalars(stmt.limit(limit).offset(offset))
    ]
    if format == "json":
        return rows
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["时间", "利用者", "角色", "操作", "档号", "全宗号", "页号", "字节范围", "利用目的", "来源地址"])
    for r in rows:
        writer.writerow([_csv_cell(getattr(r, c)) for c in _LOG_COLUMNS])
    # A BOM so that Excel on the archive's PC opens the Chinese columns as UTF-8.
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="access-log.csv"'},
    )


CodeStyleName = Literal["dat22", "dat13", "DA/T 22", "DA/T 13", "DA/T 22-2015", "DA/T 13-2022"]


class FondsSettings(BaseModel):
    name: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    code_style: CodeStyleName | None = Field(default=None, description="DA/T 22 or DA/T 13: how this fonds writes 档号")
    allow_new_items: bool | None = Field(
        default=None, strict=True, description="A batch named by an unknown 档号 creates the item"
    )


class FondsPublic(BaseModel):
    code: str
    name: str | None
    code_style: Literal["dat22", "dat13"]
    allow_new_items: bool


def _fonds_public(fonds: Fonds) -> FondsPublic:
    return FondsPublic(
        code=fonds.code,
        name=fonds.name,
        code_style="dat13" if fonds.code_style == "dat13" else "dat22",
        allow_new_items=fonds.allow_new_items,
    )


@router.put(
    "/fonds/{code}",
    response_model=FondsPublic,
    summary="Create a fonds (全宗) or change its settings (archivist)",
    responses=error_responses(400, 401, 403, 422),
)
def put_fonds(
    code: FondsPath,
    body: FondsSettings,
    session: SessionDep,
    token: CurrentToken,
) -> FondsPublic:
    access.require_role(token, Role.admin, Role.archivist)
    code = code.strip().upper()
    access.require_fonds(token, code)
    ac.ArchivalCode(fonds=code, category="WS", year=2000, retention="Y", item=1)  # checks the fonds code's shape
    fonds = ensure_fonds(session, code)
    if body.name is not None:
        fonds.name = body.name
    if body.code_style is not None:
        style = ac.style_for(body.code_style)  # the Literal above holds only names style_for knows
        fonds.code_style = "dat13" if style is ac.DAT13 else "dat22"
    if body.allow_new_items is not None:
        fonds.allow_new_items = body.allow_new_items
    return _fonds_public(fonds)


@router.get(
    "/fonds",
    response_model=list[FondsPublic],
    summary="Fonds and their settings",
    responses=error_responses(401),
)
def list_fonds(session: SessionDep, token: CurrentToken) -> list[FondsPublic]:
    scope = access.fonds_scope(token)
    stmt = select(Fonds).order_by(Fonds.code)
    if scope is not None:
        stmt = stmt.where(Fonds.code.in_(scope))
    return [_fonds_public(f) for f in session.scalars(stmt)]


class CatalogueImported(BaseModel):
    rows: int
    created: int = Field(description="Items created (with dry_run: that the import would create)")
    updated: int = Field(description="Items whose description changed (with dry_run: that it would update)")
    ignored_columns: list[str] = Field(description="Columns of the file that are not 归档文件目录 columns")
    dry_run: bool = Field(default=False, description="true: only checked, nothing stored")
    errors: list[RowIssue] = Field(
        default_factory=list, description="dry_run: every problem found (empty: the file can be imported as it is)"
    )


_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _stored_name(filename: str, suffix: str) -> str:
    """The name the sent file is read under, so that its problems name the file as the archivist named it
    (东风村目录.xlsx): its last part with the suffix in lower case; "catalogue" where that part is no name
    of its own (".csv") or is longer than a file name may be."""
    stem = Path(filename).name[: -len(suffix)]
    name = f"{stem}{suffix}"
    return name if stem.strip(". ") and len(name.encode()) <= 200 else f"catalogue{suffix}"


@router.post(
    "/catalogue",
    response_model=CatalogueImported,
    summary="Import an 归档文件目录 (CSV or XLSX as the request body); all rows or none (archivist)",
    responses=error_responses(401, 403, 422),
    openapi_extra={
        # The file's bytes, whatever they are: a raw body has no schema (OpenAPI 3.1), so no generated
        # "wrong type" body is taken for a request the check should refuse; the check says what is wrong.
        "requestBody": {
            "required": True,
            "description": "The catalogue file as it is (CSV: UTF-8 or GB18030; or XLSX)",
            "content": {"text/csv": {}, _XLSX: {}},
        }
    },
)
async def post_catalogue(
    request: Request,
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    filename: Annotated[
        str,
        Query(
            max_length=255,
            pattern=r"^[^\x00]*\.([cC][sS][vV]|[xX][lL][sS][xX])$",
            description="The file's name; its extension (.csv or .xlsx) says which it is",
        ),
    ],
    sheet: Annotated[str | None, Query(max_length=100, pattern=NO_NUL, description="XLSX: the sheet")] = None,
    dry_run: Annotated[
        bool,
        Query(
            description="Only check the file: answers 200 with every problem in 'errors' and what the import "
            "would create and update, and stores nothing at all (no item, no fonds, no file)"
        ),
    ] = False,
) -> dict[str, Any]:
    access.require_role(token, Role.admin, Role.archivist)
    suffix = "." + filename.rsplit(".", 1)[-1].lower()  # ".CSV" too, which Path() takes for a hidden file
    if suffix not in (".csv", ".xlsx"):  # the pattern above already says so; kept for callers in Python
        raise UnusableInput(f"{filename}: send a .csv or .xlsx file.", reason_code="not_a_catalogue")
    body = await request.body()
    if not body:  # no file at all is a request that does not fit the OpenAPI, even for a check
        raise UnusableInput(f"{filename}: the request has no body; send the file's bytes.", reason_code="empty_body")
    try:
        # The file is read from a private temporary folder, outside the data folder, gone at once.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / _stored_name(filename, suffix)
            path.write_bytes(body)
            imported = read_catalogue(path, sheet=sheet)
    except CatalogueImportError as exc:
        if not dry_run:
            raise
        issues = [RowIssue(row=e.row, column=e.column, message=e.message, message_zh=e.zh or None) for e in exc.errors]
        return {"rows": 0, "created": 0, "updated": 0, "ignored_columns": [], "dry_run": True, "errors": issues}
    scope = access.fonds_scope(token)
    outside = sorted({r.code.fonds for r in imported.rows} - set(scope)) if scope is not None else []
    if dry_run:
        first_row = {f: min(r.row for r in imported.rows if r.code.fonds == f) for f in outside}
        issues = [
            RowIssue(
                row=first_row[f],
                column="档号",
                message=f"This {token.kind} is limited to fonds {', '.join(scope or [])}, not {f}.",
                message_zh=f"全宗 {f} 不在您的权限范围内（您可管理：{'、'.join(scope or [])}）",
            )
            for f in outside
        ]
        counts = check_catalogue(session, imported)
        return {**counts, "ignored_columns": imported.ignored_columns, "dry_run": True, "errors": issues}
    if outside:
        access.require_fonds(token, outside[0])
    counts = import_catalogue(session, imported, actor=token.name, settings=settings)
    return {**counts, "ignored_columns": imported.ignored_columns}


@router.get(
    "/catalogue/separators",
    response_class=FileResponse,
    summary="Separator sheets (PDF, one A4 sheet per item) for a fonds' catalogue items not scanned yet",
    responses={200: {"content": {"application/pdf": {}}}, **error_responses(401, 403, 404, 422)},
)
def get_separator_sheets(
    settings: SettingsDep,
    session: SessionDep,
    token: CurrentToken,
    # The fonds code also names the file written: letters and digits only.
    fonds: Annotated[str, Query(pattern="^[A-Za-z0-9]{1,8}$", description="全宗号")],
    year: YearQuery = None,
    category: FilterText = None,
    include_filed: Annotated[bool, Query(description="Also items that already have pages")] = False,
    code: Annotated[
        list[Annotated[str, Query(max_length=128, pattern=NO_NUL)]] | None,
        Query(
            max_length=1000,
            description="档号 of the items to print (repeat for several), filed or not; year and category are "
            "then ignored. An unknown one answers 404",
        ),
    ] = None,
) -> FileResponse:
    access.require_role(token, Role.admin, Role.archivist, Role.operator)
    access.require_fonds(token, fonds.upper())
    items = items_for_sheets(
        session, fonds, year=year, category=category, include_filed=include_filed, codes=code or None
    )
    if not items:
        raise NotFound(f"No catalogue item of fonds {fonds.upper()} to print a separator sheet for.")
    entries = [
        SeparatorEntry(archival_code=i.archival_code, title=i.title or "", pages=i.expected_pages) for i in items
    ]
    out = settings.data / "separators" / f"{fonds.upper()}-{uuid.uuid4().hex[:8]}.pdf"
    out.parent.mkdir(parents=True, exist_ok=True)
    render_separator_sheets(entries, out)
    return FileResponse(
        out,
        media_type="application/pdf",
        filename=f"分隔页-{fonds.upper()}.pdf",
        background=BackgroundTask(out.unlink, missing_ok=True),
    )
