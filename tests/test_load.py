"""The load stage on real scanner output and on the broken files an inbox collects."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from pdf2image import convert_from_path
from PIL import Image, ImageChops, ImageStat, TiffImagePlugin

from scanner_service.exceptions import UnusableInput
from workers.stages.load import LoadedPage, PageSource, inspect_file, load_page

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
REAL = CORPUS / "real"
SAMPLE = CORPUS / "sample" / "pages"
LIMIT = 150_000_000  # the station's default max_pixels


def inspect(path: Path, **kw: int) -> list[PageSource]:
    return inspect_file(path, max_pixels=kw.pop("max_pixels", LIMIT), **kw)


def load(path: Path, index: int = 0, **kw: int) -> LoadedPage:
    return load_page(path, index, max_pixels=kw.pop("max_pixels", LIMIT), **kw)


def refused(path: Path, reason: str, *, both: bool = True, **kw: int) -> UnusableInput:
    """Both entry points refuse the file with this reason and a message naming it."""
    with pytest.raises(UnusableInput) as caught:
        inspect(path, **kw)
    assert caught.value.reason_code == reason, caught.value
    assert path.name in str(caught.value)
    if both:
        with pytest.raises(UnusableInput) as again:
            load(path, **kw)
        assert again.value.reason_code == reason, again.value
    return caught.value


def looks_like_poppler(page: LoadedPage, pdf: Path, index: int = 0) -> None:
    """The page looks like poppler's drawing of it at the same resolution: not inverted, not stretched."""
    drawn = convert_from_path(pdf, dpi=round(page.dpi[0]), first_page=index + 1, last_page=index + 1, use_cropbox=True)[
        0
    ]
    assert abs(drawn.width - page.image.width) <= 1 and abs(drawn.height - page.image.height) <= 1
    mine, drawn = page.image.convert("L"), drawn.convert("L").resize(page.image.size)
    assert ImageStat.Stat(ImageChops.difference(mine, drawn)).mean[0] < 20


def image_pdf(path: Path, image: Image.Image, size_pt: tuple[float, float], rotate: int = 0) -> Path:
    """A one-page PDF whose page is exactly one Flate-compressed image, as scanner software writes them."""
    pdf = pikepdf.new()
    w, h = size_pt
    xobj = pikepdf.Stream(pdf, zlib.compress(image.tobytes()))
    xobj.Type, xobj.Subtype, xobj.Filter = pikepdf.Name.XObject, pikepdf.Name.Image, pikepdf.Name.FlateDecode
    xobj.Width, xobj.Height, xobj.BitsPerComponent = image.width, image.height, 8
    xobj.ColorSpace = pikepdf.Name("/DeviceGray" if image.mode == "L" else "/DeviceRGB")
    page = pikepdf.Dictionary(
        Type=pikepdf.Name.Page,
        MediaBox=[0, 0, w, h],
        Resources=pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=xobj)),
        Contents=pikepdf.Stream(pdf, f"q {w} 0 0 {h} 0 0 cm /Im0 Do Q".encode()),
    )
    if rotate:
        page.Rotate = rotate
    pdf.pages.append(pikepdf.Page(page))
    pdf.save(path)
    return path


# --- files the station must refuse -------------------------------------------------------


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    f = tmp_path / "scan 0001.tif"
    f.write_bytes(b"")
    refused(f, "empty")


@pytest.mark.parametrize("name", ["notes.txt", "looks like a scan.pdf", "页面.jpg"])
def test_text_file_is_not_an_image_whatever_its_name(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_text("Batch 12, shelf 4: boxes 1-3 scanned by Li Wei.\n")
    error = refused(f, "not_an_image")
    assert "text file" in str(error) and "TIFF, JPEG, PNG and PDF" in str(error)


def test_truncated_jpeg_is_broken(tmp_path: Path) -> None:
    data = (SAMPLE / "scan_0004.jpg").read_bytes()
    f = tmp_path / "scan_0004.jpg"
    f.write_bytes(data[: len(data) // 2])  # copied while the scanner was still writing
    refused(f, "broken")


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw"], ids=["strips-cut", "directory-cut"])
def test_truncated_tiff_is_broken_before_decoding(tmp_path: Path, compression: str) -> None:
    good = tmp_path / "good.tif"
    Image.new("L", (400, 400), 128).save(good, compression=compression)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(good.read_bytes()[:-40])  # Pillow puts the directory first (raw) or last (libtiff)
    refused(cut, "broken")


@pytest.mark.parametrize("source", ["invalid.pdf", "cut"])
def test_broken_pdf(tmp_path: Path, source: str) -> None:
    if source == "cut":  # the image object is lost, qpdf still rebuilds a page: must not become a blank page
        f = tmp_path / "ccitt.pdf"
        f.write_bytes((REAL / "ccitt.pdf").read_bytes()[:60000])
    else:
        f = REAL / source
    refused(f, "broken")


@pytest.mark.parametrize("user", ["", "secret"], ids=["owner-password-only", "user-password"])
def test_encrypted_pdf(tmp_path: Path, user: str) -> None:
    f = tmp_path / "encrypted.pdf"
    with pikepdf.open(REAL / "ccitt.pdf") as pdf:
        pdf.save(f, encryption=pikepdf.Encryption(owner="o", user=user))
    assert "password" in str(refused(f, "encrypted"))


def test_pdf_without_pages(tmp_path: Path) -> None:
    f = tmp_path / "empty.pdf"
    pikepdf.new().save(f)
    refused(f, "no_pages")


def test_png_declaring_a_huge_size_is_refused_from_its_header(tmp_path: Path) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    f = tmp_path / "bomb.png"
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10 gigapixels, grey
    f.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    )
    start = time.perf_counter()
    assert "megapixels" in str(refused(f, "too_large"))
    assert time.perf_counter() - start < 1


def test_hugemono_bomb_is_refused_by_inspect_fast() -> None:
    start = time.perf_counter()
    refused(REAL / "hugemono.pdf", "too_large", both=False)
    assert time.perf_counter() - start < 0.3
    refused(REAL / "hugemono.pdf", "too_large")


def test_hugemono_inspect_uses_little_memory() -> None:
    # Decoding 35000 x 35000 would take over a gigabyte; reading headers takes a few megabytes.
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from workers.stages.load import inspect_file\n"
        "from scanner_service.exceptions import UnusableInput\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    inspect_file(Path(sys.argv[1]), max_pixels=150_000_000)\n"
        "except UnusableInput as e:\n"
        "    print(e.reason_code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code, str(REAL / "hugemono.pdf")],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == "too_large" and int(out[1]) < 50_000, out  # kilobytes


def test_pillow_bomb_check_follows_max_pixels_and_is_put_back() -> None:
    before = Image.MAX_IMAGE_PIXELS
    # scan_0004.jpg is 4.1 megapixels: Pillow's own check fires inside Image.open at our limit.
    refused(SAMPLE / "scan_0004.jpg", "too_large", max_pixels=1_000_000)
    assert before == Image.MAX_IMAGE_PIXELS
    assert inspect(SAMPLE / "scan_0004.jpg", max_pixels=5_000_000)  # the same file under a higher limit


def test_rendered_page_larger_than_the_limit() -> None:
    refused(REAL / "blank.pdf", "too_large", max_pixels=1_000_000)  # 2550 x 3300 at 300 dpi


def test_page_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        load(REAL / "ccitt.pdf", 1)
    with pytest.raises(IndexError):
        load(SAMPLE / "scan_0004.jpg", 1)


# --- PDFs -----------------------------------------------------------------------------------


def test_multipage_pdf() -> None:
    f = REAL / "multipage.pdf"
    pages = inspect(f)
    assert [(p.index, p.width, p.height, p.dpi) for p in pages] == [
        (0, 800, 981, (150.0, 150.0)),
        (1, 9000, 9000, (300.0, 300.0)),
        (2, 958, 400, (96.0, 96.0)),
        (3, 958, 400, (96.0, 96.0)),  # an image plus an invisible OCR layer is still a plain scan
        (4, 612, 792, (72.0, 72.0)),
        (5, 3300, 2550, (300.0, 300.0)),  # the image does not cover the page: rendered
    ]
    first = load(f, 0)
    assert (first.image.mode, first.image.size, first.dpi) == ("RGB", (800, 981), (150.0, 150.0))
    assert first.notes == []
    looks_like_poppler(first, f, 0)
    ocr_layer = load(f, 3)
    assert ocr_layer.image.size == (958, 400) and not any("rendered" in n for n in ocr_layer.notes)
    last = load(f, 5)
    assert (last.image.mode, last.image.size, last.dpi) == ("RGB", (3300, 2550), (300.0, 300.0))
    assert any("rendered at 300 dpi" in n for n in last.notes)


@pytest.mark.parametrize(
    ("name", "mode", "size", "dpi"),
    [
        ("ccitt.pdf", "1", (2550, 3300), 300.0),
        ("kcs.pdf", "1", (1914, 930), 300.0),  # Kodak Capture; page size rounded to whole points
        ("jbig2.pdf", "1", (2550, 3300), 300.0),  # decoded by poppler when jbig2dec is missing
        ("francais.pdf", "L", (900, 900), 300.0),
        # 4000 x 2864 pixels drawn on a 4.2 x 3 cm page (2400 dpi): no paper is that small, so the page is
        # read at a resolution inferred from its pixels, and the file's own is kept to flag it.
        ("2400dpi.pdf", "L", (4000, 2864), 300.0),
    ],
)
def test_scanned_pdf_pages_load_at_their_own_resolution(
    name: str, mode: str, size: tuple[int, int], dpi: float
) -> None:
    f = REAL / name
    [source] = inspect(f)
    page = load(f)
    assert (page.image.mode, page.image.size, page.dpi) == (mode, size, (dpi, dpi))
    assert (source.width, source.height, source.dpi) == (*size, (dpi, dpi))
    if name != "2400dpi.pdf":
        assert page.stated_dpi is None
        looks_like_poppler(page, f)
    else:
        assert page.stated_dpi == (2400.0, 2400.0) and any("42 x 30 mm" in n for n in page.notes), page.notes


def test_blank_vector_page_is_rendered_white() -> None:
    page = load(REAL / "blank.pdf")
    assert (page.image.mode, page.image.size, page.dpi) == ("L", (2550, 3300), (300.0, 300.0))
    assert page.image.getextrema() == (255, 255)


def test_enormous_page_is_listed_without_decoding() -> None:
    start = time.perf_counter()
    assert inspect(REAL / "enormous.pdf") == [PageSource(0, 9000, 9000, (300.0, 300.0))]
    assert time.perf_counter() - start < 0.3


def test_non_square_pixels_are_resampled_not_distorted() -> None:
    f = REAL / "aspect.pdf"  # 1000 x 400 pixels at 200 x 100 dpi: a circle
    assert inspect(f) == [PageSource(0, 1000, 800, (200.0, 200.0))]
    page = load(f)
    assert (page.image.mode, page.image.size, page.dpi) == ("RGB", (1000, 800), (200.0, 200.0))
    rgb = np.asarray(page.image).astype(int)
    ys, xs = np.nonzero((rgb[..., 2] - rgb[..., 1]) > 80)  # the purple disc
    width, height = xs.max() - xs.min(), ys.max() - ys.min()
    assert abs(width - height) <= 0.02 * width
    looks_like_poppler(page, f)


def test_cmyk_pdf_loads_as_rgb_not_inverted() -> None:
    page = load(REAL / "cmyk.pdf")
    assert (page.image.mode, page.image.size, page.dpi) == ("RGB", (900, 900), (300.0, 300.0))
    rgb = np.asarray(page.image).astype(int)
    assert rgb[700:890, 600:890].min() >= 250  # the paper is white
    words = rgb[280:330, 120:385]  # "Pure Magenta"
    assert ((words[..., 0] > 180) & (words[..., 1] < 120) & (words[..., 2] > 80)).sum() > 500


def test_single_cmyk_jpeg_page_is_not_inverted(tmp_path: Path) -> None:
    # cmyk.pdf's second layer drawn alone: a plain-image page, decoded by Pillow (which inverts CMYK JPEGs).
    f = tmp_path / "cmyk one image.pdf"
    with pikepdf.open(REAL / "cmyk.pdf") as pdf:
        pdf.pages[0].Contents = pdf.make_stream(b"q 216 0 0 216 0 0 cm /Im1 Do Q")
        pdf.save(f)
    page = load(f)
    assert page.image.mode == "RGB" and page.image.size == (900, 900)
    assert not any("rendered" in n for n in page.notes)
    grey = np.asarray(page.image.convert("L"))
    assert grey[600:890, 600:890].min() > 240 and grey[85:120, 150:350].mean() < 60
    looks_like_poppler(page, f)


def test_rotated_pdf_page_is_turned_like_a_viewer(tmp_path: Path) -> None:
    scan = Image.new("L", (900, 300), 255)
    scan.paste(0, (0, 0, 450, 300))  # left half black
    f = image_pdf(tmp_path / "rotated.pdf", scan, (648, 216), rotate=90)  # 23 x 7.6 cm at 100 dpi
    assert inspect(f) == [PageSource(0, 300, 900, (100.0, 100.0))]
    page = load(f)
    assert page.image.size == (300, 900) and page.dpi == (100.0, 100.0)
    grey = np.asarray(page.image)
    assert grey[:420].mean() < 10 and grey[480:].mean() > 245  # turned clockwise: the left half is on top
    looks_like_poppler(page, f)


# --- TIFF, JPEG, PNG --------------------------------------------------------------------------


def test_multipage_tiff_with_mixed_codecs_and_an_odd_name(tmp_path: Path) -> None:
    bilevel = Image.new("1", (1275, 1650), 1)
    bilevel.paste(0, (100, 100, 600, 200))
    frames = [
        (bilevel, "group4", 150),
        (Image.linear_gradient("L").resize((600, 800)), "tiff_lzw", 100),
        (Image.merge("RGB", [Image.linear_gradient("L").resize((640, 480))] * 3), "jpeg", 200),
    ]
    # Content decides, not the name: spaces, Chinese, very long, and a misleading extension.
    f = tmp_path / ("档案 第1卷（扫描） " + "长名" * 30 + ".pdf")
    with TiffImagePlugin.AppendingTiffWriter(str(f), new=True) as tiff:
        for image, compression, dpi in frames:
            image.save(tiff, format="TIFF", compression=compression, dpi=(dpi, dpi))
            tiff.newFrame()
    expected = [PageSource(i, im.width, im.height, (float(dpi), float(dpi))) for i, (im, _, dpi) in enumerate(frames)]
    assert inspect(f) == expected
    for source, (image, _, _) in zip(expected, frames, strict=True):
        page = load(f, source.index)
        assert (page.image.mode, page.image.size, page.dpi) == (image.mode, image.size, source.dpi)
    assert np.array_equal(np.asarray(load(f, 0).image), np.asarray(bilevel))  # G4 is lossless


def test_fax_tiff_with_non_square_pixels(tmp_path: Path) -> None:
    f = tmp_path / "fax.tif"
    Image.new("1", (1728, 1100), 1).save(f, compression="group4", dpi=(204, 98))
    assert inspect(f) == [PageSource(0, 1728, 2290, (204.0, 204.0))]
    page = load(f)
    assert (page.image.mode, page.image.size, page.dpi) == ("1", (1728, 2290), (204.0, 204.0))
    assert any("not square" in n for n in page.notes)


@pytest.mark.parametrize(
    ("name", "mode", "size", "dpi"),
    [
        ("sample/pages/scan_0004.jpg", "RGB", (2401, 1717), (200.0, 200.0)),
        ("sample/pages/scan_0007.png", "L", (2848, 3790), (300.0, 300.0)),  # PNG stores 299.9994
        ("real/baiona_color.jpg", "RGB", (640, 682), None),
        ("real/baiona_gray.png", "L", (640, 682), None),
        ("real/typewriter.png", "L", (4000, 2864), None),  # a two-colour grey palette
    ],
)
def test_image_files(name: str, mode: str, size: tuple[int, int], dpi: tuple[float, float] | None) -> None:
    f = CORPUS / name
    assert inspect(f) == [PageSource(0, *size, dpi)]
    page = load(f)
    assert (page.image.mode, page.image.size) == (mode, size)
    if dpi is None:
        assert page.dpi == (300.0, 300.0) and any("300 dpi assumed" in n for n in page.notes)
    else:
        assert page.dpi == dpi and page.notes == []


def test_jpeg_orientation_tag_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (200, 100), "white")
    image.paste((0, 0, 0), (0, 0, 100, 100))  # left half black
    exif = Image.Exif()
    exif[274] = 6  # "turn 90 degrees clockwise to view"
    f = tmp_path / "phone.jpg"
    image.save(f, exif=exif, dpi=(300, 300))
    assert inspect(f) == [PageSource(0, 100, 200, (300.0, 300.0))]
    grey = np.asarray(load(f).image.convert("L"))
    assert grey[:90].mean() < 20 and grey[110:].mean() > 235


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    f = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)).save(f)
    page = load(f)
    assert page.image.mode == "L" and np.asarray(page.image).tolist() == [[0, 255], [128, 4]]


def test_transparency_is_flattened_onto_white(tmp_path: Path) -> None:
    f = tmp_path / "alpha.png"
    image = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # invisible red
    image.paste((0, 0, 255, 255), (10, 0, 20, 10))
    image.save(f)
    page = load(f)
    assert page.image.mode == "RGB"
    assert page.image.getpixel((2, 2)) == (255, 255, 255) and page.image.getpixel((15, 5)) == (0, 0, 255)


def test_cmyk_jpeg_file_becomes_rgb(tmp_path: Path) -> None:
    f = tmp_path / "cmyk.jpg"
    image = Image.new("CMYK", (64, 64), (0, 0, 0, 0))  # no ink: paper
    image.paste((0, 255, 0, 0), (0, 0, 32, 64))  # magenta ink
    image.save(f, quality=95)
    page = load(f)
    rgb = np.asarray(page.image).astype(int)
    assert page.image.mode == "RGB" and rgb[30, 50].min() > 240
    r, g, b = rgb[30, 10]
    assert r > 200 and g < 60 and b > 200
