"""Pictures of a batch's pages for the review screen: the master as scanned and the processed page (its
usage image), as JPEG or PNG a browser shows, scaled down on request (thumbnails).

The master is read with the pipeline's own loader (``workers.stages.load.load_page``: a TIFF frame, a PDF
page, an orientation tag), so a person sees the page exactly as the station read it. Usage images of
text pages are bilevel TIFF (CCITT G4), which no browser shows: they become PNG. Each picture made is
kept in the batch's spool folder (``previews/``), named by what it shows (the master's SHA-256, the
page's version and its usage image's time), so the grid of a 500-page batch opened again reads files
instead of decoding scans; a spool that cannot be written only means nothing is kept.

The grid's thumbnail of a processed page (``THUMB_WIDTH`` wide) is kept by the worker as it finishes the
page (:func:`keep_thumbnail`), from the image it has in memory: a batch opened for the first time is
drawn from files too, not from hundreds of usage images decoded while a person waits.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Batch, BatchState, Page, PageState
from scanner_service.archive.sidecar import PageSidecar
from scanner_service.exceptions import Conflict, NotFound, StorageError
from scanner_service.settings import Settings
from workers.errors import UnusableInput
from workers.preview import scaled_jpeg
from workers.stages.load import load_page

View = Literal["master", "processed"]
THUMB_RENDER_DPI = 150  # a PDF page drawn for a small picture needs no more
THUMB_WIDTH = 240  # the review grid's thumbnails (batch.js THUMB_WIDTH): sharp in a ~120 px cell on a 2x screen
_SENT_AS_IS = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


@dataclass(frozen=True)
class PagePicture:
    """A picture of one page, known before it is made: ``etag`` answers If-None-Match without decoding."""

    etag: str
    source: Path
    cached: Path  # without its suffix: .jpg or .png is added as the picture is made
    view: View
    width: int | None
    page_index: int
    settings: Settings
    where: str = "This page"  # "Page 3 of batch 12", for the errors
    key: str = ""  # what the picture shows (version and file), the end of its cached name

    @property
    def _family(self) -> str:
        # The cached name is "<seq>-<view>-<size>-<key>": the pictures of this page and view, every size.
        seq, view = self.cached.name.split("-", 2)[:2]
        return f"{seq}-{view}-"

    def read(self) -> tuple[bytes, str]:
        """The picture's bytes and media type: from the cache, the file itself, or made now."""
        for suffix, media in ((".jpg", "image/jpeg"), (".png", "image/png")):
            path = self.cached.with_suffix(suffix)
            if path.exists():
                return path.read_bytes(), media
        if self.width is None:  # the whole page, in a format the browser shows: sent as it is
            with self.source.open("rb") as fp:
                head = fp.read(8)
            as_is = next((m for magic, m in _SENT_AS_IS.items() if head.startswith(magic)), None)
            if as_is is not None:
                return self.source.read_bytes(), as_is
        return self.keep(self._image())

    def keep(self, image: Image.Image) -> tuple[bytes, str]:
        """Make the picture from ``image`` (what ``source`` holds, decoded) and keep it; its bytes and type."""
        data, suffix, media = _encode(image, self.width)
        if _keep(self.cached.with_suffix(suffix), data):
            self._forget_older()
        return data, media

    def _forget_older(self) -> None:
        """Remove the pictures of this page and view that show what it was before (an older version, a
        usage image since made again): never asked for again, they would only fill the spool."""
        try:
            for old in self.cached.parent.glob(f"{self._family}*"):
                if not old.stem.endswith(f"-{self.key}") and not old.name.endswith(".tmp"):
                    old.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only spool: nothing was kept either

    def _image(self) -> Image.Image:
        # Both views are decoded by the pipeline's loader, within its limit (SCANSTATION_MAX_PIXELS): a file
        # in the spool is no more trusted here than in the pipeline, and a damaged one is said, not a 500.
        if self.view == "processed":
            try:
                return load_page(self.source, 0, max_pixels=self.settings.max_pixels).image
            except FileNotFoundError as err:  # derived again meanwhile, under another name
                raise Conflict(
                    "The processed image of this page is being made again; ask once it is done.",
                    reason_code="page_not_ready",
                ) from err
            except UnusableInput as err:
                if err.reason_code == "too_large":
                    raise Conflict(f"The processed page cannot be shown: {err}", reason_code="too_large") from err
                raise StorageError(
                    f"{self.where}: its processed image {self.source.name} cannot be read ({err}); "
                    "run 'scanstation audit', or read the page again (rerun).",
                    reason_code="damaged_file",
                ) from err
        render = min(self.settings.render_dpi, THUMB_RENDER_DPI) if self.width else self.settings.render_dpi
        try:
            return load_page(self.source, self.page_index, max_pixels=self.settings.max_pixels, render_dpi=render).image
        except (UnusableInput, IndexError) as err:
            raise Conflict(
                f"The original of this page cannot be shown: {err}", reason_code="original_unreadable"
            ) from err


def page_picture(settings: Settings, batch: Batch, page: Page, view: View, width: int | None) -> PagePicture:
    """The picture of ``page`` as ``view`` shows it, ``width`` pixels wide at most (None: as it is).

    404 when the file is not there; 409 with a reason when the page has no such picture now:
    ``page_not_ready`` (not processed yet, or being derived again), ``page_failed``, ``original_set_aside``,
    ``discarded`` (the batch was discarded: its pages are shown no more, see :func:`forget`).
    """
    layout = Layout.of(settings)
    where = _where(batch.id, page.seq)
    if batch.state == BatchState.discarded:
        raise Conflict(
            f"Batch {batch.id} was discarded ({batch.error}): its pages are shown no more; its originals are in "
            "quarantine.",
            reason_code="discarded",
        )
    if view == "processed":
        if page.state == PageState.failed:
            raise Conflict(f"{where} failed; it has no processed image ({page.error}).", reason_code="page_failed")
        if page.state != PageState.done:
            raise Conflict(
                f"{where} is {page.state.value}: its processed image comes when it is done.",
                reason_code="page_not_ready",
            )
        sidecar = layout.sidecar(batch.id, page.seq)
        try:
            source = PageSidecar.read(sidecar).image_path(sidecar)
            key = _processed_key(page.version, source)
        except (OSError, ValueError, KeyError) as err:
            raise NotFound(f"{where} has no processed image in the spool.") from err
    else:
        original = page.original
        if original.quarantined:
            raise Conflict(
                f"{where}: its file {original.name} was set aside in quarantine ({original.error}).",
                reason_code="original_set_aside",
            )
        source = layout.original(batch.id, original.stored_name)
        if not source.is_file():
            raise NotFound(f"{where}: its file {original.name} is not in the spool.")
        key = f"m{original.sha256[:16]}-{page.source_index}"
    return _picture(settings, batch.id, page.seq, view, width, key, source, page.source_index)


def keep_thumbnail(
    settings: Settings, batch_id: int, seq: int, version: int, usage_image: Path, image: Image.Image
) -> None:
    """Keep the grid's thumbnail of a page just processed: ``image`` is what the worker wrote to
    ``usage_image`` for the page at ``version``. Named as :func:`page_picture` names it, so the grid's first
    request reads it; a page derived again meanwhile has another name, and its thumbnail is made on request.
    A spool that cannot be written keeps nothing (the picture is made when asked for)."""
    try:
        key = _processed_key(version, usage_image)
    except OSError:
        return
    _picture(settings, batch_id, seq, "processed", THUMB_WIDTH, key, usage_image, 0).keep(image)


def _processed_key(version: int, usage_image: Path) -> str:
    # The page's version and its usage image's time: a correction or a new derivation names another picture.
    return f"p{version}-{usage_image.stat().st_mtime_ns:x}"


def _picture(
    settings: Settings,
    batch_id: int,
    seq: int,
    view: View,
    width: int | None,
    key: str,
    source: Path,
    page_index: int,
) -> PagePicture:
    size = f"w{width}" if width else "full"
    cached = _previews_dir(Layout.of(settings), batch_id) / f"{seq:04d}-{view}-{size}-{key}"
    etag = f'"{seq}-{view}-{size}-{key}"'
    return PagePicture(etag, source, cached, view, width, page_index, settings, _where(batch_id, seq), key)


def _where(batch_id: int, seq: int) -> str:
    return f"Page {seq} of batch {batch_id}"  # what the errors name


def forget(settings: Settings, batch_id: int) -> None:
    """Remove every picture kept for a batch (it was discarded): none is asked for again."""
    shutil.rmtree(_previews_dir(Layout.of(settings), batch_id), ignore_errors=True)


def _previews_dir(layout: Layout, batch_id: int) -> Path:
    return layout.batch_dir(batch_id) / "previews"


def _encode(image: Image.Image, width: int | None) -> tuple[bytes, str, str]:
    """JPEG for pictures scaled down and for grey or colour pages; PNG for a bilevel page at full size."""
    if image.mode == "1" and width is None:
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue(), ".png", "image/png"
    return scaled_jpeg(image, width, quality=80 if width else 90), ".jpg", "image/jpeg"


def _keep(path: Path, data: bytes) -> bool:
    # Not flushed to disk: a picture lost in a crash is made again (a rename keeps a half-written one out).
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full or read-only spool: the picture is made again next time
        return False
    return True
