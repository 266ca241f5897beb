"""The catalogue (SQLAlchemy 2): batches as received with their originals and pages; the archive of fonds,
items (件) and their filed pages; the search index; events, the access log (利用登记), grants and API tokens."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A time as UTC; a time without an offset is taken as UTC (SQLite keeps no offset, so every time
    stored and compared is UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class BatchState(str, enum.Enum):
    receiving = "receiving"  # recorded, being moved from the inbox into the spool
    queued = "queued"  # pages queued, none finished yet
    processing = "processing"
    done = "done"
    needs_review = "needs_review"  # finished, but some page is flagged or failed
    failed = "failed"  # nothing usable: the reason is in `error`
    discarded = "discarded"  # a person discarded it: its originals are in quarantine, nothing filed


class PageState(str, enum.Enum):
    queued = "queued"
    processing = "processing"
    done = "done"
    failed = "failed"


class EventKind(str, enum.Enum):
    """What an event tells a downstream system (``GET /api/events``) or a watching person (``GET /api/stream``).

    The item kinds are what ``GET /api/events`` lists by default; the stream carries every kind.
    """

    item_filed = "item_filed"  # an item's first pages were filed
    item_pages_changed = "item_pages_changed"  # pages appended, inserted, replaced, corrected, moved or withdrawn
    item_described = "item_described"  # its DA/T 18 description changed
    batch_state = "batch_state"  # a batch changed state (receiving, queued, processing, done, needs_review, failed)
    page_progress = "page_progress"  # a page started a stage or finished (state, stage, pages done)
    page_flagged = "page_flagged"  # a page finished with flags that send its batch to review
    correction = "correction"  # a person corrected, accepted or undid something (a Correction row)


ITEM_EVENT_KINDS = (EventKind.item_filed, EventKind.item_pages_changed, EventKind.item_described)


class FilingMode(str, enum.Enum):
    """How a batch's pages join an item (stored in events as the value)."""

    new = "new"  # the item's first pages; refused if it has some
    append = "append"  # after its last page
    insert = "insert"  # before page ``at``
    # Not named "replace": a member of that name would hide str.replace on every mode.
    replace_pages = "replace"  # in place of the pages named; the old masters are kept under replaced/


class FileKind(str, enum.Enum):
    """What an archived file is (``ArchiveFile.kind``); names equal the stored values."""

    master = "master"  # the scanned page, as close to the scanner's bytes as the format allows
    pdf = "pdf"  # the item's searchable PDF/A
    usage = "usage"  # the processed page image the PDF and the API show
    ocr = "ocr"  # the page's OCR lines with their boxes (JSON)
    thumbnail = "thumbnail"
    description = "description"  # item.json
    replaced = "replaced"  # a master a rescan replaced, kept under replaced/
    withdrawn = "withdrawn"  # the master of a page a person withdrew from its item, kept under withdrawn/


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    state: Mapped[BatchState] = mapped_column(Enum(BatchState, native_enum=False, length=20), index=True)
    source: Mapped[str] = mapped_column(Text, doc="Where the batch came from (inbox path or ingest path)")
    is_folder: Mapped[bool] = mapped_column(Boolean, default=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("batches.id"), nullable=True)
    archival_code: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    assembly_queued: Mapped[bool] = mapped_column(Boolean, default=False)
    pdf_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    filing: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, doc="What filing did or proposes: items and their pages, problems that stopped it"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    originals: Mapped[list[Original]] = relationship(back_populates="batch", order_by="Original.seq")
    pages: Mapped[list[Page]] = relationship(back_populates="batch", order_by="Page.seq")


class Original(Base):
    """A file as the scanner wrote it; kept unchanged, its SHA-256 recorded before it is moved."""

    __tablename__ = "originals"
    __table_args__ = (UniqueConstraint("batch_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer, doc="Position in name order inside the batch, from 1")
    name: Mapped[str] = mapped_column(Text, doc="Path relative to the batch folder, as a person reads it")
    stored_name: Mapped[str] = mapped_column(Text, doc="Path relative to the batch's originals folder")
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)

    batch: Mapped[Batch] = relationship(back_populates="originals")


class Page(Base):
    """One page in scan order; produced by one page job."""

    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("batch_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    original_id: Mapped[int] = mapped_column(ForeignKey("originals.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, doc="Page number in scan order, from 1")
    source_index: Mapped[int] = mapped_column(Integer, doc="Frame or page number inside the original, from 0")
    state: Mapped[PageState] = mapped_column(Enum(PageState, native_enum=False, length=20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    blank: Mapped[bool] = mapped_column(Boolean, default=False)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    dpi: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    decision: Mapped[dict[str, Any] | None] = mapped_column(
        JSON,
        nullable=True,
        doc="The station's own decision, kept from the first processing: blank, flags, details, confidence; "
        "what undo goes back to",
    )
    correction: Mapped[dict[str, Any]] = mapped_column(
        JSON,
        default=dict,
        doc="What a person decided (turn, skew_deg, blank, excluded, crop, note, accepted); empty = the "
        "station's decision stands",
    )
    version: Mapped[int] = mapped_column(Integer, default=1, doc="Goes up at every correction (If-Match)")
    position: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="The page's place in the order a person chose (from 1); None = scan order"
    )
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    batch: Mapped[Batch] = relationship(back_populates="pages")
    original: Mapped[Original] = relationship()


class Role(str, enum.Enum):
    admin = "admin"
    archivist = "archivist"
    operator = "operator"
    reader = "reader"


class ApiToken(Base):
    """An API token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    fonds: Mapped[str | None] = mapped_column(
        Text, nullable=True, doc="Comma-separated fonds codes the token is limited to; empty = every fonds"
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def fonds_list(self) -> list[str]:
        return [f.strip().upper() for f in (self.fonds or "").split(",") if f.strip()]


class Fonds(Base):
    """A 全宗: one village, community or township unit, with how its 档号 are written."""

    __tablename__ = "fonds"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    code_style: Mapped[str] = mapped_column(
        String(10), default="dat22", doc="dat22 (C015-WS·2013-Y-…) or dat13 (…·Y·…)"
    )
    allow_new_items: Mapped[bool] = mapped_column(
        Boolean, default=True, doc="A batch named by a 档号 not in the catalogue creates the item"
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Item(Base):
    """A 件: the unit of filing, with its DA/T 18 description and its filed pages."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_key: Mapped[str] = mapped_column(
        String(128), unique=True, doc="The 档号 in DA/T 22 form: one key for both forms"
    )
    archival_code: Mapped[str] = mapped_column(String(128), doc="The 档号 as its fonds writes it")
    fonds: Mapped[str] = mapped_column(ForeignKey("fonds.code"), index=True)
    category: Mapped[str] = mapped_column(String(8), index=True)
    year: Mapped[int] = mapped_column(Integer, index=True)
    retention: Mapped[str] = mapped_column(String(8))
    org: Mapped[str | None] = mapped_column(String(16), nullable=True)
    volume: Mapped[int | None] = mapped_column(Integer, nullable=True)
    item_no: Mapped[int] = mapped_column(Integer)
    serial: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="序号 in the catalogue")
    title: Mapped[str | None] = mapped_column(Text, nullable=True, doc="题名")
    author: Mapped[str | None] = mapped_column(Text, nullable=True, doc="责任者")
    date_text: Mapped[str | None] = mapped_column(String(40), nullable=True, doc="日期 as written")
    date: Mapped[date | None] = mapped_column(Date, nullable=True)
    doc_number: Mapped[str | None] = mapped_column(String(200), nullable=True, doc="文件编号 (文号)")
    expected_pages: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="页数 in the catalogue")
    classification: Mapped[str | None] = mapped_column(String(20), nullable=True, doc="密级")
    open_status: Mapped[str | None] = mapped_column(String(20), nullable=True, doc="开放标识")
    note: Mapped[str | None] = mapped_column(Text, nullable=True, doc="附注 (备注)")
    pages_filed: Mapped[int] = mapped_column(Integer, default=0)
    page_check: Mapped[str | None] = mapped_column(
        String(20), nullable=True, doc="missing_pages (漏扫) or extra_pages (多扫) against 页数"
    )
    folder: Mapped[str] = mapped_column(Text, doc="Item folder, relative to the archive folder")
    pdf_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdf_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0, doc="Goes up at every filing that changes the pages")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    filed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    pages: Mapped[list[ItemPage]] = relationship(
        back_populates="item", order_by="ItemPage.serial", cascade="all, delete-orphan"
    )


class ItemPage(Base):
    """A page of an item, at its serial (= its page number in the item's PDF)."""

    __tablename__ = "item_pages"
    __table_args__ = (UniqueConstraint("item_id", "serial"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    serial: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), nullable=True)
    batch_seq: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="The page's number in its batch")
    master_name: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, doc="What the last derivation of the page did (turn, skew, crop, …)"
    )
    decision: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, nullable=True, doc="The station's own decision, as the batch page had it when filed"
    )
    correction: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="What a person decided; see Page")
    version: Mapped[int] = mapped_column(Integer, default=1, doc="Goes up at every correction (If-Match)")
    state: Mapped[str] = mapped_column(
        String(20),
        default="done",
        doc="done; queued while a correction is derived again; failed if it could not be (why: details.error)",
    )
    filed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    item: Mapped[Item] = relationship(back_populates="pages")


class ArchiveFile(Base):
    """A file in the archive with the SHA-256 recorded when it was written: what ``scanstation audit`` checks."""

    __tablename__ = "archive_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"), nullable=True, index=True)
    path: Mapped[str] = mapped_column(Text, unique=True, doc="Relative to the archive folder")
    kind: Mapped[FileKind] = mapped_column(Enum(FileKind, native_enum=False, length=20), doc="What the file is")
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SearchEntry(Base):
    """One page's text in the search index: a filed item's page, or a batch's page not filed yet.

    ``terms`` is the text as the full-text index sees it: every Chinese character its own token, so a
    two-character name is a two-token phrase (SQLite FTS5 table ``search_fts``; PostgreSQL GIN index).
    """

    __tablename__ = "search_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), nullable=True, index=True)
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), nullable=True, index=True
    )
    page_no: Mapped[int] = mapped_column(Integer)
    fonds: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    category: Mapped[str | None] = mapped_column(String(8), nullable=True)
    year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    text: Mapped[str] = mapped_column(Text)
    terms: Mapped[str] = mapped_column(Text)


class Event(Base):
    """Something a downstream system wants to learn: an item filed, its pages or description changed."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(40), doc="an EventKind value")
    archival_code: Mapped[str | None] = mapped_column(String(128), nullable=True)
    fonds: Mapped[str | None] = mapped_column(String(16), nullable=True)
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"), nullable=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), nullable=True)
    page: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="The page it is about: its seq in the batch, or its serial in the item"
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AccessRecord(Base):
    """利用登记: one download or page view: who, what, when, and the purpose if given."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    who: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(20), doc="pdf, page_text, page_hocr, page_image, thumbnail")
    archival_code: Mapped[str] = mapped_column(String(128), index=True)
    fonds: Mapped[str] = mapped_column(String(16), index=True)
    page: Mapped[int | None] = mapped_column(Integer, nullable=True)
    byte_range: Mapped[str | None] = mapped_column(String(80), nullable=True)
    purpose: Mapped[str | None] = mapped_column(Text, nullable=True)
    client: Mapped[str | None] = mapped_column(String(80), nullable=True)


class ExportState(str, enum.Enum):
    running = "running"
    done = "done"
    failed = "failed"  # why: ``error``; an export cut off by a stop is marked failed at the next start


class ExportRecord(Base):
    """送档下乡: one offline export (a folder, and its ISO images if asked), who made it, for whom, of what.

    Each item that went in also has its line in the 利用登记 (action ``export``)."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    who: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    recipient: Mapped[str | None] = mapped_column(Text, nullable=True, doc="For whom: the archive room it goes to")
    purpose: Mapped[str | None] = mapped_column(Text, nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, doc="Fonds, category, years, items asked")
    state: Mapped[ExportState] = mapped_column(Enum(ExportState, native_enum=False, length=20), index=True)
    folder: Mapped[str] = mapped_column(Text, doc="Where it was written")
    isos: Mapped[list[str]] = mapped_column(JSON, default=list, doc="The ISO images written, one per volume")
    items: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    volumes: Mapped[int] = mapped_column(Integer, default=0)
    done_bytes: Mapped[int] = mapped_column(BigInteger, default=0, doc="PDF bytes copied so far (progress)")
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    left_out: Mapped[list[dict[str, str]]] = mapped_column(
        JSON, default=list, doc="Items not exported: archival_code, reason_code, reason"
    )
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Grant(Base):
    """An archivist's permission for one token or one person to see one restricted item (密级 or not open)."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("token_id", "item_id"), UniqueConstraint("user_id", "item_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    granted_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class User(Base):
    """A person who logs in with a name and password (the web page); same roles and fonds as tokens."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=20))
    fonds: Mapped[str | None] = mapped_column(
        Text, nullable=True, doc="Comma-separated fonds codes; empty = every fonds"
    )
    password_hash: Mapped[str] = mapped_column(Text, doc="argon2id")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, doc="Failures in a row since the last login")
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def fonds_list(self) -> list[str]:
        return [f.strip().upper() for f in (self.fonds or "").split(",") if f.strip()]


class LoginSession(Base):
    """A person's logged-in session: the cookie's secret and the CSRF token, both stored as SHA-256."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, doc="Logged out")
    client: Mapped[str | None] = mapped_column(String(80), nullable=True)

    user: Mapped[User] = relationship()


class Correction(Base):
    """One thing a person changed (or accepted, or undid), with what it was before and after: the history
    shown per page and the record of who changed what (DA/T 31-2017's check before acceptance)."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    who: Mapped[str] = mapped_column(String(200), doc="The person's name or the token's name")
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    action: Mapped[str] = mapped_column(
        String(40), doc="page, rerun, undo, order (of a batch or an item), split, accept, file, discard, move, withdraw"
    )
    batch_id: Mapped[int | None] = mapped_column(
        ForeignKey("batches.id", ondelete="SET NULL"), nullable=True, index=True
    )
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="The batch page's seq")
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"), nullable=True, index=True)
    item_page_id: Mapped[int | None] = mapped_column(
        ForeignKey("item_pages.id", ondelete="SET NULL"), nullable=True, index=True
    )
    serial: Mapped[int | None] = mapped_column(Integer, nullable=True, doc="The item page's serial at the time")
    before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
