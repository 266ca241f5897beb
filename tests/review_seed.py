"""A large processed batch for the review screen's tests, written the way the station leaves one (catalogue
rows, the master in the spool, a sidecar, a usage image and the grid's thumbnail per page), without OCR-ing
hundreds of pages."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from PIL import Image

from ocr_models.base import PageText
from scanner_service.archive import previews
from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Batch, BatchState, Original, Page, PageState
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.settings import Settings
from tests.conftest import SAMPLE

FLAGGED_EVERY = 97  # a few flagged pages, as a real run has


def seed_processed_batch(settings: Settings, name: str, pages: int, work: Path) -> int:
    """A batch of ``pages`` processed pages (every ``FLAGGED_EVERY``-th flagged blank), in needs_review; its id."""
    work.mkdir(parents=True, exist_ok=True)
    master, usage = work / "master.jpg", work / "usage.jpg"
    with Image.open(SAMPLE / "scan_0003.jpg") as im:
        small = im.convert("L")
    small.thumbnail((620, 877))
    small.save(master, "JPEG", quality=70, dpi=(75, 75))
    small.save(usage, "JPEG", quality=70, dpi=(75, 75))
    layout = Layout.of(settings)
    flagged = {seq for seq in range(1, pages + 1) if seq % FLAGGED_EVERY == 0}
    with session_scope(settings.effective_database_url) as session:
        batch = Batch(name=name, state=BatchState.needs_review, source=str(work), is_folder=True, filing={})
        session.add(batch)
        session.flush()
        data = master.read_bytes()
        original = Original(
            batch_id=batch.id,
            seq=1,
            name="master.jpg",
            stored_name="master.jpg",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        session.add(original)
        session.flush()
        for seq in range(1, pages + 1):
            flags = ["blank"] if seq in flagged else []
            details = {"turn": 0, "skew_deg": 0.0, "usage": "jpeg"}
            decision = {"blank": bool(flags), "flags": flags, "details": details, "confidence": 95.0}
            session.add(
                Page(
                    batch_id=batch.id,
                    original_id=original.id,
                    seq=seq,
                    source_index=0,
                    state=PageState.done,
                    attempts=1,
                    blank=bool(flags),
                    flags=flags,
                    details=details,
                    confidence=95.0,
                    dpi=300.0,
                    text="",
                    decision=decision,
                    correction={},
                )
            )
        batch_id = batch.id
    originals = layout.originals_dir(batch_id)
    originals.mkdir(parents=True)
    shutil.copy(master, originals / "master.jpg")
    pages_dir = layout.pages_dir(batch_id)
    pages_dir.mkdir(parents=True)
    text = PageText(width=small.width, height=small.height)
    for seq in range(1, pages + 1):
        sidecar = layout.sidecar(batch_id, seq)
        shutil.copy(usage, sidecar.with_suffix(".jpg"))
        PageSidecar(image=sidecar.with_suffix(".jpg").name, dpi=(75.0, 75.0), text=text).write(sidecar)
        previews.keep_thumbnail(settings, batch_id, seq, 1, sidecar.with_suffix(".jpg"), small)  # as the worker does
    return batch_id
