"""Pre- and post-processing: pure numpy/OpenCV functions shared by the runtime and the converter.

Pre-processing turns a BGR camera frame into the model input; post-processing turns the model
output into one class index per pixel of that frame. The converter prepares its calibration
images with `prepare_input` too, so a model is calibrated on exactly what it sees at run time.

Conventions: frames are OpenCV images, (H, W, 3) uint8 BGR. Models take RGB, NHWC, batch 1.
A float model input is `(RGB pixel - mean) / std` (`Normalization`), MobileNet-style [-1, 1]
by default. Sizes are (height, width).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

QUANTIZED_DTYPES = (np.uint8, np.int8)
LABEL_DTYPES = (np.int32, np.int64, np.uint8)

# How close an input quantization must be to the normalisation for raw pixels to go straight
# in: the relative error of the scale and the zero-point offset (in pixel levels). A converter
# calibrated on [-1, 1] data gives scale 2/255 and zero point 127 or 128 (rounding), which
# differs from (pixel - 127.5) / 127.5 by half a level at most: below the quantization noise.
_SCALE_TOLERANCE = 0.02
_ZERO_POINT_TOLERANCE = 1.0


@dataclass(frozen=True)
class Normalization:
    """The float input a model expects: `(RGB pixel - mean) / std`, per channel (R, G, B)."""

    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)

    @classmethod
    def from_dict(cls, value: dict | None) -> Normalization:
        """Build from the metadata form `{"mean": [..3], "std": [..3]}`; None gives the default.

        Raises:
            ValueError: a mean or std that is not 1 or 3 numbers, or a std that is not positive.
        """
        if value is None:
            return cls()
        mean = _three(value.get("mean", cls.mean), "mean")
        std = _three(value.get("std", cls.std), "std")
        if min(std) <= 0:
            raise ValueError(f"normalization std must be positive, got {list(std)}")
        return cls(mean, std)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}


MOBILENET = Normalization()


def _three(value, name: str) -> tuple[float, float, float]:
    values = [float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float64))]
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise ValueError(f"normalization {name} needs 1 or 3 values, got {value!r}")
    return tuple(values)


def _check_frame(frame_bgr: np.ndarray) -> None:
    if not isinstance(frame_bgr, np.ndarray) or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        shape = getattr(frame_bgr, "shape", type(frame_bgr).__name__)
        raise ValueError(f"expected a BGR frame of shape (H, W, 3), got {shape}")
    if frame_bgr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got dtype {frame_bgr.dtype}")


def resize_rgb(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a BGR frame to the model input size and reorder it to RGB.

    The frame is stretched to `size` (no letterbox): the label map is stretched back, so each
    label lands on the pixel it was computed from.

    Args:
        frame_bgr: (H, W, 3) uint8, BGR.
        size: (height, width) of the model input.

    Returns:
        (height, width, 3) uint8, RGB.

    Raises:
        ValueError: wrong rank, channel count or dtype.
    """
    _check_frame(frame_bgr)
    height, width = size
    if frame_bgr.shape[:2] != (height, width):
        # Resize before reordering: fewer pixels to swap when the frame is the larger one.
        frame_bgr = cv2.resize(frame_bgr, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def normalize(image_rgb: np.ndarray, normalization: Normalization = MOBILENET) -> np.ndarray:
    """Float model input from RGB pixels: `(pixel - mean) / std` per channel.

    Args:
        image_rgb: (..., 3) uint8 or float, RGB; e.g. (H, W, 3) or (N, H, W, 3).
        normalization: the model's mean and std.

    Returns:
        float32 array of the same shape.

    Raises:
        ValueError: last axis not 3, or a non-numeric dtype.
    """
    if image_rgb.ndim < 1 or image_rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB values with a last axis of 3, got shape {image_rgb.shape}")
    if not (np.issubdtype(image_rgb.dtype, np.integer) or np.issubdtype(image_rgb.dtype, np.floating)):
        raise ValueError(f"expected integer or float pixels, got dtype {image_rgb.dtype}")
    mean = np.asarray(normalization.mean, dtype=np.float32)
    scale = 1.0 / np.asarray(normalization.std, dtype=np.float32)
    return (image_rgb.astype(np.float32) - mean) * scale


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Quantize float values as TFLite does: `round(value / scale) + zero_point`, clipped.

    Args:
        values: float array, any shape.
        scale: the tensor's quantization scale (> 0).
        zero_point: the tensor's zero point.
        dtype: np.uint8 or np.int8.

    Returns:
        Array of `dtype`, same shape.

    Raises:
        ValueError: a dtype that is not uint8/int8, or a scale that is not positive.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        raise ValueError(f"can only quantize to uint8 or int8, got {dtype}")
    if not scale > 0:
        raise ValueError(f"quantization scale must be positive, got {scale}")
    info = np.iinfo(dtype)
    scaled = np.asarray(values, dtype=np.float32) / np.float32(scale)
    # Halves round away from zero, as TFLite's kernels do (np.round would round them to even).
    quantized = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zero_point
    return np.clip(quantized, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float values of a quantized tensor: `(value - zero_point) * scale`, as float32.

    The subtraction is done in int64 so an int8/uint8 value never wraps around.
    """
    return ((np.asarray(values).astype(np.int64) - zero_point) * scale).astype(np.float32)


def folds_normalization(quantization: tuple[float, int], normalization: Normalization = MOBILENET) -> bool:
    """Whether a uint8 input quantization already is the normalisation (raw pixels go straight in).

    True when `(pixel - zero_point) * scale` matches `(pixel - mean) / std` on every channel
    within a 2% scale error and one pixel level of offset: what `edgeseg convert` produces
    with its default uint8 input.

    Args:
        quantization: (scale, zero_point) of the model's uint8 input tensor.
        normalization: the normalisation the model was trained with.
    """
    scale, zero_point = quantization
    if not scale > 0:
        return False
    return all(
        abs(scale * std - 1.0) <= _SCALE_TOLERANCE and abs(zero_point - mean) <= _ZERO_POINT_TOLERANCE
        for mean, std in zip(normalization.mean, normalization.std, strict=False)
    )


@lru_cache(maxsize=16)
def _pixel_table(normalization: Normalization, scale: float, zero_point: int, dtype_name: str) -> np.ndarray:
    # Every possible pixel value, normalised then quantized: a (1, 256, 3) table for cv2.LUT,
    # which is what `normalize` followed by `quantize` would give, at the cost of one lookup.
    levels = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)
    table = quantize(normalize(levels, normalization), scale, zero_point, np.dtype(dtype_name))
    return table[None]


def prepare_input(
    frame_bgr: np.ndarray,
    size: tuple[int, int],
    normalization: Normalization = MOBILENET,
    dtype=np.float32,
    quantization: tuple[float, int] = (0.0, 0),
) -> np.ndarray:
    """Model input from a BGR frame: resize, reorder to RGB, convert to the input's type.

    - float32 input: `normalize`d RGB (the converter's calibration images use this form).
    - uint8 input whose quantization folds the normalisation (`folds_normalization`): the
      resized RGB pixels themselves, so pre-processing is one resize.
    - any other uint8/int8 input: normalised, then quantized with the tensor's own
      (scale, zero_point).

    Args:
        frame_bgr: (H, W, 3) uint8, BGR, any size.
        size: (height, width) of the model input.
        normalization: the model's float normalisation.
        dtype: the input tensor's dtype: np.float32, np.uint8 or np.int8.
        quantization: the input tensor's (scale, zero_point); ignored for float32.

    Returns:
        (1, height, width, 3) array of `dtype`.

    Raises:
        ValueError: a frame of the wrong rank or dtype, an unsupported input dtype, or a
            quantized input without a positive scale.
    """
    rgb = resize_rgb(frame_bgr, size)
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return normalize(rgb, normalization)[None]
    if dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        raise ValueError(f"unsupported model input dtype {dtype}: expected float32, uint8 or int8")
    scale, zero_point = float(quantization[0]), int(quantization[1])
    if dtype == np.uint8 and folds_normalization((scale, zero_point), normalization):
        return rgb[None]
    if not scale > 0:
        raise ValueError(f"a {dtype} input needs a positive quantization scale, got {scale}")
    return cv2.LUT(rgb, _pixel_table(normalization, scale, zero_point, dtype.name))[None]


def labels_from_output(output: np.ndarray, quantization: tuple[float, int] = (0.0, 0)) -> np.ndarray:
    """Class index per output cell from a segmentation model's output, at the output's size.

    - Logits (1, h, w, C) with C >= 2: arg-max over C. For int8/uint8 logits the arg-max is
      taken on the raw integers, since a positive scale keeps their order; a scale <= 0
      (not produced by TFLite's converter, but legal) is dequantized first.
    - Labels, already arg-maxed in the graph: int32/int64/uint8 of shape (1, h, w) or
      (1, h, w, 1); returned as they are.

    Args:
        output: the model's output tensor (batch 1).
        quantization: the output tensor's (scale, zero_point); used for int8/uint8 logits.

    Returns:
        (h, w) uint8 class indices.

    Raises:
        ValueError: a shape or dtype that is neither logits nor labels, or more than 256 classes.
    """
    output = np.asarray(output)
    if output.ndim == 3 or (output.ndim == 4 and output.shape[3] == 1):
        if output.dtype not in LABEL_DTYPES or output.shape[0] != 1:
            raise ValueError(
                f"expected labels of shape (1, h, w[, 1]) and dtype int32/int64/uint8, "
                f"got {output.shape} {output.dtype}"
            )
        return output.reshape(output.shape[1:3]).astype(np.uint8, copy=False)
    if output.ndim != 4 or output.shape[0] != 1:
        raise ValueError(f"expected logits of shape (1, h, w, C) or labels (1, h, w), got {output.shape}")
    if output.shape[3] > 256:
        raise ValueError(f"at most 256 classes fit a uint8 label map, got {output.shape[3]}")
    logits = output[0]
    if logits.dtype in QUANTIZED_DTYPES:
        scale, zero_point = quantization
        if not scale > 0:
            logits = dequantize(logits, scale, zero_point)
    elif not np.issubdtype(logits.dtype, np.floating):
        raise ValueError(f"expected float32, int8 or uint8 logits, got {logits.dtype}")
    return np.argmax(logits, axis=-1).astype(np.uint8)


@lru_cache(maxsize=32)
def _nearest_index(source_length: int, target_length: int) -> np.ndarray:
    # Corner-aligned nearest neighbour: the first and last cells land on the first and last
    # pixels. TFLite's stride-2 'same' convolutions on an odd size (513 -> 257 -> 129) put
    # output cell i at input pixel 2i, i.e. exactly this geometry.
    if target_length == 1 or source_length == 1:
        return np.zeros(target_length, dtype=np.intp)
    positions = np.arange(target_length) * ((source_length - 1) / (target_length - 1))
    return np.rint(positions).astype(np.intp)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label map with nearest neighbour (corner-aligned), never mixing classes.

    Args:
        labels: (h, w) uint8 class indices.
        size: (height, width) wanted, e.g. the frame's.

    Returns:
        (height, width) uint8.

    Raises:
        ValueError: not a 2-D uint8 array.
    """
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"expected a (h, w) uint8 label map, got {labels.shape} {labels.dtype}")
    height, width = size
    if labels.shape == (height, width):
        return labels
    rows = _nearest_index(labels.shape[0], height)
    columns = _nearest_index(labels.shape[1], width)
    return labels[rows][:, columns]


def postprocess(
    output: np.ndarray, frame_size: tuple[int, int], quantization: tuple[float, int] = (0.0, 0)
) -> np.ndarray:
    """Label map at frame size from a model output: `labels_from_output`, then `resize_labels`.

    Args:
        output: logits (1, h, w, C) float32/int8/uint8, or labels (1, h, w[, 1]).
        frame_size: (height, width) of the frame the input was made from.
        quantization: the output tensor's (scale, zero_point).

    Returns:
        (height, width) uint8 class indices.
    """
    return resize_labels(labels_from_output(output, quantization), frame_size)
