"""Pre- and post-processing on small hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import processing
from runtime.processing import MOBILENET, Normalization


def test_prepare_input_float_resizes_reorders_and_normalizes():
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    model_input = processing.prepare_input(frame, (2, 3))
    assert model_input.shape == (1, 2, 3, 3) and model_input.dtype == np.float32
    np.testing.assert_allclose(model_input[0, 0, 0], [-1.0, -1.0, 1.0])  # RGB: blue last


def test_prepare_input_passes_pixels_when_quantization_folds_normalization():
    frame = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    for zero_point in (127, 128):
        model_input = processing.prepare_input(frame, (2, 2), MOBILENET, np.uint8, (2 / 255, zero_point))
        assert model_input.dtype == np.uint8
        np.testing.assert_array_equal(model_input[0], frame[..., ::-1])


def test_prepare_input_quantizes_from_the_tensor_parameters():
    frame = np.array([[[0, 128, 255]]], np.uint8)  # B, G, R
    # uint8 input with its own quantization (not the normalisation): normalise, then quantize.
    scale, zero_point = 0.01, 10
    model_input = processing.prepare_input(frame, (1, 1), MOBILENET, np.uint8, (scale, zero_point))
    np.testing.assert_array_equal(model_input[0, 0, 0], [110, 10, 0])
    # int8 input: the same, in int8.
    model_input = processing.prepare_input(frame, (1, 1), MOBILENET, np.int8, (0.0079, -1))
    assert model_input.dtype == np.int8
    np.testing.assert_array_equal(model_input[0, 0, 0], [126, -1, -128])


def test_prepare_input_uses_custom_normalization():
    norm = Normalization(mean=(100.0, 0.0, 0.0), std=(50.0, 1.0, 255.0))
    frame = np.full((1, 1, 3), 200, np.uint8)
    model_input = processing.prepare_input(frame, (1, 1), norm)
    np.testing.assert_allclose(model_input[0, 0, 0], [2.0, 200.0, 200 / 255], rtol=1e-6)
    assert not processing.folds_normalization((2 / 255, 128), norm)
    assert processing.folds_normalization((2 / 255, 128), MOBILENET)
    assert not processing.folds_normalization((1 / 255, 0), MOBILENET)


@pytest.mark.parametrize(
    "frame",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((1, 4, 4, 3), np.uint8),
     np.zeros((4, 4, 3), np.float32)],  # fmt: skip
)
def test_prepare_input_refuses_wrong_rank_or_dtype(frame):
    with pytest.raises(ValueError):
        processing.prepare_input(frame, (2, 2))


def test_prepare_input_refuses_unsupported_input_dtype():
    with pytest.raises(ValueError, match="float16"):
        processing.prepare_input(np.zeros((2, 2, 3), np.uint8), (2, 2), dtype=np.float16)
    with pytest.raises(ValueError, match="scale"):
        processing.prepare_input(np.zeros((2, 2, 3), np.uint8), (2, 2), dtype=np.int8, quantization=(0.0, 0))


def test_normalization_from_metadata():
    assert Normalization.from_dict(None) == MOBILENET
    assert Normalization.from_dict({"mean": 0, "std": [1, 2, 3]}) == Normalization((0, 0, 0), (1, 2, 3))
    with pytest.raises(ValueError):
        Normalization.from_dict({"std": [1, 0, 1]})
    with pytest.raises(ValueError):
        Normalization.from_dict({"mean": [1, 2]})


def test_quantize_and_dequantize_round_trip_and_clip():
    values = np.array([-2.0, -1.0, 0.0, 0.5, 3.0], np.float32)
    quantized = processing.quantize(values, 0.01, -1, np.int8)
    np.testing.assert_array_equal(quantized, [-128, -101, -1, 49, 127])
    np.testing.assert_allclose(processing.dequantize(quantized[1:4], 0.01, -1), values[1:4], atol=0.005)
    with pytest.raises(ValueError):
        processing.quantize(values, 0.0, 0, np.int8)
    with pytest.raises(ValueError):
        processing.quantize(values, 0.1, 0, np.int16)


def _int8_logits(labels: np.ndarray, classes: int) -> np.ndarray:
    # Low scores everywhere, the wanted class 40 levels higher.
    rng = np.random.default_rng(0)
    logits = rng.integers(-128, -60, size=(1, *labels.shape, classes)).astype(np.int8)
    rows, columns = np.indices(labels.shape)
    logits[0, rows, columns, labels] = rng.integers(-20, 127, size=labels.shape)
    return logits


def test_labels_from_int8_logits_take_argmax_on_the_integers():
    expected = np.random.default_rng(1).integers(0, 5, size=(3, 4)).astype(np.uint8)
    logits = _int8_logits(expected, 5)
    labels = processing.labels_from_output(logits, (0.05, -3))
    assert labels.dtype == np.uint8 and labels.shape == (3, 4)
    np.testing.assert_array_equal(labels, expected)


def test_labels_from_uint8_and_float_logits():
    expected = np.array([[0, 1], [2, 1]], np.uint8)
    one_hot = np.eye(3, dtype=np.float32)[expected][None]
    np.testing.assert_array_equal(processing.labels_from_output(one_hot), expected)
    quantized = (one_hot * 200 + 20).astype(np.uint8)
    np.testing.assert_array_equal(processing.labels_from_output(quantized, (0.1, 20)), expected)


def test_negative_scale_is_dequantized_before_argmax():
    # With a negative scale the largest float is the smallest integer.
    logits = np.array([[[[10, -50, 3]]]], np.int8)
    assert processing.labels_from_output(logits, (0.1, 0))[0, 0] == 0
    assert processing.labels_from_output(logits, (-0.1, 0))[0, 0] == 1


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("shape", [(1, 2, 3), (1, 2, 3, 1)])
def test_label_outputs_are_only_reshaped(dtype, shape):
    values = np.array([[0, 4, 7], [1, 2, 20]], dtype)
    labels = processing.labels_from_output(values.reshape(shape))
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, values)


@pytest.mark.parametrize(
    "output",
    [np.zeros((1, 1000), np.float32), np.zeros((2, 3), np.int32), np.zeros((2, 3, 3, 4), np.float32),
     np.zeros((1, 3, 3), np.float32), np.zeros((1, 3, 3, 4), np.int32),
     np.zeros((1, 2, 2, 300), np.float32)],  # fmt: skip
)
def test_labels_from_output_refuses_wrong_rank_or_dtype(output):
    with pytest.raises(ValueError):
        processing.labels_from_output(output)


def test_resize_labels_nearest_corner_aligned():
    labels = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], np.uint8)  # stride 2 of a 5x5 input
    resized = processing.resize_labels(labels, (5, 5))
    # Cell i sits on pixel 2i: corners and centres keep their labels, nothing is blended.
    assert resized[0, 0] == 0 and resized[0, 4] == 2 and resized[4, 0] == 6 and resized[4, 4] == 8
    assert resized[2, 2] == 4
    assert set(np.unique(resized)) == set(range(9))
    np.testing.assert_array_equal(processing.resize_labels(labels, (1, 2)), [[0, 2]])
    with pytest.raises(ValueError):
        processing.resize_labels(labels.astype(np.int32), (5, 5))
    with pytest.raises(ValueError):
        processing.resize_labels(labels[None], (5, 5))


def test_postprocess_gives_frame_sized_labels():
    expected = np.random.default_rng(2).integers(0, 4, size=(25, 33)).astype(np.uint8)
    labels = processing.postprocess(_int8_logits(expected, 4), (480, 640), (0.1, 0))
    assert labels.shape == (480, 640) and labels.dtype == np.uint8
    assert labels[0, 0] == expected[0, 0] and labels[-1, -1] == expected[-1, -1]
    assert set(np.unique(labels)) == set(np.unique(expected))
