"""The two OCR engines behind one interface, and the registry that pins their model files."""

from __future__ import annotations

import multiprocessing
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rapidfuzz.distance import Levenshtein

from ocr_models import registry
from ocr_models.base import PageText
from ocr_models.rapidocr import read_lines
from ocr_models.runtime import RUNTIMES
from scanner_service.exceptions import ConfigError, MissingProgram
from tests.blank_pages import mc

LINES = [
    "农村土地承包经营权合同",
    "　　发包方：保定市北市区东金庄乡尚庄村村民委员会",
    "　　承包方代表：王强，身份证号码：130602197702255719",
    "　　发包方负责人：张强玉　　承包方：江永　　签订日期：",
    "2008年1月7日",
]


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def _cer(page: PageText) -> float:
    want = _norm("".join(LINES))
    return Levenshtein.distance(want, _norm(page.text)) / len(want)


@pytest.fixture(scope="module")
def printed_page() -> Image.Image:
    return mc.draw_lines(LINES, "serif", 300)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_rapidocr_reads_a_chinese_page_in_order(printed_page: Image.Image, runtime: str) -> None:
    page = registry.build_engine("rapidocr", languages="", timeout=60, runtime=runtime).recognise(printed_page)
    assert page.engine == "rapidocr"
    assert _cer(page) <= 0.01
    # Reading order: the title first, the date last; a row split at its wide spaces stays one line.
    assert page.lines[0].text == "农村土地承包经营权合同"
    assert any(line.text.startswith("发包方负责人") and "签订日期" in line.text for line in page.lines)
    # No space between Chinese characters; boxes inside the page, top to bottom, confidences 0..100.
    assert not re.search(r"[\u4e00-\u9fff] +[\u4e00-\u9fff]", page.text)
    tops = [line.box[1] for line in page.lines]
    assert tops == sorted(tops)
    for line in page.lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= printed_page.width and 0 <= y0 < y1 <= printed_page.height
        assert 50 <= line.confidence <= 100


def test_tesseract_reads_the_same_page_through_the_same_interface(printed_page: Image.Image) -> None:
    page = registry.build_engine("tesseract", languages="", timeout=120).recognise(printed_page)
    assert page.engine == "tesseract"
    assert "承包经营权合同" in page.text.replace(" ", "")
    assert _cer(page) <= 0.25  # Tesseract's floor on Chinese print is far above RapidOCR's


def test_both_runtimes_read_the_same_text(printed_page: Image.Image) -> None:
    """OpenVINO and onnxruntime run the same model files: the same lines, the same characters. Up to a
    character's full-width or half-width form (NFKC, as search folds them): on some CPUs the two
    runtimes' rounding tips a near tie between "：" and ":" differently (seen on this project's CI machine)."""
    pages = [
        registry.build_engine("rapidocr", languages="", timeout=60, runtime=r).recognise(printed_page) for r in RUNTIMES
    ]
    texts = [[unicodedata.normalize("NFKC", line.text) for line in page.lines] for page in pages]
    assert texts[0] == texts[1]
    # The boxes within half a millimetre (6 px at 300 dpi): the detector's rounding differs a little too.
    for a, b in zip(pages[0].lines, pages[1].lines, strict=True):
        assert max(abs(p - q) for p, q in zip(a.box, b.box, strict=True)) <= 6, (a.box, b.box)


def _read_in_child(page: Image.Image, runtime: str, out: Any) -> None:
    out.put(registry.build_engine("rapidocr", languages="", timeout=60, runtime=runtime).recognise(page).text)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_forked_work_horse_reads_with_the_models_its_parent_loaded(printed_page: Image.Image, runtime: str) -> None:
    """RQ forks a work horse per page from a worker that warmed the models up: the child must read with
    them (OpenVINO's and onnxruntime's thread pools must not hang it) and read what the parent reads."""
    parent = registry.build_engine("rapidocr", languages="", timeout=60, runtime=runtime).recognise(printed_page).text
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_read_in_child, args=(printed_page, runtime, out))
    child.start()
    try:
        assert out.get(timeout=60) == parent
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


def test_a_number_printed_in_groups_is_read_whole_and_latin_words_keep_their_spaces() -> None:
    """Word spaces are put back between Latin words, never inside a number: an ID number printed in
    groups is found by a search for the whole number."""
    page = mc.draw_lines(["身份证号码：130602　197702255719", "Total amount paid"], "serif", 300)
    text = registry.build_engine("rapidocr", languages="", timeout=60).recognise(page).text
    assert "130602197702255719" in text.replace("　", "")
    assert "Total amount paid" in text


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_sliver_taken_for_a_line_does_not_stop_the_page_being_read(runtime: str) -> None:
    """The detector can take a tall thin mark (a table's rule, a fold) for a line: cut out, it is a few
    pixels wide at the recogniser's height. Read beside a real line, it reads as nothing, and the
    real line is still read (OpenVINO returned no output for such a batch, failing the whole page)."""
    line = np.asarray(mc.draw_lines(["农村土地承包经营权合同"], "serif", 300).convert("L"))
    rows = np.nonzero((line < 128).any(axis=1))[0]
    cols = np.nonzero((line < 128).any(axis=0))[0]
    crop = line[rows[0] - 10 : rows[-1] + 10, cols[0] - 10 : cols[-1] + 10]
    sliver = np.full((crop.shape[0], 3), 40, dtype=np.uint8)
    read = read_lines([sliver, sliver.copy(), crop], runtime)
    assert len(read) == 3
    assert read[2][0] == "农村土地承包经营权合同"
    assert not any(ch.isalnum() and not ch.isascii() for ch in read[0][0] + read[1][0])


def test_an_unknown_runtime_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="known: openvino, onnxruntime"):
        registry.check("rapidocr", "", "tensorrt")
    with pytest.raises(ConfigError):
        registry.build_engine("rapidocr", languages="", timeout=1, runtime="tensorrt")


def test_rapidocr_reads_a_latin_page() -> None:
    page = mc.draw_lines(["Portez ce vieux whisky au juge blond", "qui fume sur son ile."], "sans", 300)
    text = registry.build_engine("rapidocr", languages="", timeout=60).recognise(page).text
    assert "whisky" in text and "juge" in text


def test_an_empty_page_reads_as_nothing() -> None:
    page = Image.new("L", (1240, 1754), 240)
    result = registry.build_engine("rapidocr", languages="", timeout=60).recognise(page)
    assert result.lines == [] and result.mean_confidence == 0.0


@pytest.mark.parametrize("name", ["rapidocr", "tesseract"])
def test_registry_lists_and_verifies_each_engines_model_files(name: str) -> None:
    registry.check.cache_clear()
    info = registry.check(name)
    assert info.version and info.licence and info.models
    for model in info.models:
        assert (registry.model_dir(name) / model.name).is_file()


def test_a_changed_model_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = registry.model_dir("rapidocr")
    fake = tmp_path / "models"
    shutil.copytree(real, fake)
    target = fake / registry.ENGINES["rapidocr"].models[1].name
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    monkeypatch.setattr(registry, "model_dir", lambda name: fake)
    registry.check.cache_clear()
    with pytest.raises(MissingProgram, match="SHA-256 differs"):
        registry.check("rapidocr")
    registry.check.cache_clear()


def test_an_unknown_engine_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="known: rapidocr, tesseract"):
        registry.check("paddle")
    with pytest.raises(ConfigError):
        registry.build_engine("paddle", languages="", timeout=1)
