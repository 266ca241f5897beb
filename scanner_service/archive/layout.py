"""Where everything lives under the data folder: one object for the spool, the quarantine and the archive.

::

    data/
      spool/<batch id>/originals/   the batch's files as scanned, moved out of the inbox (masters)
      spool/<batch id>/incoming/    a batch being moved in (renamed to originals/ when complete)
      spool/<batch id>/pages/       per page: usage image + sidecar (0001.json: image, dpi, OCR lines)
      spool/<batch id>/batch.pdf    the batch's searchable PDF/A
      quarantine/<id>-<name>/       files the station could not use, each with a .reason.txt
      archive/<fonds>/<category>/<year>/<档号>/   filed items (see scanner_service.archive.filing)
      catalogue.sqlite3, redis/     the catalogue (unless PostgreSQL) and the station's own Redis

Original names are stored in the catalogue as they were, or as ``hex:`` + their bytes when they are not
valid UTF-8 (:func:`storable_name`); :func:`stored_path` turns a stored name back into the real path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from scanner_service.settings import Settings

HEX_PREFIX = "hex:"


def name_is_valid(name: str) -> bool:
    """Whether a name (as the OS gave it, surrogate escapes and all) is valid UTF-8 text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable_name(rel: str) -> str:
    """A relative path the catalogue can hold: as is, or its bytes in hex when they are not UTF-8."""
    return rel if name_is_valid(rel) else HEX_PREFIX + os.fsencode(rel).hex()


def stored_path(folder: Path, stored_name: str) -> Path:
    """The real path of an original recorded with :func:`storable_name`."""
    if stored_name.startswith(HEX_PREFIX):
        return folder / os.fsdecode(bytes.fromhex(stored_name[len(HEX_PREFIX) :]))
    return folder / stored_name


@dataclass(frozen=True)
class Layout:
    """The paths of one station's data folder. Every layer above imaging finds its files through this."""

    data: Path

    @classmethod
    def of(cls, settings: Settings) -> Layout:
        return cls(settings.data)

    @property
    def spool(self) -> Path:
        return self.data / "spool"

    @property
    def quarantine(self) -> Path:
        return self.data / "quarantine"

    @property
    def archive(self) -> Path:
        return self.data / "archive"

    def batch_dir(self, batch_id: int) -> Path:
        return self.spool / str(batch_id)

    def originals_dir(self, batch_id: int) -> Path:
        return self.batch_dir(batch_id) / "originals"

    def incoming_dir(self, batch_id: int) -> Path:
        return self.batch_dir(batch_id) / "incoming"

    def original(self, batch_id: int, stored_name: str) -> Path:
        """An original of the batch, by the name the catalogue stores for it."""
        return stored_path(self.originals_dir(batch_id), stored_name)

    def pages_dir(self, batch_id: int) -> Path:
        return self.batch_dir(batch_id) / "pages"

    def sidecar(self, batch_id: int, seq: int) -> Path:
        """The sidecar of a processed page (:class:`~scanner_service.archive.sidecar.PageSidecar`)."""
        return self.pages_dir(batch_id) / f"{seq:04d}.json"

    def batch_pdf(self, batch_id: int) -> Path:
        return self.batch_dir(batch_id) / "batch.pdf"

    def item_dir(self, folder: str) -> Path:
        """An item's folder, from ``Item.folder`` (relative to the archive)."""
        return self.archive / folder
