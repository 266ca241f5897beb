"""A processed page's sidecar: the one record of what the page job made, read by assembly and filing.

Written beside the usage image (``spool/<batch>/pages/0001.json``), copied into an item folder when
the page is filed (``pages/<key>.json``), always with a durable write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr_models.base import PageText
from workers.durable import Digest, write_text


@dataclass(frozen=True)
class PageSidecar:
    """``image``: the usage image's file name, in the sidecar's folder; ``dpi``: its resolution (x, y);
    ``text``: the OCR lines with boxes and confidences."""

    image: str
    dpi: tuple[float, float]
    text: PageText

    def image_path(self, sidecar: Path) -> Path:
        return sidecar.parent / self.image

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "dpi": list(self.dpi), "text": self.text.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageSidecar:
        return cls(
            image=str(data["image"]),
            dpi=(float(data["dpi"][0]), float(data["dpi"][1])),
            text=PageText.from_dict(data["text"]),
        )

    def write(self, path: Path) -> Digest:
        """Write it durably; the digest of what was written (for the fixity record)."""
        return write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def read(cls, path: Path) -> PageSidecar:
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
