"""RQ jobs: thin wrappers that load, call a stage, store the outputs and report progress.

A job gets an id; it reads its settings from the worker's environment. A job may run twice (after a
worker died); every output is written atomically to a fixed path, so a second run is harmless.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from rq import get_current_job
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ocr_models.registry import build_engine
from scanner_service.archive import corrections, filing, previews
from scanner_service.archive.batches import FINAL, claim_assembly, in_order, no_decision, usable
from scanner_service.archive.corrections.batch import settled_state
from scanner_service.archive.db import session_scope
from scanner_service.archive.events import record_page_finished, record_stage
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Batch, BatchState, Page, PageState
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.exceptions import ConfigError, PageFailed, ScanstationError, TransientError, UnusableInput
from scanner_service.settings import Settings, build_settings
from scanner_service.station import intake
from scanner_service.station import queue as q
from workers.durable import atomic_path, fsync_file, sha256_of
from workers.pdfa import PdfPage, build_pdfa
from workers.pipeline import PageFlag, process_page_image, save_usage_image

log = logging.getLogger(__name__)


MAX_RUNS = 5  # derivations of one page in one job, while newer corrections keep arriving


def process_page(page_id: int) -> str:
    """Run one page through the stages and store its usage image and text.

    A page a person corrected is derived again with their choices (:func:`choices_of`). If a newer
    correction arrives while the page is being derived (its ``version`` changed), the result is not
    stored: the page is derived again with the newer choices.
    """
    settings = build_settings()
    outcome = STALE
    for _ in range(MAX_RUNS):
        outcome = _derive_page(settings, page_id)
        # A correction committed after our result (while this job still ran, so it queued no job of
        # its own) left the page queued: it is derived again here, not left waiting.
        if outcome == STALE or (
            outcome in ("done", "failed") and _queued_again(settings.effective_database_url, page_id)
        ):
            continue
        return outcome
    raise TransientError(f"Page {page_id} was corrected {MAX_RUNS} times while being processed; it is tried again.")


STALE = "stale"
PAGE_META = "page"  # a page job's meta: [page id, version] its last derivation read


def _queued_again(url: str, page_id: int) -> bool:
    with session_scope(url) as session:
        return session.scalar(select(Page.state).where(Page.id == page_id)) == PageState.queued


def _derive_page(settings: Settings, page_id: int) -> str:
    """One derivation of the page; STALE if a newer correction came meanwhile (nothing stored)."""
    url = settings.effective_database_url
    with session_scope(url) as session:
        page = session.get(Page, page_id)
        if page is None:
            return "gone"
        if page.state in FINAL:
            return page.state.value
        batch = page.batch
        if batch.state == BatchState.discarded:
            return "discarded"
        page.state = PageState.processing
        page.attempts += 1
        if batch.state == BatchState.queued:
            batch.state = BatchState.processing
        original = page.original
        held: UnusableInput | None = None
        if original.quarantined:  # an earlier run set it aside and stopped before finishing the page
            held = UnusableInput(
                original.error or "The file was set aside.", reason_code=original.error_code or "unusable"
            )
        else:  # an earlier run moved it to quarantine but stopped before writing that down: check it again
            intake.bring_back(settings, batch, original)
        source = Layout.of(settings).original(batch.id, original.stored_name)
        index, seq, batch_id, version = page.source_index, page.seq, batch.id, page.version
        correction = dict(page.correction or {})
        choices = corrections.choices_of(page.decision, correction)
        if choices is not None and choices.none:  # only the engine was chosen: the station decides the rest
            choices = None
        engine_name = correction.get("engine") or settings.ocr_engine
    job = get_current_job()
    if job is not None:  # what this derivation read, for page_failed_for_good
        job.meta[PAGE_META] = [page_id, version]
        job.save_meta()
    if held is not None:
        return "failed" if _finish_page(settings, page_id, failed=held, seen=version) else STALE
    with session_scope(url) as session:
        record_stage(session, page_id, "ocr")
    if job is not None:
        job.meta["stage"] = "ocr"
        job.save_meta()
    try:
        engine = build_engine(
            engine_name, languages=settings.ocr_languages, timeout=settings.page_timeout, runtime=settings.ocr_runtime
        )
        outcome = process_page_image(
            source,
            index,
            engine=engine,
            max_pixels=settings.max_pixels,
            render_dpi=settings.render_dpi,
            min_confidence=settings.min_confidence,
            choices=choices,
        )
    except UnusableInput as err:
        # The file passed intake's header check but cannot be decoded (a PNG corrupt inside): retrying
        # cannot help. The page fails for good, the original goes to quarantine, the others go on.
        _set_aside_original(settings, page_id, err)
        return "failed" if _finish_page(settings, page_id, failed=err, seen=version) else STALE
    except PageFailed as err:
        return "failed" if _finish_page(settings, page_id, failed=err, seen=version) else STALE
    except ConfigError as err:
        if err.reason_code != "bad_crop":
            raise
        # A person's crop with nothing of the page in it: the same crop fails again, retrying cannot help.
        return "failed" if _finish_page(settings, page_id, failed=err, seen=version) else STALE
    if _is_stale(url, page_id, version):
        return STALE
    layout = Layout.of(settings)
    sidecar = layout.sidecar(batch_id, seq)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    image_path = save_usage_image(outcome.image, sidecar.with_suffix(""), jpeg_quality=settings.jpeg_quality)
    fsync_file(image_path)
    PageSidecar(image=image_path.name, dpi=outcome.dpi, text=outcome.text).write(sidecar)
    previews.keep_thumbnail(settings, batch_id, seq, version, image_path, outcome.image)  # the grid's, ahead
    result = {
        "blank": outcome.blank,
        "flags": [flag.value for flag in outcome.flags],
        "details": outcome.details,
        "confidence": round(outcome.text.mean_confidence, 2) if outcome.text.lines else None,
        "dpi": max(outcome.dpi),
        "text": outcome.text.text,
        "error": None,
        "error_code": None,
    }
    with session_scope(url) as session:
        if not _store(session, page_id, version, {**result, "state": PageState.done}):
            return STALE  # the files are written again by the next derivation, before the page is final
        record_page_finished(session, page_id)
        if choices is None:  # the station's own decision, what undo goes back to: set once, by the worker
            decision = {k: result[k] for k in ("blank", "flags", "details", "confidence")}
            session.execute(
                update(Page)
                .where(Page.id == page_id, no_decision())
                .values(decision=decision)
                .execution_options(synchronize_session=False)
            )
    _queue_assembly_if_last(settings, batch_id)
    return "done"


def _store(session: Session, page_id: int, seen: int, values: dict[str, Any], *, open_only: bool = False) -> bool:
    """Write a derivation's outcome (with its final state) only if no correction came since it started
    (the page is still at version ``seen``; ``open_only``: and still queued or processing): one
    statement, so a correction is never overwritten."""
    where = [Page.id == page_id, Page.version == seen]
    if open_only:
        where.append(Page.state.in_([PageState.queued, PageState.processing]))
    result = session.execute(update(Page).where(*where).values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]


def _is_stale(url: str, page_id: int, version: int) -> bool:
    with session_scope(url) as session:
        page = session.get(Page, page_id)
        return page is not None and page.version != version


def _set_aside_original(settings: Settings, page_id: int, err: UnusableInput) -> None:
    """Quarantine the original of a page that cannot be decoded, with its reason, if no other page needs it.

    A multi-page TIFF or PDF with one bad page stays with the batch: its other pages are read (and filed)
    from it. The page's own error says what is wrong either way.
    """
    with session_scope(settings.effective_database_url) as session:
        page = session.get(Page, page_id)
        if page is None:
            return
        original = page.original
        others = session.scalar(select(func.count()).where(Page.original_id == original.id, Page.id != page.id))
        if not others:
            intake.set_aside_original(settings, page.batch, original, err)


def _finish_page(
    settings: Settings, page_id: int, *, failed: ScanstationError, seen: int | None = None, open_only: bool = False
) -> bool:
    """Mark a page failed with its reason (only if still at version ``seen``, when given; ``open_only``:
    and still queued or processing), then queue the batch's assembly if this was its last open page.
    False if a newer correction came meanwhile (or, ``open_only``, the page is final already)."""
    url = settings.effective_database_url
    with session_scope(url) as session:
        page = session.get(Page, page_id)
        if page is None:
            return True
        flags = list(page.flags or [])
        values = {
            "state": PageState.failed,
            "error": failed.message,
            "error_code": failed.reason_code,
            "flags": flags if PageFlag.failed in flags else [*flags, PageFlag.failed.value],
        }
        if not _store(session, page_id, page.version if seen is None else seen, values, open_only=open_only):
            return False
        record_page_finished(session, page_id)
        batch_id = page.batch_id
    _queue_assembly_if_last(settings, batch_id)
    return True


def _queue_assembly_if_last(settings: Settings, batch_id: int) -> None:
    # A separate transaction: by now every other page's final state is committed or will see ours.
    if claim_assembly(settings.effective_database_url, batch_id):
        job = get_current_job()
        # Inside a job, reuse the worker's connection rather than open one per page.
        connection = job.connection if job is not None else q.connect(settings)
        q.enqueue_assembly(q.get_queue(connection), settings, batch_id)


def page_failed_for_good(job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: when a page job has no retries left, the page is failed with its reason, only
    if still queued or processing at the version the job's last derivation read (else at the version
    now): a page corrected since is left to its newer derivation."""
    if job.should_retry:
        return
    page_id = int(job.args[0])
    read = job.get_meta().get(PAGE_META)
    seen = int(read[1]) if read and int(read[0]) == page_id else None
    if isinstance(exc, ScanstationError):
        err = exc
    elif exc is None or exc_type is None:
        err = TransientError("The worker stopped while working on this page, too many times.")
    else:
        err = TransientError(f"Processing failed after retries: {exc_type.__name__}: {exc}")
    _finish_page(build_settings(), page_id, failed=err, seen=seen, open_only=True)


def assemble_batch(batch_id: int) -> str:
    """Build the batch's searchable PDF/A from its finished pages, in the order a person chose (blank
    and excluded pages left out), file it if nothing is left for a person to look at, settle its state.

    A correction made while this ran (a page's version, place or state changed) is not lost: once
    every page is final again, the batch is assembled again.
    """
    settings = build_settings()
    outcome = "gone"
    for _ in range(MAX_RUNS):
        outcome, seen = _assemble_once(settings, batch_id)
        if seen is None:
            return outcome
        with session_scope(settings.effective_database_url) as session:
            batch = session.get(Batch, batch_id)
            # Changed meanwhile: assembled again here, unless the change claimed the next assembly itself
            # (its request queued it, else the watcher does) or a page of it is derived again.
            if (
                batch is None
                or _fingerprint(batch) == seen
                or batch.assembly_queued
                or not all(p.state in FINAL for p in batch.pages)
            ):
                return outcome
        log.info("batch %s changed while it was assembled; assembling it again", batch_id)
    return outcome


def _fingerprint(batch: Batch) -> list[tuple[int, int, int | None, str]]:
    return [(p.seq, p.version, p.position, p.state.value) for p in batch.pages]


PERSON_KEYS = ("reviewed", "by_hand")  # what people write in a batch's filing report (accept, filing by hand)


def _persons(report: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (report or {}).items() if k in PERSON_KEYS}


def _assemble_once(settings: Settings, batch_id: int) -> tuple[str, list[tuple[int, int, int | None, str]] | None]:
    """One assembly; the pages' fingerprint it was made from (None if there was nothing to assemble)."""
    url = settings.effective_database_url
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return "gone", None
        if batch.state == BatchState.discarded:
            return "discarded", None
        seen = _fingerprint(batch)
        persons = _persons(batch.filing)
        ordered = in_order(batch.pages)
        seqs = [p.seq for p in ordered if usable(p)]
        all_failed = all(p.state == PageState.failed for p in batch.pages)
        waiting = any(corrections.open_flags(p.flags or [], p.correction or {}) for p in batch.pages)
        name = batch.name
    layout = Layout.of(settings)
    pdf_pages = []
    for seq in seqs:
        path = layout.sidecar(batch_id, seq)
        sidecar = PageSidecar.read(path)
        pdf_pages.append(PdfPage(image=sidecar.image_path(path), dpi=sidecar.dpi, text=sidecar.text))
    pdf_path = layout.batch_pdf(batch_id)
    digest = None
    if pdf_pages:
        with atomic_path(pdf_path) as tmp:
            build_pdfa(pdf_pages, tmp, title=name)
        digest = sha256_of(pdf_path).sha256
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        batch.pdf_path = str(pdf_path) if pdf_pages else None
        batch.pdf_sha256 = digest
    # A batch with flags still open is not filed by itself: its filing is proposed, and made once a
    # person corrected or accepted every flag (the next assembly, which each correction queues).
    report = filing.auto_file(settings, batch_id, propose_only=waiting)
    with session_scope(url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        if batch.state == BatchState.discarded:  # discarded meanwhile: it stays so, and out of search
            batch.assembly_queued = False
            return "discarded", None
        # What people wrote meanwhile (an accept) is the row's, not the copy auto_file read at its start.
        fresh = _persons(batch.filing)
        changed = fresh != persons or _fingerprint(batch) != seen
        batch.filing = {**{k: v for k, v in report.items() if k not in PERSON_KEYS}, **fresh}
        filing.index_batch(session, batch)  # after filing: only the pages left unfiled are indexed as the batch's
        if not pdf_pages and all_failed:
            batch.state = BatchState.failed
            batch.error_code = batch.error_code or "all_pages_failed"
            batch.error = "Every page failed: " + "; ".join(f"page {p.seq}: {p.error}" for p in batch.pages if p.error)
        elif all(p.state in FINAL for p in batch.pages):  # else a page corrected meanwhile is derived again
            batch.state = settled_state(batch)
        batch.finished_at = datetime.now(UTC)
        if not changed:  # the claim is spent: set again only when an assembly is due again
            batch.assembly_queued = False  # (a change made meanwhile cleared it, and may have claimed the next)
    log.info("batch %s assembled: %d pages in the PDF", batch_id, len(pdf_pages))
    return "assembled", seen


def assembly_failed_for_good(job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: a batch whose PDF cannot be built is failed with the reason."""
    if job.should_retry:
        return
    settings = build_settings()
    with session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, int(job.args[0]))
        if batch is not None:
            batch.state = BatchState.failed
            batch.assembly_queued = False  # not retried by the watcher: a person reruns or discards it
            batch.error_code = "assembly_failed"
            batch.error = f"The batch PDF could not be built: {exc if exc is not None else 'the worker stopped'}"


ITEM_PAGES_META = "pages"  # the job's meta: [[row id, version], …] of the pages its last round took


def derive_item_pages(item_id: int) -> str:
    """Derive a filed item's queued pages again from their masters, with the people's corrections
    (:func:`scanner_service.archive.corrections.item.derive_pending`): one journaled change of the item.
    The pages each round takes are kept in the job's meta, for :func:`item_pages_failed_for_good`."""
    from scanner_service.archive.corrections.item import PageTag, derive_pending

    job = get_current_job()

    def reading(pages: list[PageTag]) -> None:
        if job is not None:
            job.meta[ITEM_PAGES_META] = [[p.row_id, p.version] for p in pages]
            job.save_meta()

    return derive_pending(build_settings(), item_id, reading=reading)


def item_pages_failed_for_good(job: Any, connection: Any, exc_type: Any, exc: Any, tb: Any) -> None:
    """RQ failure callback: when the derivation job of an item has no retries left, the pages it was
    deriving say so (state failed, with the reason), each only if still queued at the version the job
    read: a page corrected since is left queued for its newer derivation. A job that failed before it
    read any page fails every page of the item still queued now (else the watcher queues it again for
    ever). A correction of a failed page (a rerun, an undo) queues it again."""
    if job.should_retry:
        return
    from scanner_service.archive.corrections.item import PageTag, fail_pending, queued_pages

    settings = build_settings()
    reason = f"{exc_type.__name__}: {exc}" if exc_type is not None else "the worker stopped while deriving it"
    read = job.get_meta().get(ITEM_PAGES_META)
    if read is None:
        pages = queued_pages(settings, int(job.args[0]))
    else:
        pages = [PageTag(int(row_id), int(version)) for row_id, version in read]
    fail_pending(settings, pages, f"The page could not be derived again: {reason}")
