"""Response models of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


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
    source: str  # "file#page", kept for older clients
    source_file: str
    source_page: int  # 1-based page of that file
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="What the page stages did: turn, skew_deg (and whether measured from text or the sheet's "
        "edges), crop box, orientation_confidence, blank verdict, usage encoding",
    )


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
    filing: dict[str, Any] = Field(
        default_factory=dict,
        description="target: the 档号 the batch's name gives; items: what was filed (档号, batch pages, page_check); "
        "problems: what stopped filing (code, message, page); proposed: the split the station would have made",
    )


class BatchDetail(BatchPublic):
    page_list: list[PagePublic]
    originals: list[OriginalPublic]


class Health(BaseModel):
    status: str
    redis: bool
    catalogue: bool
    workers: int
