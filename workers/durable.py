"""Files that survive a crash, and their digests: the helpers every layer writes and checks files with.

At the bottom of the layers (it imports nothing of the project), so the spool, the archive and the OCR
model registry share one streaming SHA-256 and one atomic write.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of a file, read in 1 MiB pieces: never the whole file in memory."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
