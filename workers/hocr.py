"""hOCR (the HTML format of OCR results) of one page, from the engine's line boxes."""

from __future__ import annotations

from html import escape

from ocr_models.base import PageText


def render_hocr(text: PageText, *, title: str, dpi: tuple[float, float], image_name: str) -> str:
    """An hOCR 1.2 document: one ``ocr_page`` with one ``ocr_line`` per line, boxes in image pixels."""
    lines = []
    for n, line in enumerate(text.lines, start=1):
        x0, y0, x1, y1 = line.box
        title = f"bbox {x0} {y0} {x1} {y1}; x_wconf {round(line.confidence)}"
        lines.append(f'   <span class="ocr_line" id="line_{n}" title="{title}">{escape(line.text)}</span>')
    body = "\n".join(lines)
    page_title = (
        f"image {escape(image_name)}; bbox 0 0 {text.width} {text.height}; scan_res {round(dpi[0])} {round(dpi[1])}"
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="zh-CN" lang="zh-CN">
 <head>
  <title>{escape(title)}</title>
  <meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
  <meta name="ocr-system" content="scanstation ({escape(text.engine or "ocr")})"/>
  <meta name="ocr-capabilities" content="ocr_page ocr_line"/>
 </head>
 <body>
  <div class="ocr_page" id="page_1" title="{page_title}">
{body}
  </div>
 </body>
</html>
"""
