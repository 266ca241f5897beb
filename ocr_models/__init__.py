"""OCR engines behind one interface, and the registry of their models."""

from ocr_models.base import OcrEngine, PageText, TextLine

__all__ = ["OcrEngine", "PageText", "TextLine"]
