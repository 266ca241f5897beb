"""The registry of OCR engines: which one, where its models come from, their checksums, and how to build it.

Models are never downloaded at run time: they come from Debian packages (Tesseract) or from a wheel
(RapidOCR). ``check`` verifies, before a worker takes a page, that the engine's model files are there
and are the files listed here (SHA-256), so a station cannot silently run with other models.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ocr_models.base import OcrEngine
from ocr_models.runtime import DEFAULT_RUNTIME, check_runtime
from ocr_models.runtime import version as runtime_version
from workers.durable import sha256_of
from workers.errors import ConfigError, MissingProgram
from workers.exec import tesseract

DEFAULT_ENGINE = "rapidocr"  # chosen by the benchmark: see ocr_models/README.md


@dataclass(frozen=True)
class ModelFile:
    name: str  # file name
    role: str
    sha256: str


@dataclass(frozen=True)
class EngineInfo:
    name: str
    package: str  # where the engine and its model files come from
    version: str
    models: tuple[ModelFile, ...]
    languages: str
    licence: str


ENGINES: dict[str, EngineInfo] = {
    "rapidocr": EngineInfo(
        name="rapidocr",
        package="PyPI wheel rapidocr-onnxruntime (PP-OCR models of PaddleOCR, ONNX, inside the wheel; "
        "run by OpenVINO or onnxruntime, SCANSTATION_OCR_RUNTIME)",
        version="1.4.4",
        models=(
            ModelFile(
                "ch_PP-OCRv4_det_infer.onnx",
                "text line detection (PP-OCRv4)",
                "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
            ),
            ModelFile(
                "ch_PP-OCRv4_rec_infer.onnx",
                "text recognition, Chinese and English (PP-OCRv4)",
                "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
            ),
            ModelFile(
                "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                "0/180 line direction (not used by scanstation)",
                "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
            ),
        ),
        languages="Simplified Chinese and English (one model)",
        licence="Apache-2.0 (RapidOCR and the PaddleOCR models)",
    ),
    "tesseract": EngineInfo(
        name="tesseract",
        package="Debian packages tesseract-ocr 5.3.0, tesseract-ocr-chi-sim and tesseract-ocr-eng 1:4.1.0",
        version="5.3.0",
        models=(
            ModelFile(
                "chi_sim.traineddata",
                "Simplified Chinese (tessdata_fast LSTM)",
                "a5fcb6f0db1e1d6d8522f39db4e848f05984669172e584e8d76b6b3141e1f730",
            ),
            ModelFile(
                "eng.traineddata",
                "English (tessdata_fast LSTM)",
                "7d4322bd2a7749724879683fc3912cb542f19906c83bcc1a52132556427170b2",
            ),
        ),
        languages="chi_sim+eng",
        licence="Apache-2.0",
    ),
}


def model_dir(name: str) -> Path:
    if name == "rapidocr":
        # Imported when chosen: the engine module loads its runtime (OpenVINO, onnxruntime) on use, which
        # a station reading with Tesseract, or a command that only checks settings, should not pay for.
        from ocr_models.rapidocr import package_dir

        return package_dir() / "models"
    return tesseract.tessdata_dir()


@functools.cache
def check(name: str, languages: str = "", runtime: str = DEFAULT_RUNTIME) -> EngineInfo:
    """The engine's registry entry, after checking its program, runtime and model files; raises with what to do."""
    info = ENGINES.get(name)
    if info is None:
        raise ConfigError(f"Unknown OCR engine {name!r}; known: {', '.join(ENGINES)}.")
    if name == "tesseract":
        tesseract.check(languages or info.languages)
    # The orientation stage reads lines with PP-OCR whatever the engine, so the runtime is always checked.
    check_runtime(runtime)
    try:
        runtime_version(runtime)
    except ImportError as err:
        raise MissingProgram(f"The OCR runtime {runtime} is not installed ({err}); run `make run`.") from err
    folder = model_dir(name)
    for model in info.models:
        path = folder / model.name
        if not path.is_file():
            raise MissingProgram(f"{name}: model file {path} is missing; reinstall from {info.package}.")
        if sha256_of(path).sha256 != model.sha256:
            raise MissingProgram(
                f"{name}: model file {path} is not the one in the registry (SHA-256 differs); "
                f"install {info.package} {info.version}, or update ocr_models/registry.py after a benchmark."
            )
    return info


def build_engine(name: str, *, languages: str, timeout: float, runtime: str = DEFAULT_RUNTIME) -> OcrEngine:
    """The engine chosen by settings (``languages`` applies to Tesseract, empty meaning its default;
    ``runtime`` to RapidOCR: what runs its models, see ocr_models/runtime.py)."""
    if name == "tesseract":
        from ocr_models.tesseract import TesseractEngine

        return TesseractEngine(languages=languages or ENGINES["tesseract"].languages, timeout=timeout)
    if name == "rapidocr":
        from ocr_models.rapidocr import RapidOcrEngine

        return RapidOcrEngine(timeout=timeout, runtime=runtime)
    raise ConfigError(f"Unknown OCR engine {name!r}; known: {', '.join(ENGINES)}.")
