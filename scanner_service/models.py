"""The catalogue: batches as received, their originals and pages, and API tokens (SQLAlchemy 2)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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


class Base(DeclarativeBase):
    pass


class BatchState(str, enum.Enum):
    receiving = "receiving"  # recorded, being moved from the inbox into the spool
    queued = "queued"  # pages queued, none finished yet
    processing = "processing"
    done = "done"
    needs_review = "needs_review"  # finished, but some page is flagged or failed
    failed = "failed"  # nothing usable: the reason is in `error`


class PageState(str, enum.Enum):
    queued = "queued"
    processing = "processing"
    done = "done"
    failed = "failed"


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
    fonds: Mapped[str | None] = mapped_column(String(40), nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
