"""`Segmenter`: a TFLite segmentation model applied to BGR frames, one class index per pixel.

Settings come from the model's embedded metadata (`runtime.metadata`) where present and are
inferred from its tensors otherwise, so any DeepLab-style TFLite model runs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from runtime import processing
from runtime.backend import check_model_file, interpreter_errors, load_interpreter
from runtime.drawing import blend
from runtime.errors import EdgesegError
from runtime.limits import MAX_CLASSES
from runtime.metadata import read_metadata
from runtime.palette import default_classes, default_colors, generated_color
from runtime.processing import Normalization

INPUT_DTYPES = (np.float32, np.uint8, np.int8)
LOGIT_DTYPES = (np.float32, np.int8, np.uint8)


class Timing(NamedTuple):
    """Milliseconds spent on one frame."""

    pre_ms: float
    invoke_ms: float
    post_ms: float

    @property
    def total_ms(self) -> float:
        return self.pre_ms + self.invoke_ms + self.post_ms


@dataclass(frozen=True)
class TensorInfo:
    """What the runtime needs of a model input or output tensor."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    quantization: tuple[float, int]  # (scale, zero_point); (0.0, 0) when not quantized

    @classmethod
    def from_details(cls, details: dict) -> TensorInfo:
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(
            index=int(details["index"]),
            name=str(details["name"]),
            shape=tuple(int(d) for d in details["shape"]),
            dtype=np.dtype(details["dtype"]),
            quantization=(float(scale), int(zero_point)),
        )

    def describe(self) -> str:
        """E.g. "uint8[1, 513, 513, 3] scale=0.00784 zero_point=128"."""
        text = f"{self.dtype.name}[{', '.join(str(d) for d in self.shape)}]"
        if self.quantization[0] > 0:
            text += f" scale={self.quantization[0]:.6g} zero_point={self.quantization[1]}"
        return text


@dataclass(frozen=True)
class ModelSpec:
    """How to feed a model and read its output, from metadata or inferred from the tensors."""

    input: TensorInfo
    output: TensorInfo
    input_size: tuple[int, int]
    normalization: Normalization
    output_kind: str  # "logits" or "labels"
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]  # (R, G, B) per class
    ignore_index: int | None
    from_metadata: bool

    @property
    def raw_pixels(self) -> bool:
        """True when camera pixels go into the model as they are (normalisation folded in)."""
        return self.input.dtype == np.uint8 and processing.folds_normalization(
            self.input.quantization, self.normalization
        )


def _refuse(path: Path, reason: str) -> EdgesegError:
    return EdgesegError(f"not a segmentation model: {path.name} {reason} — expected one (1, H, W, 3) image input "
                        "and logits (1, h, w, classes) or labels (1, h, w) out")


def resolve_spec(path: Path, input_details: list[dict], output_details: list[dict], metadata: dict | None) -> ModelSpec:
    """Check that a model is an image segmentation model and work out how to run it.

    Args:
        path: the model file (for messages).
        input_details: the interpreter's `get_input_details()`.
        output_details: the interpreter's `get_output_details()`.
        metadata: the embedded metadata as `runtime.metadata.read_metadata` returns it
            (types and ranges checked), or None.

    Returns:
        The model's `ModelSpec`.

    Raises:
        EdgesegError: a model that is not a segmentation model (a classifier, say), or
            metadata that contradicts the tensors.
    """
    if len(input_details) != 1:
        raise _refuse(path, f"has {len(input_details)} inputs")
    if len(output_details) != 1:
        raise _refuse(path, f"has {len(output_details)} outputs")
    tensor_in = TensorInfo.from_details(input_details[0])
    tensor_out = TensorInfo.from_details(output_details[0])
    shape_in = tensor_in.shape
    if len(shape_in) != 4 or shape_in[0] != 1 or shape_in[3] != 3 or min(shape_in[1:3]) < 2:
        raise _refuse(path, f"has input shape {shape_in}")
    if tensor_in.dtype not in INPUT_DTYPES:
        raise _refuse(path, f"has a {tensor_in.dtype} input (float32, uint8 or int8 expected)")
    scale = tensor_in.quantization[0]
    if tensor_in.dtype != np.float32 and not (math.isfinite(scale) and scale > 0):
        raise EdgesegError(f"{path.name}: its {tensor_in.dtype} input has quantization scale {scale} (a positive "
                           "number expected) — the file is damaged; re-convert or re-download it")  # fmt: skip
    output_kind = _output_kind(path, tensor_out)
    return _with_metadata(path, tensor_in, tensor_out, output_kind, metadata or {})


def _with_metadata(path: Path, tensor_in: TensorInfo, tensor_out: TensorInfo, output_kind: str,
                   metadata: dict) -> ModelSpec:  # fmt: skip
    # Metadata may only describe what the tensors leave open; a contradiction means a
    # damaged or hand-edited file, which is refused rather than half-trusted.
    input_size = tensor_in.shape[1:3]
    if metadata.get("input_size") is not None and metadata["input_size"] != list(input_size):
        raise EdgesegError(
            f"{path.name}: metadata input_size {list(metadata['input_size'])} does not match the input "
            f"tensor {list(input_size)} — the file was modified after conversion; re-convert it"
        )
    if metadata.get("output_kind", output_kind) != output_kind:
        raise EdgesegError(
            f"{path.name}: metadata says output_kind {metadata['output_kind']!r} but the output "
            f"{tensor_out.describe()} is {output_kind} — re-convert the model"
        )
    normalization = Normalization.from_dict(metadata.get("normalization"))
    count = tensor_out.shape[3] if output_kind == "logits" else None
    classes = metadata.get("classes")
    if classes is None:
        # An arg-maxed output does not say how many classes there are: DeepLab's usual 21.
        classes = default_classes(count or 21)
    if count is not None and len(classes) != count:
        raise EdgesegError(f"{path.name}: metadata lists {len(classes)} classes but the output has {count} channels")
    colors = metadata.get("colors") or default_colors(len(classes))
    if len(colors) != len(classes):
        raise EdgesegError(f"{path.name}: metadata has {len(colors)} colours for {len(classes)} classes "
                           "— re-convert the model")
    return ModelSpec(
        input=tensor_in,
        output=tensor_out,
        input_size=(int(input_size[0]), int(input_size[1])),
        normalization=normalization,
        output_kind=output_kind,
        classes=tuple(classes),
        colors=tuple((int(red), int(green), int(blue)) for red, green, blue in colors),
        ignore_index=metadata.get("ignore_index"),
        from_metadata=bool(metadata),
    )


def _output_kind(path: Path, tensor: TensorInfo) -> str:
    shape, dtype = tensor.shape, tensor.dtype
    spatial_ok = len(shape) in (3, 4) and shape[0] == 1 and min(shape[1:3]) >= 2
    if not spatial_ok:
        raise _refuse(path, f"has output shape {shape}")
    if len(shape) == 3 or shape[3] == 1:
        if dtype not in processing.LABEL_DTYPES:
            raise _refuse(path, f"has a one-channel {dtype} output {shape} (labels must be int32, int64 or uint8)")
        return "labels"
    if dtype not in LOGIT_DTYPES:
        raise _refuse(path, f"has {dtype} logits (float32, int8 or uint8 expected)")
    if shape[3] > MAX_CLASSES:
        raise _refuse(path, f"has {shape[3]} output channels (at most {MAX_CLASSES} classes)")
    return "logits"


class Segmenter:
    """A TFLite segmentation model applied to BGR frames.

    Example:
        >>> seg = Segmenter("model.tflite", num_threads=4)
        >>> labels = seg.segment(frame)          # (H, W) uint8, frame is (H, W, 3) uint8 BGR
        >>> shown = seg.overlay(frame, labels)   # (H, W, 3) uint8 BGR

    Attributes:
        classes: class names, index = class id.
        colors: (R, G, B) per class.
        backend: the interpreter package in use ("ai_edge_litert", "tflite_runtime", "tensorflow").
        num_threads: CPU threads given to the interpreter.
        spec: the resolved `ModelSpec` (input/output tensors, normalisation, output kind).
        last_timing: `Timing` of the latest `segment` call, or None.
    """

    def __init__(
        self,
        model_path: str | Path,
        num_threads: int | None = None,
        backend: str | None = None,
        delegate: str | None = None,
    ):
        """Load a model and check that it is a segmentation model.

        Args:
            model_path: a .tflite file, with or without edgeseg metadata.
            num_threads: CPU threads; None uses every core.
            backend: force "ai_edge_litert", "tflite_runtime" or "tensorflow".
            delegate: None/"xnnpack" (default), "edgetpu" or "none".

        Raises:
            EdgesegError: a missing or invalid file, a model that is not a segmentation
                model, or a backend/delegate that is not available.
        """
        self.path = Path(model_path)
        self.num_threads = num_threads if num_threads is not None else (os.cpu_count() or 1)
        check_model_file(self.path)
        self.metadata = read_metadata(self.path)  # before the interpreter: damaged metadata needs none
        interpreter, self.backend = load_interpreter(self.path, num_threads, backend, delegate)
        self.delegate = delegate or "xnnpack"
        with interpreter_errors(self.path, "reading its tensors"):
            details = interpreter.get_input_details(), interpreter.get_output_details()
        # Refuse before allocating: allocation applies XNNPACK, which is wasted on a bad model.
        resolve_spec(self.path, *details, self.metadata)
        with interpreter_errors(self.path, "allocating its tensors"):
            interpreter.allocate_tensors()
            details = interpreter.get_input_details(), interpreter.get_output_details()
        # Again with the shapes the kernels gave the tensors: in a damaged file they can differ
        # from the stated ones (an operator wired to another tensor).
        self.spec = resolve_spec(self.path, *details, self.metadata)
        self._interpreter = interpreter
        self.classes: list[str] = list(self.spec.classes)
        self.colors: list[tuple[int, int, int]] = [tuple(c) for c in self.spec.colors]
        self.input_size: tuple[int, int] = tuple(self.spec.input_size)  # (height, width) frames are stretched to
        # Drawing palette in BGR with 256 entries, so a label beyond the known classes
        # (an arg-maxed model without metadata) still gets a colour.
        palette = list(self.colors) + [generated_color(i) for i in range(len(self.colors), 256)]
        self.palette_bgr = np.array([(b, g, r) for r, g, b in palette], dtype=np.uint8)
        self.last_timing: Timing | None = None

    def describe(self) -> dict[str, Any]:
        """The model as the runtime sees it: backend, tensors, inferred or embedded settings."""
        spec = self.spec
        return {
            "model": str(self.path),
            "backend": self.backend,
            "delegate": self.delegate,
            "threads": self.num_threads,
            "input": spec.input.describe(),
            "output": spec.output.describe(),
            "input_size": list(spec.input_size),
            "raw_pixel_input": spec.raw_pixels,
            "normalization": spec.normalization.to_dict(),
            "output_kind": spec.output_kind,
            "num_classes": len(self.classes),
            "metadata": spec.from_metadata,
        }

    # The three steps of `segment`, usable from different threads: `preprocess` and
    # `postprocess` are pure, only `invoke` touches the interpreter.

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame -> (1, h, w, 3) model input (see `processing.prepare_input`)."""
        spec = self.spec
        return processing.prepare_input(
            frame_bgr, spec.input_size, spec.normalization, spec.input.dtype, spec.input.quantization
        )

    def invoke(self, model_input: np.ndarray) -> np.ndarray:
        """Run the model on a prepared input; returns a copy of the raw output tensor.

        Not thread-safe: call it from one thread at a time.

        Raises:
            EdgesegError: the interpreter fails to run the model (a damaged file).
        """
        with interpreter_errors(self.path, "running it"):
            self._interpreter.set_tensor(self.spec.input.index, model_input)
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self.spec.output.index)

    def postprocess(self, output: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
        """Raw output tensor -> (height, width) uint8 labels for a frame of `frame_size`."""
        return processing.postprocess(output, frame_size, self.spec.output.quantization)

    def segment(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Class index for every pixel of `frame_bgr`, whatever the model's input size.

        Args:
            frame_bgr: (H, W, 3) uint8, BGR.

        Returns:
            (H, W) uint8 class indices. The time spent is in `last_timing`.

        Raises:
            ValueError: a frame of the wrong rank or dtype.
        """
        start = time.perf_counter()
        model_input = self.preprocess(frame_bgr)
        prepared = time.perf_counter()
        output = self.invoke(model_input)
        invoked = time.perf_counter()
        labels = self.postprocess(output, frame_bgr.shape[:2])
        done = time.perf_counter()
        self.last_timing = Timing(
            (prepared - start) * 1e3, (invoked - prepared) * 1e3, (done - invoked) * 1e3
        )
        return labels

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) uint8 labels -> (H, W, 3) uint8 BGR image of class colours."""
        if labels.ndim != 2 or labels.dtype != np.uint8:
            raise ValueError(f"expected (H, W) uint8 labels, got {labels.shape} {labels.dtype}")
        return self.palette_bgr.take(labels, axis=0)  # take: several times faster than indexing

    def overlay(self, frame_bgr: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """Blend class colours over a frame.

        Args:
            frame_bgr: (H, W, 3) uint8 BGR.
            labels: (H, W) uint8, e.g. from `segment(frame_bgr)`.
            alpha: weight of the colours, 0 (frame only) to 1 (colours only).

        Returns:
            (H, W, 3) uint8 BGR.

        Raises:
            ValueError: shapes that differ, wrong dtypes, or alpha outside [0, 1].
        """
        return blend(frame_bgr, self.colorize(labels), alpha)
