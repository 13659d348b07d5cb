"""DeepLabV3(+) assembled from backbone -> ASPP -> decoder -> head, joined by named feature maps."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from edgeseg import pretrained
from edgeseg.backbone import load_backbone_weights, mobilenet_v2_features
from edgeseg.config import ModelConfig
from edgeseg.layers import StaticResize
from edgeseg.presets import DEFAULT_PRESET, get_config
from runtime.atomic import atomic_path, check_output
from runtime.errors import EdgesegError, ParameterError

BN = dict(epsilon=1e-5, momentum=0.99)


@keras.saving.register_keras_serializable(package="edgeseg")
class DeepLab(keras.Model):
    """A functional DeepLabV3(+) model that carries its `ModelConfig`.

    Saved as `.keras`, it is rebuilt from the config and its weights loaded back, so custom
    code and configuration travel together.

    Args:
        config: The architecture.
        labels: {"classes": [...], "colors": [[R, G, B], ...]} of a model whose classes are
            known (pretrained weights), or None; `edgeseg convert` embeds them.
    """

    def __init__(self, config: ModelConfig, labels: dict | None = None, **kwargs):
        inputs, outputs = _assemble(config)
        kwargs.setdefault("name", config.preset)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.config = config
        self.labels = labels

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "config": self.config.to_dict()}
        return {**config, "labels": self.labels} if self.labels else config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        return cls(ModelConfig.from_dict(config.pop("config")), **config)


def build_model(config: ModelConfig | str = DEFAULT_PRESET, *, backbone_weights: str | Path | None = None,
                weights: str | None = None, **overrides) -> DeepLab:  # fmt: skip
    """Build a DeepLabV3(+) model from a preset or a configuration, optionally pretrained.

    Example:
        >>> model = build_model("deeplabv3plus_mnv2", num_classes=11, input_size=(360, 480),
        ...                     backbone_weights="imagenet")
        >>> voc = build_model("deeplabv3_mnv2", weights="pascalvoc", backbone_alpha=0.5)

    Args:
        config: A preset name (`edgeseg.presets.PRESETS`) or a `ModelConfig`.
        backbone_weights: None or "none" for random initialisation, "imagenet" for Keras's
            ImageNet weights, or the path of a MobileNetV2 `.h5` / `.weights.h5` file.
        weights: Pretrained weights of the whole model, e.g. "pascalvoc" (see
            `edgeseg.pretrained`); the model then carries their class names and colours.
        **overrides: `ModelConfig` fields to change, e.g. `num_classes=11`,
            `input_size=(360, 480)`, `backbone_alpha=0.35`.

    Returns:
        A DeepLab model: input (1, H, W, 3) float32 in [-1, 1], output logits
        (1, h, w, num_classes) at `config.output_stride`.

    Raises:
        EdgesegError: an unknown preset or option, an invalid value, backbone weights that
            cannot be found or do not fit, pretrained weights that do not fit the model, or
            both `weights` and `backbone_weights`.
    """
    if weights is not None and backbone_weights not in (None, "none"):
        raise ParameterError(f"{{weights}} {weights} loads the whole model, backbone included; drop "
                             "{backbone_weights}", "weights", "backbone_weights")  # fmt: skip
    if isinstance(config, str):
        config = pretrained.pretrained_config(weights, config, **overrides) if weights else get_config(config, **overrides)
    else:
        config = config.replace(**overrides)
    if weights is not None:
        model = DeepLab(config, labels=pretrained.check_fits(weights, config).labels())
        pretrained.load_pretrained(model, weights)
        return model
    model = DeepLab(config)
    if backbone_weights is not None and str(backbone_weights) != "none":
        load_backbone_weights(model, backbone_weights, config.backbone_alpha)
    return model


def _assemble(config: ModelConfig):
    # === Backbone ===
    inputs = keras.Input((*config.input_size, 3), batch_size=1, name="image")
    features = mobilenet_v2_features(inputs, config.backbone_alpha, config.backbone_output_stride,
                                     config.backbone_channel_divisor)  # fmt: skip
    for tap in (config.backbone_tap, config.decoder_tap if config.decoder else None):
        if tap is not None and tap not in features:
            raise EdgesegError(f"unknown backbone layer {tap!r}; use a keras.applications.MobileNetV2 "
                               "layer name such as block_3_expand_relu")  # fmt: skip
    x = aspp(features[config.backbone_tap], config)

    # === Decoder ===
    if config.decoder:
        x = decoder(x, features[config.decoder_tap], config)

    # === Head ===
    x = layers.Conv2D(config.num_classes, 1, name="segmentation_head_conv")(x)
    if config.head_upsample:
        x = StaticResize(config.input_size, name="segmentation_head_resize")(x)
    return inputs, x


def conv_bn_relu(x, filters: int, name: str, kernel_size: int = 1, rate: int = 1,
                 separable: bool = False):  # fmt: skip
    """Conv (or depthwise + pointwise) with batch norm and ReLU, named `name_*`."""
    if separable and kernel_size > 1:
        x = layers.DepthwiseConv2D(kernel_size, padding="same", dilation_rate=rate, use_bias=False,
                                   name=f"{name}_depthwise")(x)  # fmt: skip
        x = layers.BatchNormalization(**BN, name=f"{name}_depthwise_bn")(x)
        x = layers.ReLU(name=f"{name}_depthwise_relu")(x)
        kernel_size = 1
    x = layers.Conv2D(filters, kernel_size, padding="same", dilation_rate=rate, use_bias=False,
                      name=f"{name}_conv")(x)  # fmt: skip
    x = layers.BatchNormalization(**BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def aspp(x, config: ModelConfig):
    """Atrous spatial pyramid pooling: 1x1, one 3x3 per rate, image pooling; concat; project."""
    size = tuple(x.shape[1:3])
    branches = [conv_bn_relu(x, config.aspp_filters, "aspp_conv_0")]
    for index, rate in enumerate(config.aspp_rates, start=1):
        branches.append(conv_bn_relu(x, config.aspp_filters, f"aspp_conv_{index}", 3, rate,
                                     config.aspp_separable))  # fmt: skip
    if config.aspp_image_pooling:
        # A global mean (MEAN) runs inside XNNPACK in int8; AVERAGE_POOL_2D of the same size does not.
        pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
        pooled = conv_bn_relu(pooled, config.aspp_filters, "aspp_pool")
        branches.append(StaticResize(size, name="aspp_pool_resize")(pooled))
    if len(branches) > 1:
        x = layers.Concatenate(name="aspp_concat")(branches)
    else:
        x = branches[0]
    x = conv_bn_relu(x, config.aspp_filters, "aspp_projection")
    if config.aspp_dropout:
        x = layers.Dropout(config.aspp_dropout, name="aspp_dropout")(x)
    return x


def decoder(x, low_level, config: ModelConfig):
    """DeepLabV3+ decoder: upsample, concat projected low-level features, two 3x3 convs."""
    low_level = conv_bn_relu(low_level, config.decoder_projection_filters, "decoder_projection")
    x = StaticResize(tuple(low_level.shape[1:3]), name="decoder_resize")(x)
    x = layers.Concatenate(name="decoder_concat")([x, low_level])
    for index in (1, 2):
        x = conv_bn_relu(x, config.decoder_filters, f"decoder_conv_{index}", 3,
                         separable=config.decoder_separable)  # fmt: skip
    return x


def resize_model(model: keras.Model, input_size: tuple[int, int]) -> DeepLab:
    """The same DeepLab model, rebuilt for another static input size with the same weights.

    No weight depends on the input size (image pooling averages whatever grid it gets), so
    a model trained on crops runs at any deployment size.

    Args:
        model: A DeepLab model (with its ModelConfig).
        input_size: New (height, width).

    Returns:
        A new DeepLab model; `model` itself is unchanged.

    Raises:
        EdgesegError: a model without an edgeseg config, or a size the config rejects.
    """
    config = config_of(model)
    if config is None:
        raise EdgesegError(f"model {model.name} was not built by edgeseg, so it cannot be rebuilt at "
                           "another input size")  # fmt: skip
    resized = DeepLab(config.replace(input_size=tuple(int(v) for v in input_size)), labels=model.labels,
                      name=model.name)  # fmt: skip
    resized.set_weights(model.get_weights())
    return resized


def load_model(path: str | Path) -> keras.Model:
    """Load a `.keras` model saved by edgeseg (or any Keras model), with a clear error.

    Raises:
        EdgesegError: if the file is missing or is not a loadable Keras model.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"model file {path} does not exist")
    if path.suffix != ".keras":
        raise EdgesegError(f"{path} is not a .keras model file (Keras 3 format)")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # zip, JSON and deserialisation errors all mean "not a model"
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EdgesegError(f"cannot load {path} as a Keras model: {message[:200]}") from None


def config_of(model: keras.Model) -> ModelConfig | None:
    """The edgeseg configuration of `model`, or None for a foreign Keras model."""
    return getattr(model, "config", None) if isinstance(model, DeepLab) else None


def save_model(model: keras.Model, path: str | Path) -> Path:
    """Save `model` as `.keras` atomically: a failed save never clobbers an existing file.

    Raises:
        EdgesegError: if the destination folder does not exist or is not writable.
    """
    path = check_output(path, (".keras",))
    with atomic_path(path) as temp:
        model.save(temp)
    return path


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one forward pass (convolutions and dense layers, batch 1)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            height, width, channels = layer.output.shape[1:4]
            kh, kw = layer.kernel_size
            total += height * width * channels * kh * kw
        elif isinstance(layer, layers.Conv2D):
            height, width, filters = layer.output.shape[1:4]
            kh, kw = layer.kernel_size
            total += height * width * filters * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)
