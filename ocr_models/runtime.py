"""The inference runtimes that run PP-OCR's ONNX models: onnxruntime or OpenVINO, one thread each.

Both read the same ONNX files (those the registry checks), so changing the runtime changes no model.
A session is called with one input tensor and returns the model's first output. Sessions are made once
per process, before RQ forks its work horses; both runtimes run correctly in a forked child when made
with one thread (OpenVINO's thread pool is then not used; checked by tests/test_ocr_engines.py).

Chosen by ``SCANSTATION_OCR_RUNTIME``; the default was chosen by measurement (ocr_models/README.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workers.errors import ConfigError

RUNTIMES = ("openvino", "onnxruntime")
DEFAULT_RUNTIME = "openvino"

Session = Callable[[np.ndarray], np.ndarray]


def check_runtime(name: str) -> str:
    if name not in RUNTIMES:
        raise ConfigError(f"Unknown OCR runtime {name!r}; known: {', '.join(RUNTIMES)}.")
    return name


def version(name: str) -> str:
    if name == "openvino":
        import openvino

        return str(openvino.__version__).split("-")[0]
    import onnxruntime

    return str(onnxruntime.__version__)


@functools.cache
def session(path: Path, runtime: str) -> Session:
    """A one-thread session for the model at ``path``."""
    check_runtime(runtime)
    if runtime == "openvino":
        return _openvino(path)
    return _onnxruntime(path)


@functools.cache
def characters(path: Path, runtime: str) -> tuple[str, ...]:
    """The recognition model's character list, as stored in the model file (metadata key ``character``)."""
    if runtime == "openvino":
        model = _ov_core().read_model(str(path))
        text = str(model.get_rt_info(["framework", "character"]).value)
    else:
        meta = _ort_session(path).get_modelmeta().custom_metadata_map
        text = meta["character"]
    return tuple(text.splitlines())


@functools.cache
def _ov_core() -> Any:
    import openvino

    return openvino.Core()


def _openvino(path: Path) -> Session:
    compiled = _ov_core().compile_model(
        str(path),
        "CPU",
        # One thread (a station runs one worker per core), latency first, and no CPU pinning: a forked
        # work horse runs the model its parent compiled. No cache of kernels per input shape: every
        # batch of lines has its own width, and the cache grew a worker by 400 MB over six forms
        # (1,264 against 852 MB peak) for no speed measured.
        {
            "INFERENCE_NUM_THREADS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,
            "CPU_RUNTIME_CACHE_CAPACITY": 0,
        },
    )
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(tensor: np.ndarray) -> np.ndarray:
        result = request.infer([np.ascontiguousarray(tensor, dtype=np.float32)])
        return np.array(result[output], copy=True)

    return run


@functools.cache
def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # As RapidOCR sets it: no arena, so the warm-up's tensors are not kept in the worker before the
    # fork (ocr_models/rapidocr.py raises glibc's thresholds instead, so runs reuse the heap).
    options.enable_cpu_mem_arena = False
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _onnxruntime(path: Path) -> Session:
    sess = _ort_session(path)
    name = sess.get_inputs()[0].name

    def run(tensor: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run(None, {name: np.ascontiguousarray(tensor, dtype=np.float32)})[0])

    return run
