"""Bias correction: the corrected bias cancels int8 weight rounding exactly for a constant input."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from converters.bias import corrected_biases, rounding_error  # noqa: E402


def test_rounding_error_is_tflites_symmetric_per_channel_int8():
    weights = np.array([[1.0, -0.2], [0.3, 0.1], [-0.5, 0.05]])  # channels on the last axis
    error = rounding_error(weights)
    # channel 0: step 1/127, 0.3 -> 38 steps; channel 1: step 0.2/127, 0.05 -> 31.75 -> 32 steps
    assert error[1, 0] == pytest.approx(38 / 127 - 0.3)
    assert error[2, 1] == pytest.approx(32 * 0.2 / 127 - 0.05)
    assert error[0, 0] == pytest.approx(0.0) and error[0, 1] == pytest.approx(0.0)  # the maxima are exact
    assert np.abs(error).max() <= 0.5 * 1.0 / 127 + 1e-12
    assert np.all(rounding_error(np.zeros((3, 2))) == 0)


def _constant_input(channels: int, values) -> np.ndarray:
    return np.broadcast_to(np.asarray(values, np.float32), (1, 6, 6, channels)).copy()


def _model(kind: str):
    rng = np.random.default_rng(0)
    inputs = keras.Input((6, 6, 3), batch_size=1)
    if kind == "conv+bias":
        conv = keras.layers.Conv2D(4, 3, use_bias=True)
        outputs = conv(inputs)
        conv.set_weights([rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)])
        return keras.Model(inputs, outputs), conv, None
    conv = keras.layers.DepthwiseConv2D(3, use_bias=False) if kind == "depthwise+bn" else keras.layers.Conv2D(4, 3, use_bias=False)
    bn = keras.layers.BatchNormalization()
    outputs = bn(conv(inputs))
    conv.set_weights([rng.normal(size=conv.kernel.shape)])
    channels = bn.gamma.shape[0]
    bn.set_weights([rng.uniform(0.5, 2, channels), rng.normal(size=channels), rng.normal(size=channels),
                    rng.uniform(0.01, 0.5, channels)])  # fmt: skip
    return keras.Model(inputs, outputs), conv, bn


def _int8_weights_output(conv, bn, x) -> np.ndarray:
    """What TFLite computes from the model's current weights: BN folded, weights rounded."""
    kernel = np.asarray(conv.kernel, np.float64)
    depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
    if depthwise:
        kernel = kernel[:, :, :, 0]
    if bn is None:
        scale, bias = 1.0, np.asarray(conv.bias, np.float64)
    else:
        scale = np.asarray(bn.gamma, np.float64) / np.sqrt(np.asarray(bn.moving_variance, np.float64) + bn.epsilon)
        bias = np.asarray(bn.beta, np.float64) - scale * np.asarray(bn.moving_mean, np.float64)
    folded = kernel * scale
    quantized = folded + rounding_error(folded)
    values = x[0, 0, 0].astype(np.float64)
    taps = quantized.sum(axis=(0, 1))  # a constant input and 'valid' padding: every tap sees it
    return (taps * values if depthwise else values @ taps) + bias


@pytest.mark.parametrize("kind", ["conv+bias", "conv+bn", "depthwise+bn"])
def test_corrected_bias_cancels_the_rounding_shift_and_is_restored(kind):
    model, conv, bn = _model(kind)
    x = _constant_input(3, [0.7, 2.5, 5.9])  # ReLU6-like inputs: positive means
    expected = np.asarray(model(x, training=False))[0, 0, 0]
    before = [np.asarray(w).copy() for w in model.weights]
    uncorrected = _int8_weights_output(conv, bn, x)
    assert np.abs(uncorrected - expected).max() > 1e-4  # rounding does shift the output
    with corrected_biases(model, [[x]] * 3) as count:
        assert count == 1
        corrected = _int8_weights_output(conv, bn, x)
    np.testing.assert_allclose(corrected, expected, atol=1e-5)
    for weight, value in zip(model.weights, before):
        np.testing.assert_array_equal(np.asarray(weight), value)


def test_biases_are_restored_when_conversion_fails():
    model, conv, _ = _model("conv+bias")
    bias = np.asarray(conv.bias).copy()
    with pytest.raises(RuntimeError), corrected_biases(model, [[_constant_input(3, 1.0)]]):
        assert not np.array_equal(np.asarray(conv.bias), bias)
        raise RuntimeError("converter failed")
    np.testing.assert_array_equal(np.asarray(conv.bias), bias)


def test_layers_tflite_cannot_correct_are_left_alone():
    inputs = keras.Input((6, 6, 3), batch_size=1)
    hidden = keras.layers.Conv2D(4, 1, use_bias=False)(inputs)  # no bias, no batch norm
    outputs = keras.layers.ReLU()(hidden)
    model = keras.Model(inputs, outputs)
    with corrected_biases(model, [[_constant_input(3, 1.0)]]) as count:
        assert count == 0
