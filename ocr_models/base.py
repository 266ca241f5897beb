"""The OCR interface: ``recognise(image) -> PageText`` with line boxes, text and confidences."""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from PIL import Image


def is_cjk(ch: str) -> bool:
    """A wide (CJK) character: no space goes next to it in Chinese text."""
    return unicodedata.east_asian_width(ch) in ("W", "F")


def join_pieces(pieces: list[str]) -> str:
    """Join the words or boxes of one line: nothing next to a Chinese character, one space between Latin words."""
    out = ""
    for piece in pieces:
        if out and not (is_cjk(out[-1]) or is_cjk(piece[0])):
            out += " "
        out += piece
    return out


@dataclass(frozen=True)
class TextLine:
    """One printed line: its text and its box in pixels of the recognised image (origin top left)."""

    text: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    confidence: float  # 0..100


@dataclass
class PageText:
    """What an engine read on one page, in reading order."""

    width: int
    height: int
    lines: list[TextLine] = field(default_factory=list)
    engine: str = ""

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def mean_confidence(self) -> float:
        """Confidence weighted by characters; 0 when nothing was read."""
        total = sum(len(line.text) for line in self.lines)
        if not total:
            return 0.0
        return sum(line.confidence * len(line.text) for line in self.lines) / total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageText:
        lines = [
            TextLine(text=line["text"], box=tuple(line["box"]), confidence=float(line["confidence"]))
            for line in data.get("lines", [])
        ]
        return cls(width=int(data["width"]), height=int(data["height"]), lines=lines, engine=data.get("engine", ""))


class OcrEngine(Protocol):
    """An OCR engine; implementations live in ``ocr_models`` and are chosen by settings."""

    name: str

    def recognise(self, image: Image.Image) -> PageText:
        """Read one upright page image."""
        ...
