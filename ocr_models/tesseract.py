"""Tesseract through pytesseract: line boxes, text and confidences from ``image_to_data``."""

from __future__ import annotations

import os
import subprocess

import pytesseract
from PIL import Image

from ocr_models.base import PageText, TextLine, join_pieces
from workers.errors import TransientError
from workers.exec.tesseract import single_thread_env


class TesseractEngine:
    """``chi_sim+eng`` by default, one OpenMP thread, a time limit per page."""

    name = "tesseract"

    def __init__(self, languages: str = "chi_sim+eng", psm: int = 3, timeout: float = 300) -> None:
        self.languages = languages
        self.psm = psm
        self.timeout = timeout
        single_thread_env()
        pytesseract.pytesseract.tesseract_cmd = os.environ.get("SCANSTATION_TESSERACT", "tesseract")

    def recognise(self, image: Image.Image) -> PageText:
        """Read one upright page; raises TransientError when Tesseract crashes or runs out of time."""
        try:
            data = pytesseract.image_to_data(
                image,
                lang=self.languages,
                config=f"--oem 1 --psm {self.psm} -c preserve_interword_spaces=1",
                output_type=pytesseract.Output.DICT,
                timeout=self.timeout,
            )
        except (pytesseract.TesseractError, subprocess.SubprocessError, OSError) as err:
            raise TransientError(f"Tesseract failed on this page: {err}") from err
        except RuntimeError as err:  # pytesseract signals its timeout as RuntimeError
            raise TransientError(f"Tesseract took longer than {self.timeout:.0f} s on this page.") from err
        lines: dict[tuple[int, int, int], list[int]] = {}
        for i, word in enumerate(data["text"]):
            if word and word.strip() and float(data["conf"][i]) >= 0:
                key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
                lines.setdefault(key, []).append(i)
        result = PageText(width=image.width, height=image.height, engine=self.name)
        for idx in lines.values():
            words = [data["text"][i].strip() for i in idx]
            x0 = min(data["left"][i] for i in idx)
            y0 = min(data["top"][i] for i in idx)
            x1 = max(data["left"][i] + data["width"][i] for i in idx)
            y1 = max(data["top"][i] + data["height"][i] for i in idx)
            chars = [len(w) for w in words]
            conf = sum(float(data["conf"][i]) * n for i, n in zip(idx, chars, strict=True)) / sum(chars)
            result.lines.append(TextLine(text=join_pieces(words), box=(x0, y0, x1, y1), confidence=conf))
        return result
