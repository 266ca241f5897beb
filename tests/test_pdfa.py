"""workers.pdfa: a searchable PDF/A-2b, checked with the tools a user or an archivist would use."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pikepdf
import pytest
from PIL import Image, ImageDraw, ImageFont

from ocr_models.base import PageText, TextLine
from scanner_service.exceptions import ScanstationError, UnusableInput
from workers.pdfa import PdfPage, build_pdfa

CJK_FONTS = [
    Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
]
CJK_FONT = next((p for p in CJK_FONTS if p.exists()), None)
TOOLS = ("pdftotext", "pdfinfo", "pdffonts", "qpdf", "gs")

pytestmark = [
    pytest.mark.skipif(CJK_FONT is None, reason="fonts-noto-cjk not installed"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS), reason="poppler, qpdf or gs missing"),
]

PAGE1_LINES = ["乡镇档案室文书档案", "经办人王强同意办理", "Village archive, box 42", "二〇二三年三月五日"]
PAGE2_LINES = ["第二页：审核意见", "审核人李四"]


@dataclass
class Built:
    pdf: Path
    pages: list[PdfPage]


def _render(lines: list[str], size: tuple[int, int], font_px: int) -> tuple[Image.Image, PageText]:
    """A grey page with the lines drawn on it, and the OCR result an ideal engine would return."""
    # Index 2 of the Noto CJK collections is the Simplified Chinese face.
    font = ImageFont.truetype(str(CJK_FONT), font_px, index=2)
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    found = []
    y = font_px * 2
    for text in lines:
        draw.text((font_px * 2, y), text, font=font, fill=0)
        x0, y0, x1, y1 = (round(v) for v in draw.textbbox((font_px * 2, y), text, font=font))
        found.append(TextLine(text, (x0, y0, x1, y1), 95.0))
        y += font_px * 2
    return image, PageText(width=size[0], height=size[1], lines=found, engine="test")


def _run(*args: str | Path) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp = tmp_path_factory.mktemp("pdfa")
    grey, text1 = _render(PAGE1_LINES, (2480, 1754), 50)  # A5 landscape at 300 dpi
    grey.save(tmp / "p1.jpg", quality=90, dpi=(300, 300))
    bw, text2 = _render(PAGE2_LINES, (1654, 1169), 36)  # A5 landscape at 200 dpi
    bw.point(lambda v: 255 if v > 128 else 0, mode="1").save(tmp / "p2.tif", compression="group4")
    pages = [PdfPage(tmp / "p1.jpg", (300.0, 300.0), text1), PdfPage(tmp / "p2.tif", (200.0, 200.0), text2)]
    out = tmp / "out.pdf"
    build_pdfa(pages, out, title="测试卷 2023-001")
    return Built(out, pages)


def test_pdftotext_gives_each_line_whole_and_in_order(built: Built) -> None:
    pages = _run("pdftotext", "-enc", "UTF-8", built.pdf, "-").split("\f")
    got = [[line for line in page.splitlines() if line.strip()] for page in pages[:2]]
    # Exact lines: no space slipped between Chinese characters, none lost, pages and lines in order.
    assert got == [PAGE1_LINES, PAGE2_LINES]


def test_page_size_is_pixels_over_dpi(built: Built) -> None:
    info = _run("pdfinfo", "-f", "1", "-l", "2", built.pdf)
    sizes = [float(v) for m in re.findall(r"Page\s+\d+ size:\s+([\d.]+) x ([\d.]+) pts", info) for v in m]
    expected: list[float] = []
    for page in built.pages:
        with Image.open(page.image) as im:
            expected += [im.width / page.dpi[0] * 72, im.height / page.dpi[1] * 72]
    assert sizes == pytest.approx(expected, abs=0.01)
    assert re.search(r"PDF version:\s+1\.7", info)
    assert re.search(r"Encrypted:\s+no", info)


def test_text_font_is_embedded_with_unicode_map(built: Built) -> None:
    rows = [line.split() for line in _run("pdffonts", built.pdf).splitlines()[2:]]
    assert len(rows) == 1
    name, *_, emb, sub, uni, _obj, _gen = rows[0]
    assert (name, emb, uni) == ("GlyphLessFont", "yes", "yes")


def test_name_lies_inside_its_line_box(built: Built) -> None:
    xml = _run("pdftotext", "-bbox", "-f", "1", "-l", "1", built.pdf, "-")
    words = re.findall(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', xml)
    hits = [tuple(map(float, w[:4])) for w in words if "王强" in w[4]]
    assert len(hits) == 1
    page = built.pages[0]
    assert page.text is not None
    line = next(ln for ln in page.text.lines if "王强" in ln.text)
    sx, sy = 72 / page.dpi[0], 72 / page.dpi[1]
    box = (line.box[0] * sx, line.box[1] * sy, line.box[2] * sx, line.box[3] * sy)
    assert hits[0] == pytest.approx(box, abs=1.0)  # points, top-left origin like the image


def test_images_are_embedded_without_reencoding(built: Built) -> None:
    with pikepdf.open(built.pdf) as pdf:
        jpeg, g4 = (next(iter(page.Resources.XObject.values())) for page in pdf.pages)
        assert jpeg.Filter == pikepdf.Name.DCTDecode
        assert jpeg.read_raw_bytes() == built.pages[0].image.read_bytes()
        assert jpeg.ColorSpace == pikepdf.Name.DeviceGray
        filters = g4.Filter if isinstance(g4.Filter, pikepdf.Array) else pikepdf.Array([g4.Filter])
        assert list(filters) == [pikepdf.Name.CCITTFaxDecode] and int(g4.BitsPerComponent) == 1


def test_metadata_declares_pdfa_2b_with_srgb_intent(built: Built) -> None:
    with pikepdf.open(built.pdf) as pdf:
        meta = pdf.open_metadata()
        assert meta["pdfaid:part"] == "2" and meta["pdfaid:conformance"] == "B"
        assert meta["dc:title"] == str(pdf.docinfo.Title) == "测试卷 2023-001"
        assert meta["pdf:Producer"] == str(pdf.docinfo.Producer)
        (intent,) = pdf.Root.OutputIntents
        assert intent.S == pikepdf.Name.GTS_PDFA1 and str(intent.OutputConditionIdentifier) == "sRGB"
        profile = intent.DestOutputProfile
        assert int(profile.N) == 3 and profile.read_bytes()[16:20] == b"RGB "
        assert str(pdf.Root.Lang) == "zh-CN"
        assert len(pdf.trailer.ID) == 2 and not pdf.is_encrypted
    assert built.pdf.read_bytes().startswith(b"%PDF-1.7\n%")


def test_qpdf_check_passes(built: Built) -> None:
    assert "No syntax or stream encoding errors" in _run("qpdf", "--check", built.pdf)


def test_pikepdf_pdfa_validator_approves(built: Built) -> None:
    pdfa = pytest.importorskip("pikepdf.pdfa")  # needs pikepdf[pdfa] (jsonschema, referencing)
    report = pdfa.validate_written(built.pdf, "2b")
    assert report.passed, report.findings


def test_ghostscript_renders_and_reads_the_text(built: Built) -> None:
    result = subprocess.run(
        ["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=nullpage", str(built.pdf)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip()
    # Ghostscript reads ToUnicode its own way (some CMap forms come out garbled there).
    text = _run("gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite", "-sOutputFile=-", built.pdf)
    assert [line.strip() for line in text.splitlines() if line.strip()] == PAGE1_LINES + PAGE2_LINES


def test_pages_without_text_and_colour_images(tmp_path: Path) -> None:
    Image.new("RGB", (300, 200), (180, 120, 60)).save(tmp_path / "c.jpg", dpi=(100, 100))
    Image.new("RGBA", (300, 200), (0, 0, 255, 100)).save(tmp_path / "a.png")
    pages = [
        PdfPage(tmp_path / "c.jpg", (100.0, 100.0), None),
        PdfPage(tmp_path / "a.png", (150.0, 150.0), PageText(width=300, height=200)),
    ]
    build_pdfa(pages, tmp_path / "out.pdf")
    assert _run("pdftotext", tmp_path / "out.pdf", "-").strip("\f\n ") == ""
    assert len(_run("pdffonts", tmp_path / "out.pdf").splitlines()) == 2  # header only: no font needed
    with pikepdf.open(tmp_path / "out.pdf") as pdf:
        assert len(pdf.pages) == 2 and pdf.open_metadata().pdfa_status == "2B"
        flattened = next(iter(pdf.pages[1].Resources.XObject.values()))
        assert "/SMask" not in flattened  # alpha flattened: no transparency in the archive copy


def test_empty_page_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnusableInput) as err:
        build_pdfa([], tmp_path / "out.pdf")
    assert err.value.reason_code == "no_pages"
    assert not (tmp_path / "out.pdf").exists()


def test_bad_page_leaves_existing_output_alone(tmp_path: Path) -> None:
    out = tmp_path / "out.pdf"
    out.write_bytes(b"previous version")
    Image.new("L", (100, 100), 255).save(tmp_path / "ok.png")
    pages = [PdfPage(tmp_path / name, (300.0, 300.0), None) for name in ("ok.png", "missing.png")]
    with pytest.raises(ScanstationError):
        build_pdfa(pages, out)
    assert out.read_bytes() == b"previous version"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_bad_resolution_is_refused(tmp_path: Path) -> None:
    Image.new("L", (100, 100), 255).save(tmp_path / "ok.png")
    with pytest.raises(UnusableInput) as err:
        build_pdfa([PdfPage(tmp_path / "ok.png", (0.0, 300.0), None)], tmp_path / "out.pdf")
    assert err.value.reason_code == "bad_dpi"
