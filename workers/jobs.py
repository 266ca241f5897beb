"""RQ jobs: thin wrappers that load, call a stage, store the outputs and report progress.

A job gets an id; it reads its settings from the worker's environment. A job may run twice (after a
worker died); every output is written atomically to a fixed path, so a second run is harmless.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rq import get_current_job
from sqlalchemy import and_, exists, select, update

from ocr_models.base import PageText
from ocr_models.registry import build_engine
from scanner_service import durable, filing, intake
from scanner_service import queue as q
from scanner_service.db import session_scope
from scanner_service.exceptions import PageFailed, ScanstationError, TransientError, UnusableInput
from scanner_service.models import Batch, BatchState, Page, PageState
from scanner_service.settings import Settings, build_settings
from workers.pdfa import PdfPage, build_pdfa
from workers.pipeline import process_page_image, save_usage_image

log = logging.getLogger(__name__)

FINAL = (PageState.done, PageState.failed)


def pages_dir(settings: Settings, batch_id: int) -> Path:
    return intake.batch_dir(settings, batch_id) / "pages"


def batch_pdf_path(settings: Settings, batch_id: int) -> Path:
    return intake.batch_dir(settings, batch_id) / "batch.pdf"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    durable.write_text(path, json.dumps(data, ensure_ascii=False))


def process_page(page_id: int) -> str:
    """Run one page through the stages and store its usage image and text."""
    settings = build_settings()
    url = settings.effective_database_url
    with session_scope(url) as session:
        page = session.get(Page, page_id)
        if page is None:
            return "gone"
        if page.state in FINAL:
            return page.state.value
        page.state = PageState.processing
        page.attempts += 1
        batch = page.batch
        if batch.state == BatchState.queued:
            batch.state = BatchState.processing
        source = intake.stored_path(intake.originals_dir(settings, batch.id), page.original.stored_name)
        index, seq, batch_id = page.source_index, page.seq, batch.id
    job = get_current_job()
    if job is not None:
        job.meta["stage"] = "ocr"
        job.save_meta()
    try:
        engine = build_engine(settings.ocr_engine, languages=settings.ocr_languages, timeout=settings.page_timeout)
        outcome = process_page_image(
            source,
            index,
            engine=engine,
            max_pixels=settings.max_pixels,
            render_dpi=settings.render_dpi,
            min_confidence=settings.min_confidence,
        )
    except (UnusableInput, PageFailed) as err:
        # Retrying cannot help: the page is failed for good, the others go on.
        _finish_page(settings, page_id, failed=err)
        return "failed"
    out = pages_dir(settings, batch_id)
    out.mkdir(parents=True, exist_ok=True)
    image_path = save_usage_image(outcome.image, out / f"{seq:04d}", jpeg_quality=settings.jpeg_quality)
    _write_json(
        out / f"{seq:04d}.json",
        {"image": image_path.name, "dpi": list(outcome.dpi), "text": outcome.text.to_dict()},
    )
    with session_scope(url) as session:
        page = session.get(Page, page_id)
        assert page is not None
        page.blank = outcome.blank
        page.flags = outcome.flags
        page.details = outcome.details
        page.confidence = round(outcome.text.mean_confidence, 2) if outcome.text.lines else None
        page.dpi = max(outcome.dpi)
        page.text = outcome.text.text
    _finish_page(settings, page_id)
    return "done"


def _finish_page(settings: Settings, page_id: int, *, failed: ScanstationError | None = None) -> None:
    """Mark a page final, then queue the batch's assembly if this was its last open page."""
    url = settings.effective_database_url
    with session_scope(url) as session:
        page = session.get(Page, page_id)
        if page is None:
            return
        if failed is not None:
            page.state = PageState.failed
            page.error = failed.message
            page.error_code = failed.reason_code
            page.flags = [*page.flags, "failed"] if "failed" not in page.flags else page.flags
        else:
            page.state = PageState.done
        batch_id = page.batch_id
    # A separate transaction: by now every other page's final state is committed or will see ours.
    if claim_assembly(url, batch_id):
        job = get_current_job()
        # Inside a job, reuse the worker's connection rather than open one per page.
        connection = job.connection if job is not None else q.connect(settings)
        q.enqueue_assembly(q.get_queue(connection), settings, batch_id)


def claim_assembly(url: str, batch_id: int, *, reclaim: bool = False) -> bool:
    """True for exactly one caller once every page of the batch is final (``reclaim``: also if claimed)."""
    open_page = exists().where(and_(Page.batch_id == batch_id, Page.state.notin_(FINAL)))
    with session_scope(url) as session:
        if reclaim:
            batch = session.get(Batch, batch_id)
            if batch is not None and batch.assembly_queued:
                return not session.scalar(select(open_page))
        result = session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.assembly_queued.is_(False), ~open_page)
            .values(assembly_queued=True)
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def page_failed_for_good(job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: when a page job has no retries left, the page is failed with its reason."""
    if job.should_retry:
        return
    page_id = int(job.args[0])
    if isinstance(exc, ScanstationError):
        err = exc
    elif exc is None or exc_type is None:
        err = TransientError("The worker stopped while working on this page, too many times.")
    else:
        err = TransientError(f"Processing failed after retries: {exc_type.__name__}: {exc}")
    _finish_page(build_settings(), page_id, failed=err)


def assemble_batch(batch_id: int) -> str:
    """Build the batch's searchable PDF/A from its finished pages (blank pages left out) and settle its state."""
    settings = build_settings()
    url = settings.effective_database_url
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return "gone"
        pages = [(p.seq, p.state, p.blank, list(p.flags)) for p in batch.pages]
        name = batch.name
    usable = [
        seq for seq, state, blank, flags in pages if state == PageState.done and not blank and "separator" not in flags
    ]
    folder = pages_dir(settings, batch_id)
    pdf_pages = []
    for seq in usable:
        meta = json.loads((folder / f"{seq:04d}.json").read_text(encoding="utf-8"))
        pdf_pages.append(
            PdfPage(
                image=folder / meta["image"],
                dpi=(float(meta["dpi"][0]), float(meta["dpi"][1])),
                text=PageText.from_dict(meta["text"]),
            )
        )
    pdf_path = batch_pdf_path(settings, batch_id)
    digest = None
    if pdf_pages:
        with durable.atomic_path(pdf_path) as tmp:
            build_pdfa(pdf_pages, tmp, title=name)
        digest = durable.sha256_of(pdf_path).sha256
    review_flags = [flags for _, _, _, flags in pages if set(flags) - {"separator"}]
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        batch.pdf_path = str(pdf_path) if pdf_pages else None
        batch.pdf_sha256 = digest
    report = filing.auto_file(settings, batch_id)
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        batch.filing = report
        filing.index_batch(session, batch)  # after filing: only the pages left unfiled are indexed as the batch's
        if not pdf_pages and all(state == PageState.failed for _, state, _, _ in pages):
            batch.state = BatchState.failed
            batch.error_code = batch.error_code or "all_pages_failed"
            batch.error = "Every page failed: " + "; ".join(f"page {p.seq}: {p.error}" for p in batch.pages if p.error)
        else:
            unsettled = review_flags or batch.error or report.get("problems")
            counts_differ = any(entry.get("page_check") for entry in report.get("items", []))
            batch.state = BatchState.needs_review if unsettled or counts_differ else BatchState.done
        batch.finished_at = datetime.now(UTC)
    log.info("batch %s assembled: %d pages in the PDF", batch_id, len(pdf_pages))
    return "assembled"


def assembly_failed_for_good(job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: a batch whose PDF cannot be built is failed with the reason."""
    if job.should_retry:
        return
    settings = build_settings()
    with session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, int(job.args[0]))
        if batch is not None:
            batch.state = BatchState.failed
            batch.error_code = "assembly_failed"
            batch.error = f"The batch PDF could not be built: {exc if exc is not None else 'the worker stopped'}"
