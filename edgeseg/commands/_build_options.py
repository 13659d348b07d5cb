"""The build options shared by `build`, `convert` and `train` (a contract: keep the names)."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

from edgeseg import pretrained
from edgeseg.config import ModelConfig
from edgeseg.presets import DEFAULT_PRESET, get_config
from runtime.errors import EdgesegError

Preset = Annotated[Optional[str], typer.Option("--preset", help="Model preset: deeplabv3plus_mnv2 (default "
                                               "without --weights), deeplabv3_mnv2 or deeplabv3plus_mnv2_shortcut.")]  # fmt: skip
Classes = Annotated[Optional[int], typer.Option("--classes", help="Number of classes.")]
InputSize = Annotated[Optional[str], typer.Option("--input-size", help="Input HEIGHTxWIDTH, e.g. 513x513 or 360x480.")]
Alpha = Annotated[Optional[float], typer.Option("--alpha", help="Backbone width: 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4.")]
OutputStride = Annotated[Optional[int], typer.Option("--output-stride", help="Backbone output stride: 8, 16 or 32.")]
AsppRates = Annotated[Optional[str], typer.Option("--aspp-rates", help="Atrous rates, e.g. 6,12,18, or 'none'.")]
NoDecoder = Annotated[bool, typer.Option("--no-decoder", help="Drop the decoder (DeepLabV3).")]
BackboneWeights = Annotated[Optional[str], typer.Option("--backbone-weights", help="imagenet (Keras download, "
                                                        "the default), none, or a MobileNetV2 .h5/.weights.h5 file.")]  # fmt: skip
Weights = Annotated[Optional[str], typer.Option("--weights", help="Pretrained weights of the whole model, shipped "
                                                "with edgeseg: " + "; ".join(pretrained.describe(name) for name in pretrained.names())
                                                + " (Pascal VOC).")]  # fmt: skip


def parse_size(text: str) -> tuple[int, int]:
    """Parse '513x513', '360x480' or '513' into (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×,]\s*(\d+))?\s*", text)
    if not match:
        raise EdgesegError(f"input size {text!r} is not HEIGHTxWIDTH (e.g. 513x513 or 360x480)")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def parse_rates(text: str) -> tuple[int, ...]:
    """Parse '6,12,18' (or 'none' / '') into a tuple of atrous rates."""
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise EdgesegError(f"ASPP rates {text!r} are not comma-separated integers (e.g. 6,12,18) or 'none'") from None


def model_config(preset: str | None, weights: str | None, backbone_weights: str | None,
                 overrides: dict) -> tuple[ModelConfig, str | None]:  # fmt: skip
    """The configuration to build and the backbone weights to load, from the build options.

    Raises:
        EdgesegError: both --weights and --backbone-weights, or a model the weights do not fit.
    """
    if weights is None:
        return get_config(preset or DEFAULT_PRESET, **overrides), backbone_weights or "imagenet"
    if backbone_weights is not None:
        raise EdgesegError(f"--weights {weights} loads the whole model, backbone included; drop --backbone-weights")
    return pretrained.pretrained_config(weights, preset, **overrides), None


def build_overrides(classes=None, input_size=None, alpha=None, output_stride=None,
                    aspp_rates=None, no_decoder=False) -> dict:  # fmt: skip
    """Turn CLI build options into ModelConfig overrides (only the ones given)."""
    overrides = dict(num_classes=classes, backbone_alpha=alpha, backbone_output_stride=output_stride)
    if input_size is not None:
        overrides["input_size"] = parse_size(input_size)
    if aspp_rates is not None:
        overrides["aspp_rates"] = parse_rates(aspp_rates)
    if no_decoder:
        overrides["decoder"] = False
    return {key: value for key, value in overrides.items() if value is not None}
