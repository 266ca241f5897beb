"""Response models of the API, the one error shape, and the bounds every number and text a client sends
is checked against."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from scanner_service.archive.archival_code import YEAR_MAX, YEAR_MIN
from scanner_service.archive.models import BatchState, PageState, as_utc

INT32_MAX = 2**31 - 1
"""The largest id, page number, count or offset a client may send: the catalogue's integer columns are
32-bit on PostgreSQL (and SQLite stops at 2**63 - 1), so a larger number could name nothing and would
only overflow the database driver."""
EVENT_ID = re.compile(r"[0-9]{1,20}")
"""An event id as sent (``?since=``, ``Last-Event-ID``): ASCII digits only (``\\d`` would take ``²``, which
``int()`` refuses); the caller refuses one above :data:`INT32_MAX`."""


NO_NUL = r"^[^\x00]*$"
"""Text a client sends holds no NUL character: PostgreSQL cannot store or compare one."""


BatchIdPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="The batch's id")]
PageNoPath = Annotated[int, Path(ge=1, le=INT32_MAX, description="The item's page number, from 1")]
CodePath = Annotated[
    str,
    Path(
        max_length=128,
        description="档号 in either style (DA/T 22 or DA/T 13)",
        examples=["C015-WS·2013-Y-BGS-0001", "C015-WS·2013·Y·BGS-0001"],
    ),
]
FondsPath = Annotated[str, Path(pattern=r"^\s*[A-Za-z0-9]{1,8}\s*$", description="全宗号, 1-8 letters or digits")]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many")]
Offset = Annotated[int, Query(ge=0, le=INT32_MAX, description="Skip this many first")]
YearQuery = Annotated[int | None, Query(ge=YEAR_MIN, le=YEAR_MAX, description="年度")]
FilterText = Annotated[str | None, Query(max_length=128, pattern=NO_NUL)]
"""A text to filter on (fonds, category, who, …): short, and without NUL."""
Id = Annotated[int, Field(strict=True, ge=1, le=INT32_MAX)]
"""An id or page number in a request body. Strict: JSON's false is not the number 0 (nor 1.5 the number 1)."""


UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
"""A time in a response: always written with its offset (UTC), as ``date-time`` in the OpenAPI requires."""

_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")


def _iso_time_only(value: Any) -> Any:
    # Pydantic would read a number (or a string of digits) as seconds since 1970; the schema says date-time,
    # and a client that sends 0.5 has most likely made a mistake, so it is refused with the expected form.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("a time is written in ISO 8601, such as 2026-11-01T08:00:00Z, not as a number")
    return value


def _input_utc(moment: datetime) -> datetime:
    try:
        return as_utc(moment)
    except OverflowError:  # 9999-12-31T23:00-05:00 has no UTC time in Python's range
        raise ValueError("the time is out of range once turned into UTC") from None


TimeInput = Annotated[datetime, BeforeValidator(_iso_time_only), AfterValidator(_input_utc)]
"""A time a client sends: ISO 8601; without an offset it is taken as UTC."""


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` allowed) as UTC; ValueError if it is not one or cannot be UTC."""
    return _input_utc(datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00")))


class RequestIssue(BaseModel):
    """One thing wrong in a request, as FastAPI's validation found it."""

    loc: list[str | int] = Field(description="Where: path, query, header or body, then the field")
    msg: str
    type: str


class RowIssue(BaseModel):
    """One thing wrong in a catalogue file."""

    row: int | None = Field(default=None, description="The file's row (1 = the header), if the problem has one")
    column: str | None = Field(default=None, description="The column's heading, if the problem has one")
    message: str
    message_zh: str | None = Field(default=None, description="The same in Chinese, for the archivist")


class ErrorBody(BaseModel):
    """Every 4xx (and 5xx) answer of the API has this shape."""

    error: str = Field(description="A stable code: not_found, forbidden, invalid_request, filing_refused, …")
    detail: str = Field(description="What went wrong, for a person")
    reason: str | None = Field(default=None, description="A finer code when the error has one (bad_mode, …)")
    part: str | None = Field(default=None, description="With invalid_archival_code: the 档号 part that is wrong")
    errors: list[RequestIssue | RowIssue] | None = Field(
        default=None, description="invalid_request: each field in error; catalogue_import: each row in error"
    )


_ERROR_DESCRIPTIONS = {
    400: "The request body cannot be read",
    401: "No API token or login, or an unknown, revoked or ended one; or a wrong name or password",
    403: "The caller's role or fonds does not allow this; or (reason 'csrf') a change made with a login cookie "
    "without its X-CSRF-Token",
    404: "Nothing of that name, or nothing this token may see",
    409: "The request clashes with what is there; the reason is in 'reason' and 'detail'",
    416: "The byte range starts beyond the end of the file (Content-Range: bytes */size)",
    422: "The request is not valid; 'errors' (or 'part') says where",
    429: "Too many failed logins: the account is locked; Retry-After says for how many seconds",
    503: "A file of the archive cannot be read now (damaged: reason 'damaged_file'); 'scanstation audit' checks them",
}


ERROR_REF = "#/components/schemas/ErrorBody"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for the error statuses a route can answer, all JSON with :class:`ErrorBody`.

    The schema is referenced rather than given as ``model``: FastAPI would document a model under the
    route's own media type (text/plain, application/pdf), but errors are always JSON.
    """
    return {
        status: {
            "description": _ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
        }
        for status in statuses
    }


def error_schemas() -> dict[str, Any]:
    """The OpenAPI component schemas :data:`ERROR_REF` points at (ErrorBody and the models it uses)."""
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    defs = schema.pop("$defs", {})
    return {**defs, "ErrorBody": schema}


class HistoryEntry(BaseModel):
    """One correction: who, when, what, before → after."""

    id: int
    at: UtcDateTime
    who: str
    kind: Literal["person", "token"]
    action: str
    before: dict[str, Any]
    after: dict[str, Any]
    note: str | None


Turn = Literal[0, 90, 180, 270]


def _box(box: list[int]) -> list[int]:
    if not (box[0] < box[2] and box[1] < box[3]):
        raise ValueError("a crop box is [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
    return box


CropBox = Annotated[
    list[Annotated[int, Field(strict=True, ge=0, le=10**6)]], Field(min_length=4, max_length=4), AfterValidator(_box)
]
Note = Annotated[str, Field(max_length=2000, pattern=NO_NUL)]
EngineName = Literal["rapidocr", "tesseract"]


class PageCorrection(BaseModel):
    """A person's correction of one page; only the fields sent change (see ``correction`` in the answer)."""

    turn: Turn | None = Field(
        default=None, description="Degrees clockwise added to the station's turn; 0 = the station's"
    )
    skew_deg: float | None = Field(
        default=None,
        ge=-45,
        le=45,
        allow_inf_nan=False,
        description="The fine angle to straighten by; null = the station's",
    )
    blank: bool | None = Field(default=None, description="Whether the page is blank; null = the station's verdict")
    excluded: bool | None = Field(
        default=None, description="Leave the page out of the PDF and filing (its original kept)"
    )
    crop: CropBox | None = Field(
        default=None, description="[x0, y0, x1, y1] on the master (x0 < x1, y0 < y1), or null for no crop at all"
    )
    note: Note | None = None


class RerunRequest(BaseModel):
    engine: EngineName | None = Field(default=None, description="The OCR engine to read the page with")


class OrderRequest(BaseModel):
    seqs: list[Id] = Field(
        max_length=10000, description="Every page of the batch once (scan numbers), in the new order"
    )


class SplitPart(BaseModel):
    archival_code: str = Field(max_length=128, pattern=NO_NUL, description="档号 of the item these pages are filed in")
    seqs: list[Id] = Field(min_length=1, max_length=10000, description="The batch pages (scan numbers), in order")


class SplitRequest(BaseModel):
    items: list[SplitPart] = Field(min_length=1, max_length=1000)


class AcceptRequest(BaseModel):
    note: Note | None = None
    seqs: list[Id] | None = Field(default=None, max_length=10000, description="Only these pages; default: all")


class BatchFileRequest(BaseModel):
    archival_code: str = Field(max_length=128, pattern=NO_NUL, description="档号 of the item to file the batch in")
    mode: Literal["new", "append", "insert", "replace"] = "new"
    at: Id | None = Field(default=None, description="With mode=insert: the item page the new pages start at")
    replace: list[Id] = Field(default_factory=list, max_length=10000, description="With mode=replace: the item's pages")
    seqs: list[Id] | None = Field(
        default=None, max_length=10000, description="The batch pages to file; default: every usable page, in order"
    )


class DiscardRequest(BaseModel):
    note: Note | None = Field(default=None, description="Why the batch is discarded")


class PagePublic(BaseModel):
    seq: int
    state: PageState
    attempts: int
    blank: bool
    flags: list[str]
    confidence: float | None
    dpi: float | None
    error: str | None
    error_code: str | None
    source: str  # "file#page", kept for older clients
    source_file: str
    source_page: int  # 1-based page of that file
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="What the page stages did: turn, skew_deg (and whether measured from text or the sheet's "
        "edges), crop box, orientation_confidence, blank verdict, usage encoding and encoding_reason (text, "
        "colour, picture, or faint_ink: grey so that a pencil note stays visible)",
    )
    position: int = Field(default=0, description="The page's place in the batch's order (from 1)")
    version: int = Field(default=1, description="Goes up at every correction; send it as If-Match")
    decision: dict[str, Any] | None = Field(
        default=None,
        description="The station's own decision (blank, flags, details, confidence): what undo goes back to",
    )
    correction: dict[str, Any] = Field(
        default_factory=dict,
        description="What a person decided: turn, skew_deg, crop, blank, excluded, note, accepted, engine",
    )
    open_flags: list[str] = Field(
        default_factory=list, description="Flags still waiting for a person (not corrected, not accepted)"
    )
    filed_in: str | None = Field(default=None, description="The 档号 of the item the page is filed in, if filed")
    history: list[HistoryEntry] = Field(default_factory=list, description="Every correction of the page, oldest first")


class OriginalPublic(BaseModel):
    name: str
    size: int
    sha256: str
    quarantined: bool
    error: str | None


class PageCounts(BaseModel):
    total: int
    done: int
    blank: int
    failed: int


class FlagCounts(BaseModel):
    """How many of a batch's pages carry each flag (as the station decided; accepting a flag keeps it)."""

    blank: int = 0
    orientation_unsure: int = 0
    low_confidence: int = 0
    low_resolution: int = 0
    resolution_mismatch: int = 0
    failed: int = 0


class BatchPublic(BaseModel):
    id: int
    name: str
    state: BatchState
    archival_code: str | None
    pages: PageCounts
    flags: FlagCounts = Field(
        default_factory=FlagCounts, description="Pages per flag: blank, orientation_unsure, low_confidence, …"
    )
    pages_per_minute: float | None = Field(
        default=None,
        description="Pages finished per minute, between the first and the latest page finished (two or more)",
    )
    seconds_left: float | None = Field(
        default=None, description="While the batch runs: about how long until every page is finished, at that rate"
    )
    error: str | None
    error_code: str | None
    duplicate_of: int | None
    created_at: UtcDateTime
    finished_at: UtcDateTime | None
    pdf_url: str | None
    assembling: bool = Field(
        default=False,
        description="Its PDF is being (re)built, and the batch filed if nothing is open: file, split and "
        "discard answer 409 batch_busy until it is false",
    )
    filing: dict[str, Any] = Field(
        default_factory=dict,
        description="target: the 档号 the batch's name gives; items: what was filed (档号, batch pages, page_check); "
        "problems: what stopped filing (code, message, page); proposed: the split the station would have made",
    )


class BatchDetail(BatchPublic):
    page_list: list[PagePublic]
    originals: list[OriginalPublic]
    history: list[HistoryEntry] = Field(
        default_factory=list, description="What people did to the batch as a whole (order, file, split, discard, …)"
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: bool
    catalogue: bool
    workers: int


class QueuePublic(BaseModel):
    redis: bool = Field(description="Redis answered; without it nothing is queued or worked on")
    queued: int = Field(description="Jobs waiting in the queue (pages, PDF assemblies, corrections)")
    running: int = Field(description="Jobs being worked on now")
    scheduled: int = Field(description="Jobs waiting for a retry at a later time")
    workers: int = Field(description="Workers alive (heart-beating)")
    busy: int = Field(description="Workers at work on a job now")


class DiskPublic(BaseModel):
    path: str = Field(description="The folder whose file system was measured (the archive, or its parent)")
    total_bytes: int
    free_bytes: int = Field(description="What the station may still write")
    pages_fit: int = Field(description="About how many more pages fit, at 3 MiB a page")
    warning: bool = Field(description="Fewer than 2,000 pages fit, or less than 5 % of the file system is free")
    reason: Literal["few_pages", "low_fraction"] | None


class OcrPublic(BaseModel):
    engine: str = Field(description="The OCR engine pages are read with: rapidocr (PP-OCRv4) or tesseract")
    runtime: str = Field(description="What runs PP-OCR's models: openvino or onnxruntime (the same model files)")


class StationPublic(BaseModel):
    queue: QueuePublic
    disk: DiskPublic
    ocr: OcrPublic
    batches: dict[str, int] = Field(description="How many batches the caller may see are in each state")
