"""The one module that imports a TFLite interpreter; everything else receives one from here.

Backends, in order of preference: `ai_edge_litert` (LiteRT), `tflite_runtime`, then
`tensorflow` (`tf.lite`, heavy: only when nothing lighter is installed or when asked for).
Each applies XNNPACK, its default CPU delegate, when tensors are allocated.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import os
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import EdgesegError
from runtime.flatbuffer import FlatbufferError, input_shapes, structure_problem
from runtime.limits import MAX_INPUT_SIDE, check_threads

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
# Names the default backend for a process and its children, e.g. tflite_runtime where it is
# installed beside LiteRT (`pip install 'edgeseg[tflite-runtime]'`); `backend=` still wins.
BACKEND_VARIABLE = "EDGESEG_BACKEND"
_INSTALL = {
    "ai_edge_litert": "pip install ai-edge-litert",
    "tflite_runtime": "pip install 'edgeseg[tflite-runtime]' (CPython 3.11 or older)",
    "tensorflow": "pip install 'edgeseg[train]'",
}
DELEGATES = ("xnnpack", "edgetpu", "none")

_EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
# OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES: the same enum value in all three packages.
_WITHOUT_DEFAULT_DELEGATES = 3


@dataclass(frozen=True)
class Backend:
    """An importable interpreter package."""

    name: str
    interpreter_class: type
    load_delegate: Callable[..., Any]


def _import(name: str) -> Backend | None:
    """The backend, or None when its package is not installed.

    Raises:
        EdgesegError: tflite-runtime installed beside numpy 2, which it cannot work with.
    """
    try:
        if name == "ai_edge_litert":
            from ai_edge_litert.interpreter import Interpreter, load_delegate
        elif name == "tflite_runtime":
            from tflite_runtime.interpreter import Interpreter, load_delegate

            _check_numpy_for_tflite_runtime()
        else:
            import tensorflow as tf

            Interpreter, load_delegate = tf.lite.Interpreter, tf.lite.experimental.load_delegate
    except ImportError:
        return None
    return Backend(name, Interpreter, load_delegate)


def _check_numpy_for_tflite_runtime() -> None:
    import numpy as np

    # tflite-runtime's last release (2.14) was compiled for numpy 1.x: under numpy 2 it
    # imports, then fails at the first model with a SystemError and a page of warnings.
    if int(np.__version__.split(".")[0]) >= 2:
        raise EdgesegError(
            f"tflite-runtime needs numpy 1.x, but numpy {np.__version__} is installed — "
            "pip install 'edgeseg[tflite-runtime]' (it pins numpy<2), or use the ai_edge_litert backend"
        )


def installed_backends() -> list[str]:
    """Names of the installed backends, in order of preference, without importing them."""
    packages = {"ai_edge_litert": "ai_edge_litert", "tflite_runtime": "tflite_runtime", "tensorflow": "tensorflow"}
    return [name for name in BACKENDS if importlib.util.find_spec(packages[name]) is not None]


def find_backend(name: str | None = None) -> Backend:
    """Import the interpreter package `name`; by default the one `EDGESEG_BACKEND` names, else
    the first installed one in `BACKENDS` order that works.

    Raises:
        EdgesegError: an unknown name, no such package installed, or none at all.
    """
    origin = ""
    if name is None and os.environ.get(BACKEND_VARIABLE, "").strip():
        name, origin = os.environ[BACKEND_VARIABLE].strip(), f" (from {BACKEND_VARIABLE})"
    if name is not None and name not in BACKENDS:
        raise EdgesegError(f"unknown backend {name!r}{origin} — choose one of: {', '.join(BACKENDS)}")
    if name:
        backend = _import(name)
        if backend is None:
            raise EdgesegError(f"backend {name!r}{origin} is not installed — {_INSTALL[name]}")
        return backend
    for candidate in BACKENDS:
        try:
            backend = _import(candidate)
        except EdgesegError:  # installed but unusable here: the next one will do
            continue
        if backend is not None:
            return backend
    if platform.system() == "Darwin" and platform.machine() == "x86_64":
        raise EdgesegError("no TFLite interpreter is installed, and ai-edge-litert has no wheel for Intel macOS — "
                           "pip install 'edgeseg[train]' (TensorFlow's tf.lite)")
    raise EdgesegError(f"no TFLite interpreter is installed — {_INSTALL['ai_edge_litert']}")


def check_model_file(model_path: str | Path) -> Path:
    """Check that `model_path` exists and is a TFLite flatbuffer (identifier "TFL3").

    Raises:
        EdgesegError: a missing file, a folder, or a file that is not a TFLite model.
    """
    path = Path(model_path)
    if not path.exists():
        raise EdgesegError(f"model file not found: {path}")
    if not path.is_file():
        raise EdgesegError(f"model path is not a file: {path}")
    with path.open("rb") as file:
        header = file.read(8)
    # A flatbuffer starts with a 4-byte root offset, then the 4-byte file identifier.
    if header[4:8] != b"TFL3":
        raise EdgesegError(f"not a TFLite model (no TFL3 flatbuffer identifier): {path}")
    return path


def load_interpreter(
    model_path: str | Path,
    num_threads: int | None = None,
    backend: str | None = None,
    delegate: str | None = None,
) -> tuple[Any, str]:
    """Create an interpreter for a .tflite file, tensors not yet allocated.

    Values the interpreters would use unchecked are refused first
    (`runtime.flatbuffer.structure_problem`), and so is an image input (N, H, W, 3) beyond
    `MAX_INPUT_SIDE`, before anything is allocated for it. Then the model is loaded,
    allocated and run once in a child process (`runtime.probe.check_model_in_child`,
    remembered per file content), so that a file that would crash the interpreter is
    refused before this process touches it.

    Allocation (`interpreter.allocate_tensors()`) is left to the caller, so a model can be
    inspected and refused before XNNPACK is applied to it; wrap it, and every later call
    into the interpreter, in `interpreter_errors`.

    Args:
        model_path: the .tflite file.
        num_threads: CPU threads for the interpreter and XNNPACK; None uses every core.
        backend: one of `BACKENDS` to force it; None takes the first installed.
        delegate: None or "xnnpack" for the default (XNNPACK on CPU), "edgetpu" for a Coral
            Edge TPU (the model must be compiled for it), "none" for TFLite's reference
            CPU kernels only.

    Returns:
        (interpreter, backend name).

    Raises:
        EdgesegError: a missing, invalid or damaged model file (one the interpreter refuses
            or crashes on), a bad thread count, an unknown backend or delegate, or an Edge
            TPU runtime that is not installed.
    """
    from runtime.probe import check_model_in_child  # noqa: PLC0415 - probe imports this module

    path = check_model_file(model_path)
    check_threads(num_threads)
    if num_threads is None:
        num_threads = os.cpu_count() or 1
    if delegate is not None and delegate not in DELEGATES:
        raise EdgesegError(f"unknown delegate {delegate!r} — choose one of: {', '.join(DELEGATES)}")
    _check_structure(path)
    found = find_backend(backend)
    check_model_in_child(path, found.name, delegate, num_threads)
    with interpreter_errors(path, "reading it"):
        return create_interpreter(path, num_threads, found, delegate), found.name


def _check_structure(path: Path) -> None:
    # From the file, before any interpreter (even the trial one) reads it or allocates for it.
    try:
        problem = structure_problem(path)
        shapes = input_shapes(path) if problem is None else []
    except FlatbufferError as error:
        problem = str(error)
    if problem:
        raise EdgesegError(f"{path}: damaged TFLite model: {problem} — re-convert or re-download it")
    for shape in shapes:
        if len(shape) == 4 and shape[3] == 3 and max(shape[1:3]) > MAX_INPUT_SIDE:
            raise EdgesegError(f"{path}: image input shape {tuple(shape)} is beyond the limit of {MAX_INPUT_SIDE} "
                               "pixels a side (see runtime/limits.py) — not a model this runtime can run")  # fmt: skip


def create_interpreter(path: Path, num_threads: int, backend: Backend, delegate: str | None = None) -> Any:
    """The interpreter itself, unchecked: `load_interpreter` without its checks.

    Raises:
        EdgesegError: the Edge TPU runtime is missing.
        RuntimeError, ValueError: the interpreter refuses the file (see `INTERPRETER_ERRORS`).
    """
    options: dict[str, Any] = {"model_path": str(path), "num_threads": num_threads}
    if delegate == "edgetpu":
        options["experimental_delegates"] = [_load_edgetpu(backend)]
    elif delegate == "none":
        options["experimental_op_resolver_type"] = _op_resolver(backend, _WITHOUT_DEFAULT_DELEGATES)
    return backend.interpreter_class(**options)


# What the interpreter packages raise on a model they cannot read, allocate or run: their C++
# errors come through pybind11 as these (std::bad_alloc as MemoryError, a tensor name that is
# not UTF-8 as UnicodeDecodeError, a ValueError).
INTERPRETER_ERRORS = (RuntimeError, ValueError, SystemError, MemoryError, IndexError, OverflowError)


@contextlib.contextmanager
def interpreter_errors(path: str | Path, doing: str) -> Iterator[None]:
    """Turn an interpreter's failure inside the block into one `EdgesegError` line.

    Args:
        path: the model file, named in the message.
        doing: what the block does, e.g. "allocating its tensors" or "running it".

    Raises:
        EdgesegError: see `interpreter_failure`.
    """
    try:
        yield
    except INTERPRETER_ERRORS as error:
        raise interpreter_failure(path, doing, error_text(error)) from None


def error_text(error: BaseException) -> str:
    """An interpreter's error on one printable line (its messages run over several)."""
    from runtime.text import printable  # noqa: PLC0415

    return printable(" ".join(str(error).split()) or type(error).__name__, limit=300)


def interpreter_failure(path: str | Path, doing: str, reason: str) -> EdgesegError:
    """The error for a model the interpreter fails on: "PATH: the interpreter failed DOING: REASON — ..."."""
    return EdgesegError(
        f"{path}: the interpreter failed {doing}: {reason} — the file is damaged or not a model "
        "this interpreter can run; re-convert or re-download it"
    )


def _op_resolver(backend: Backend, value: int) -> Any:
    module = importlib.import_module(backend.interpreter_class.__module__)
    return module.OpResolverType(value)


def _load_edgetpu(backend: Backend) -> Any:
    library = _EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")
    try:
        # Load it once ourselves first: the interpreter packages' Delegate object, when the
        # library is missing, fails half-built and prints an "Exception ignored" trace later.
        ctypes.CDLL(library)
        return backend.load_delegate(library)
    except (ValueError, OSError):
        raise EdgesegError(
            f"the Edge TPU delegate could not be loaded ({library} missing or no device) — "
            "install the Edge TPU runtime (libedgetpu1-std) and plug in the Coral device"
        ) from None
