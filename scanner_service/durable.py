"""Durable files: the one way the spool and the archive write a file and take its SHA-256.

A file written here is complete or absent, never half-written, even if the machine loses power: it
is written under a temporary name in its own folder, flushed to the disk (fsync), renamed over its
final name, and the folder itself is flushed so the rename survives too. Digests are streamed, so a
file of any size is read in pieces of one MiB.

This module knows nothing of the catalogue or the station: both the spool (intake) and the archive
(filing, fixity) use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

CHUNK = 1 << 20


class Digest(NamedTuple):
    """A file's SHA-256 (hex) and its size in bytes."""

    sha256: str
    size: int


def sha256_of(path: Path) -> Digest:
    """SHA-256 and size of a file, read in one-MiB pieces."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Digest(digest.hexdigest(), size)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the names created, renamed or removed in it) to the disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's content to the disk (for files written by a library that does not)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temporary_name(target: Path) -> Path:
    """A name beside ``target`` that no other writer uses; hidden, and ending in .tmp."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` for a writer that wants a path (PIL, pikepdf, …).

    When the block ends without error the file is flushed, renamed over ``target`` and the folder
    flushed; on error the temporary file is removed and ``target`` is left as it was.
    """
    tmp = temporary_name(target)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)


def write_bytes(target: Path, data: bytes) -> Digest:
    """Write ``data`` to ``target`` atomically and durably; its digest."""
    with atomic_path(target) as tmp, open(tmp, "xb") as handle:
        handle.write(data)
    return Digest(hashlib.sha256(data).hexdigest(), len(data))


def write_text(target: Path, text: str) -> Digest:
    """Write ``text`` (UTF-8) to ``target`` atomically and durably; its digest."""
    return write_bytes(target, text.encode("utf-8"))


def copy_file(source: Path, target: Path) -> Digest:
    """Copy ``source`` to ``target`` atomically and durably, hashing what was written in the same pass."""
    digest = hashlib.sha256()
    size = 0
    with atomic_path(target) as tmp, open(source, "rb") as src, open(tmp, "xb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    return Digest(digest.hexdigest(), size)
