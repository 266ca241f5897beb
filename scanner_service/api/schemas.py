"""Response models of the API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class PagePublic(BaseModel):
    seq: int
    state: str
    attempts: int
    blank: bool
    flags: list[str]
    confidence: float | None
    dpi: float | None
    error: str | None
    error_code: str | None
    source: str


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


class BatchPublic(BaseModel):
    id: int
    name: str
    state: str
    archival_code: str | None
    pages: PageCounts
    error: str | None
    error_code: str | None
    duplicate_of: int | None
    created_at: datetime
    finished_at: datetime | None
    pdf_url: str | None


class BatchDetail(BatchPublic):
    page_list: list[PagePublic]
    originals: list[OriginalPublic]


class Health(BaseModel):
    status: str
    redis: bool
    catalogue: bool
    workers: int
