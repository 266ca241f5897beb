"""Volumes of a disc's size, and the ISO 9660 image of a volume (xorriso, from Debian).

Items are laid on volumes in archival order, whole: an item's PDF is never cut across two discs.
Each volume carries the page, the whole export's catalogue (an item on another volume is listed
with the volume it is on), and the index and texts of its own pages only. What a volume will take is
reckoned before it is written, in 2,048-byte sectors, with room for the file system; an item that
alone does not fit on a volume is left out and named.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from scanner_service.archive.export.site import ExportItem
from scanner_service.exceptions import MissingProgram, ScanstationError

SECTOR = 2048
SITE_BYTES = 1 << 20  # the page's files and the volume's small files, with room to spare
CATALOGUE_BYTES_PER_ITEM = 1_200  # an item's line in every volume's catalogue (measured: 300–700)
TEXT_BYTES_PER_CHAR = 12  # a page's text (3 bytes a character) and its index terms (measured: 5–8)
FILE_SYSTEM_SHARE = 0.03  # ISO 9660 with Joliet and Rock Ridge: directories, path tables, both name sets
ISO_TIMEOUT = 3600


class DiscError(ScanstationError):
    """xorriso failed or did not finish: no image is left under the name asked for."""

    code = "disc_failed"
    exit_code = 16


def sectors(size: int) -> int:
    """Bytes a file of ``size`` takes on a disc."""
    return -(-size // SECTOR) * SECTOR


def item_bytes(item: ExportItem) -> int:
    """What one item adds to its volume: its PDF and description, its pages' text and index terms."""
    chars = sum(len(text) for text in item.texts)
    return sectors(item.pdf_size) + sectors(4096) + chars * TEXT_BYTES_PER_CHAR


def plan_volumes(items: list[ExportItem], volume_size: int | None) -> tuple[list[list[ExportItem]], list[ExportItem]]:
    """The items by volume (each item's ``volume`` set), and the items too big for any volume."""
    if volume_size is None:
        for item in items:
            item.volume = 1
        return ([items] if items else []), []
    fixed = SITE_BYTES + CATALOGUE_BYTES_PER_ITEM * len(items)
    room = int(volume_size * (1 - FILE_SYSTEM_SHARE)) - fixed
    volumes: list[list[ExportItem]] = []
    too_big: list[ExportItem] = []
    used = room  # no volume open yet
    for item in items:
        cost = item_bytes(item)
        if cost > room:
            too_big.append(item)
            continue
        if used + cost > room:
            volumes.append([])
            used = 0
        volumes[-1].append(item)
        used += cost
        item.volume = len(volumes)
    return volumes, too_big


def volume_label(fonds: list[str], made: str, number: int, volumes: int) -> str:
    """An ISO 9660 volume id (at most 32 of A–Z, 0–9 and _): the fonds, the day, the volume."""
    head = "_".join(fonds[:2]) if fonds else "ARCHIVE"
    label = f"{head}_{made}" + (f"_{number}OF{volumes}" if volumes > 1 else "")
    return re.sub(r"[^A-Z0-9_]", "_", label.upper())[:32]


def xorriso() -> str:
    found = shutil.which("xorriso")
    if not found:
        raise MissingProgram("xorriso is not installed: it writes the ISO images (apt-get install xorriso).")
    return found


def make_iso(folder: Path, iso: Path, label: str) -> None:
    """Write ``folder`` as an ISO 9660 image with Joliet (long names) and Rock Ridge, keeping the
    Chinese names (read as UTF-8 whatever the locale); written under a temporary name, then renamed."""
    tmp = iso.with_name(f".{iso.name}.part")
    tmp.unlink(missing_ok=True)
    command = [
        xorriso(),
        "-abort_on", "FAILURE",
        "-in_charset", "UTF-8",
        "-out_charset", "UTF-8",
        "-outdev", str(tmp),
        "-volid", label,
        "-joliet", "on",
        # UTF-16, not UCS-2: a name with a character beyond the BMP (𠮷, common in names) is kept whole.
        "-compliance", "joliet_long_names:joliet_utf16",
        "-rockridge", "on",
        "-map", str(folder), "/",
        "-commit",
    ]  # fmt: skip
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=ISO_TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise DiscError(f"xorriso did not finish {iso.name} within {ISO_TIMEOUT} s.") from None
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        raise DiscError(f"xorriso could not write {iso.name}: {tail}")
    os.replace(tmp, iso)
