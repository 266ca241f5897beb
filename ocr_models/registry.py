"""The registry of OCR engines: which one, where its models come from, and how to build it."""

from __future__ import annotations

from dataclasses import dataclass

from ocr_models.base import OcrEngine
from scanner_service.exceptions import ConfigError


@dataclass(frozen=True)
class EngineInfo:
    name: str
    models: str  # where the model files come from (a Debian package or a wheel, never a download)
    languages: str
    licence: str


ENGINES: dict[str, EngineInfo] = {
    "tesseract": EngineInfo(
        name="tesseract",
        models="Debian packages tesseract-ocr-chi-sim, tesseract-ocr-eng (tessdata_fast LSTM models)",
        languages="chi_sim+eng",
        licence="Apache-2.0",
    ),
}


def build_engine(name: str, *, languages: str, timeout: float) -> OcrEngine:
    """The engine chosen by settings."""
    if name == "tesseract":
        from ocr_models.tesseract import TesseractEngine

        return TesseractEngine(languages=languages, timeout=timeout)
    raise ConfigError(f"Unknown OCR engine {name!r}; known: {', '.join(ENGINES)}.")
