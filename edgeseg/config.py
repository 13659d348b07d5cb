"""The one description of a model's architecture: a frozen dataclass that round-trips JSON.

No TensorFlow here: the CLI validates options and the runtime can read a config without it.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
from dataclasses import dataclass

from runtime.errors import EdgesegError, ParameterError
from runtime.limits import MAX_CLASSES, MAX_INPUT_SIDE

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
OUTPUT_STRIDES = (8, 16, 32)
# MobileNetV2's strided layers, in order: (layer name, cumulative stride after it).
STRIDED_LAYERS = (("Conv1", 2), ("block_1", 4), ("block_3", 8), ("block_6", 16), ("block_13", 32))
NORMALIZATION = {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a DeepLabV3(+) model on a MobileNetV2 backbone.

    Attributes:
        preset: Name of the preset this configuration started from (informational).
        num_classes: Number of output classes (>= 2).
        input_size: Static (height, width) of the input image.
        backbone_alpha: MobileNetV2 width multiplier, one of `ALPHAS`.
        backbone_output_stride: Stride of the high-level features (8, 16 or 32); strides
            beyond it are replaced by dilation.
        backbone_channel_divisor: Block widths (channels x alpha) are rounded to a multiple of
            this: 8 as in keras.applications, 1 as in TF DeepLab's MobileNetV2 below alpha 1
            (`divisible_by=1`: 12 channels instead of 16 in blocks 1-2 at alpha 0.5).
        backbone_tap: Backbone layer whose output feeds ASPP.
        aspp_rates: Atrous rates of the 3x3 ASPP branches (may be empty).
        aspp_filters: Channels of every ASPP branch and of its projection.
        aspp_separable: Depthwise-separable atrous branches (DeepLabV3+) or regular ones.
        aspp_image_pooling: Whether ASPP has the global image-pooling branch.
        aspp_dropout: Dropout rate after the ASPP projection (training only).
        decoder: DeepLabV3+ decoder on (True) or DeepLabV3 (False).
        decoder_tap: Backbone layer giving the low-level features.
        decoder_projection_filters: Channels of the low-level 1x1 projection.
        decoder_filters: Channels of the decoder's 3x3 convolutions.
        decoder_separable: Depthwise-separable decoder convolutions or regular ones.
        head_upsample: Resize the logits to the input size inside the model (False keeps
            them at the decoder's stride, which is what the runtime wants).
    """

    preset: str = "custom"
    num_classes: int = 21
    input_size: tuple[int, int] = (513, 513)
    backbone_alpha: float = 1.0
    backbone_output_stride: int = 16
    backbone_channel_divisor: int = 8
    backbone_tap: str = "block_16_project_BN"
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    aspp_filters: int = 256
    aspp_separable: bool = True
    aspp_image_pooling: bool = True
    aspp_dropout: float = 0.1
    decoder: bool = True
    decoder_tap: str = "block_2_depthwise_relu"
    decoder_projection_filters: int = 48
    decoder_filters: int = 256
    decoder_separable: bool = True
    head_upsample: bool = False

    def __post_init__(self) -> None:
        # JSON gives lists; the dataclass is frozen and hashable-minded, so store tuples.
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "aspp_rates", tuple(int(v) for v in self.aspp_rates))
        object.__setattr__(self, "backbone_alpha", float(self.backbone_alpha))
        self.validate()

    def validate(self) -> None:
        """Raise EdgesegError naming the bad value and the valid choices."""
        if self.backbone_alpha not in ALPHAS:
            raise EdgesegError(
                f"unsupported alpha {self.backbone_alpha:g}; choose one of "
                + ", ".join(f"{a:g}" for a in ALPHAS)
            )
        if self.backbone_output_stride not in OUTPUT_STRIDES:
            raise EdgesegError(
                f"output stride {self.backbone_output_stride} is not supported; choose 8, 16 or 32"
            )
        if self.backbone_channel_divisor < 1:
            raise EdgesegError(f"backbone channel divisor {self.backbone_channel_divisor} must be a "
                               "positive integer (8 as in keras.applications, 1 as in TF DeepLab)")  # fmt: skip
        if self.num_classes < 2:
            raise EdgesegError(f"{self.num_classes} classes: a segmentation model needs at least 2")
        check_num_classes(self.num_classes)
        check_input_size(self.input_size)
        smallest = 2 * self.backbone_output_stride
        if min(self.input_size) < smallest:
            height, width = self.input_size
            raise EdgesegError(
                f"input size {height}x{width} is too small for output stride "
                f"{self.backbone_output_stride}; use at least {smallest}x{smallest}"
            )
        if any(rate < 1 for rate in self.aspp_rates):
            raise EdgesegError(f"ASPP rates {list(self.aspp_rates)} must be positive integers")
        for name in ("aspp_filters", "decoder_projection_filters", "decoder_filters"):
            if getattr(self, name) < 1:
                raise EdgesegError(f"{name} = {getattr(self, name)} must be at least 1")
        if self.decoder and self.decoder_stride >= self.high_level_stride:
            raise EdgesegError(
                f"decoder tap {self.decoder_tap!r} (stride {self.decoder_stride}) must have a "
                f"smaller stride than the high-level features (stride {self.high_level_stride})"
            )
        if not 0.0 <= self.aspp_dropout < 1.0:
            raise EdgesegError(f"ASPP dropout {self.aspp_dropout} must be in [0, 1)")

    @property
    def output_stride(self) -> int:
        """Stride of the logits relative to the input (1 when upsampled in the model)."""
        if self.head_upsample:
            return 1
        return self.decoder_stride if self.decoder else self.high_level_stride

    @property
    def high_level_stride(self) -> int:
        """Stride of the features that feed ASPP: the tap's, capped by the output stride."""
        return min(layer_stride(self.backbone_tap), self.backbone_output_stride)

    @property
    def decoder_stride(self) -> int:
        return min(layer_stride(self.decoder_tap), self.backbone_output_stride)

    @property
    def output_size(self) -> tuple[int, int]:
        """Static (height, width) of the logits."""
        return tuple(strided_size(n, self.output_stride) for n in self.input_size)

    def replace(self, **changes) -> ModelConfig:
        """A copy with `changes` applied (and validated).

        Raises:
            EdgesegError: an unknown field (the message lists the known ones) or a bad value.
        """
        check_fields(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        data["aspp_rates"] = list(self.aspp_rates)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        check_fields(data)
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


def check_num_classes(count: int, name: str = "num_classes") -> None:
    """Refuse more classes than a uint8 label map carries beside its ignore value.

    The limit is `runtime.limits.MAX_CLASSES` (255: classes 0-254, and 255 left for the
    ignore index that training and evaluation use by default). int8 logits have no such
    limit, but the label maps the runtime, training and evaluation make from them are uint8.

    Raises:
        ParameterError: naming parameter `name`, with the limit.
    """
    if count > MAX_CLASSES:
        raise ParameterError(f"{{{name}}} {count} is more classes than edgeseg supports: at most {MAX_CLASSES} "
                             f"(label maps are uint8, 0-{MAX_CLASSES - 1} for classes and {MAX_CLASSES} for "
                             "ignored pixels)", name)  # fmt: skip


def check_input_size(size, name: str = "input_size") -> tuple[int, int]:
    """`size` as (height, width), refused beyond `runtime.limits.MAX_INPUT_SIDE` pixels a side.

    The limit is where TFLite stops working, not taste: its kernels count a tensor's
    elements in a 32-bit int, which MobileNetV2's widest activation passes at about 9,460
    pixels a side, and the runtime refuses image inputs beyond 8192 a side when it loads a
    model. A model built larger could be saved but never converted or run.

    Raises:
        ParameterError: not two positive integers, or a side beyond the limit (naming `name`).
    """
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(v, numbers.Integral) and v > 0 for v in size):
        raise ParameterError(f"{{{name}}} {size!r} is not (height, width) in pixels", name)
    if max(size) > MAX_INPUT_SIDE:
        raise ParameterError(f"{{{name}}} {size[0]}x{size[1]} is beyond the limit of {MAX_INPUT_SIDE} pixels a side "
                             "(TFLite counts a tensor's elements in 32 bits)", name)  # fmt: skip
    return size


def check_fields(data: dict) -> None:
    """Refuse keys that are not `ModelConfig` fields, listing the known ones."""
    known = {field.name for field in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EdgesegError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")


def strided_size(size: int, stride: int) -> int:
    """Spatial size after `stride` made of stride-2 'same' steps: ceil at every halving."""
    while stride > 1:
        size = (size + 1) // 2
        stride //= 2
    return size


def layer_stride(name: str) -> int:
    """Cumulative stride of a MobileNetV2 layer's output (before any dilation is applied).

    Raises:
        EdgesegError: if `name` is not a MobileNetV2 layer name.
    """
    if name.startswith(("Conv1", "bn_Conv1", "expanded_conv")):
        return 2
    if name.startswith(("Conv_1", "out_relu")):
        return 32
    match = re.fullmatch(r"block_(\d+)_(expand|expand_BN|expand_relu|pad|depthwise|depthwise_BN|"
                         r"depthwise_relu|project|project_BN|add)", name)
    if not match or not 1 <= int(match.group(1)) <= 16:
        raise EdgesegError(
            f"unknown backbone layer {name!r}; use a keras.applications.MobileNetV2 layer name "
            "such as block_3_expand_relu or block_16_project_BN"
        )
    block = int(match.group(1))
    # The expansion (and its padding) of a strided block still runs at the previous stride.
    pre_stride = name.startswith(f"block_{block}_expand") or name == f"block_{block}_pad"
    stride = 2
    for layer, after in STRIDED_LAYERS[1:]:
        strided_block = int(layer.split("_")[1])
        if block > strided_block or (block == strided_block and not pre_stride):
            stride = after
    return stride
