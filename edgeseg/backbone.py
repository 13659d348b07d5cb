"""MobileNetV2 as a DeepLab backbone: output stride 8/16/32 by dilation, Keras layer names.

Every layer is named exactly as in `keras.applications.MobileNetV2`, so ImageNet weights (Keras's
own file or a local one) load by name. Where the output stride is reached, later strided
depthwise convolutions keep stride 1 and the blocks after them are dilated instead, as in
DeepLab: the block that would have strided runs at the current rate, then the rate doubles.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import keras
from keras import layers

from runtime.errors import EdgesegError, ParameterError

# (expansion, output channels, stride) of the 17 inverted residual blocks.
BLOCKS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)  # fmt: skip
BN = dict(epsilon=1e-3, momentum=0.999)
# Every layer name `mobilenet_v2_features` makes (keras.applications' names), and no other.
_LAYER_NAME = re.compile(r"(Conv1|bn_Conv1|Conv1_relu|expanded_conv_.*|block_\d+_.*|Conv_1|Conv_1_bn|out_relu)")


def is_backbone_layer(name: str) -> bool:
    """Whether a layer name is one of the MobileNetV2 backbone's (keras.applications names)."""
    return _LAYER_NAME.fullmatch(name) is not None


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def mobilenet_v2_features(
    inputs: keras.KerasTensor, alpha: float = 1.0, output_stride: int = 32, channel_divisor: int = 8
) -> dict[str, keras.KerasTensor]:
    """Run MobileNetV2 (without its classifier) on `inputs` and return every layer's output.

    Args:
        inputs: Image tensor (batch, H, W, 3), normalised to [-1, 1].
        alpha: Width multiplier.
        output_stride: 8, 16 or 32: the stride of the deepest features.
        channel_divisor: Widths are rounded to multiples of it (8: keras.applications; 1: TF
            DeepLab's MobileNetV2 below alpha 1).

    Returns:
        Layer name -> output tensor, for every layer of the backbone (keras.applications
        names; `out_relu` is the last). A model built on a subset only keeps what it uses.
    """
    features: dict[str, keras.KerasTensor] = {}

    def apply(layer: layers.Layer, x):
        features[layer.name] = layer(x)
        return features[layer.name]

    # === Stem ===
    x = apply(layers.Conv2D(make_divisible(32 * alpha, channel_divisor), 3, strides=2, padding="same",
                            use_bias=False, name="Conv1"), inputs)  # fmt: skip
    x = apply(layers.BatchNormalization(**BN, name="bn_Conv1"), x)
    x = apply(layers.ReLU(6.0, name="Conv1_relu"), x)

    # === Inverted residual blocks ===
    stride, rate = 2, 1
    for block_id, (expansion, channels, block_stride) in enumerate(BLOCKS):
        if block_stride == 2 and stride == output_stride:
            # Stop striding: this block runs at the current rate, the following ones at twice it.
            block_stride, block_rate, rate = 1, rate, rate * 2
        else:
            stride *= block_stride
            block_rate = rate
        x = _inverted_res_block(apply, x, block_id, expansion, make_divisible(int(channels * alpha), channel_divisor),
                                block_stride, block_rate)  # fmt: skip

    # === Last 1x1 convolution (not used by DeepLab's default taps) ===
    last = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    x = apply(layers.Conv2D(last, 1, use_bias=False, name="Conv_1"), x)
    x = apply(layers.BatchNormalization(**BN, name="Conv_1_bn"), x)
    apply(layers.ReLU(6.0, name="out_relu"), x)
    return features


def _inverted_res_block(apply, inputs, block_id: int, expansion: int, channels: int,
                        stride: int, rate: int):  # fmt: skip
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    x = inputs
    if block_id:
        x = apply(layers.Conv2D(expansion * inputs.shape[-1], 1, use_bias=False,
                                name=f"{prefix}expand"), x)  # fmt: skip
        x = apply(layers.BatchNormalization(**BN, name=f"{prefix}expand_BN"), x)
        x = apply(layers.ReLU(6.0, name=f"{prefix}expand_relu"), x)
    if stride == 2:
        # Same explicit padding as keras.applications: one pixel more on the far side when even.
        pad = tuple((size % 2, 1) for size in x.shape[1:3])
        x = apply(layers.ZeroPadding2D(pad, name=f"{prefix}pad"), x)
    x = apply(layers.DepthwiseConv2D(3, strides=stride, dilation_rate=rate, use_bias=False,
                                     padding="same" if stride == 1 else "valid",
                                     name=f"{prefix}depthwise"), x)  # fmt: skip
    x = apply(layers.BatchNormalization(**BN, name=f"{prefix}depthwise_BN"), x)
    x = apply(layers.ReLU(6.0, name=f"{prefix}depthwise_relu"), x)
    x = apply(layers.Conv2D(channels, 1, use_bias=False, name=f"{prefix}project"), x)
    x = apply(layers.BatchNormalization(**BN, name=f"{prefix}project_BN"), x)
    if stride == 1 and inputs.shape[-1] == channels:
        x = apply(layers.Add(name=f"{prefix}add"), [inputs, x])
    return x


def load_backbone_weights(model: keras.Model, weights: str | Path, alpha: float) -> int:
    """Copy ImageNet MobileNetV2 weights into the backbone layers of `model`, by layer name.

    Args:
        model: A model containing layers named as in keras.applications.MobileNetV2.
        weights: "imagenet" (Keras's own download and cache) or the path of a `.h5` /
            `.weights.h5` file saved from `keras.applications.MobileNetV2(include_top=False)`.
        alpha: Width multiplier of the backbone in `model`.

    Returns:
        The number of layers whose weights were loaded.

    Raises:
        EdgesegError: if the file is missing or does not fit the backbone.
    """
    if str(weights) == "imagenet":
        try:
            reference = keras.applications.MobileNetV2(
                input_shape=(224, 224, 3), alpha=alpha, include_top=False, weights="imagenet"
            )
        except Exception as error:  # no network, a proxy, a full disk: all end the same way
            reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            raise ParameterError(
                f"could not get Keras's ImageNet MobileNetV2 weights (alpha {alpha:g}): {reason}; "
                "give a local .weights.h5 as {backbone_weights}, or none", "backbone_weights"
            ) from None
    else:
        path = Path(weights)
        if not path.is_file():
            raise EdgesegError(f"backbone weights file {path} does not exist; give an existing "
                               "path, 'imagenet' or 'none'")  # fmt: skip
        if not path.name.endswith(".h5"):
            raise EdgesegError(f"backbone weights file {path} is not a .h5 or .weights.h5 file")
        reference = keras.applications.MobileNetV2(
            input_shape=(224, 224, 3), alpha=alpha, include_top=False, weights=None
        )
        try:
            with warnings.catch_warnings():  # Keras warns per layer before it raises
                warnings.simplefilter("ignore")
                reference.load_weights(str(path))
        except Exception as error:  # h5py, Keras and shape errors all mean "does not fit"
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise EdgesegError(
                f"backbone weights file {path} does not fit a MobileNetV2 backbone with alpha "
                f"{alpha:g} ({first_line[:200]}); save it from "
                "keras.applications.MobileNetV2(include_top=False) with the same alpha"
            ) from None
    loaded = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            source = reference.get_layer(layer.name)
        except ValueError:
            continue  # a DeepLab layer, not a backbone one
        values = source.get_weights()
        if [v.shape for v in values] != [tuple(w.shape) for w in layer.weights]:
            raise EdgesegError(f"backbone weights for layer {layer.name} have shapes "
                               f"{[v.shape for v in values]}, the model needs "
                               f"{[tuple(w.shape) for w in layer.weights]}")  # fmt: skip
        layer.set_weights(values)
        loaded += 1
    return loaded
