"""The build options shared by `build`, `convert` and `train`, declared once (the flags are a contract).

Each command names these parameters after the `ModelConfig` fields they set (`backbone_alpha`
for `--alpha`), so an error from the library about `backbone_alpha` reads `--alpha` here.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg import pretrained
from edgeseg.commands._common import flag_of, typed
from edgeseg.config import ModelConfig
from edgeseg.presets import PRESETS, get_config
from runtime.errors import EdgesegError

Preset = Annotated[str, typer.Option("--preset", help=f"Model preset: {', '.join(PRESETS)}.")]
Weights = Annotated[Optional[str], typer.Option("--weights", help="Pretrained weights shipped with edgeseg: "
                                                + "; ".join(pretrained.describe(name) for name in pretrained.names())
                                                + " (Pascal VOC).")]  # fmt: skip
NumClasses = Annotated[Optional[int], typer.Option("--classes", help="Number of classes.")]
InputSize = Annotated[Optional[str], typer.Option("--input-size", help="Input HEIGHTxWIDTH, e.g. 513x513 or 360x480 "
                                                  "(train: the crop size; convert: a .keras model is rebuilt at it).")]  # fmt: skip
BackboneAlpha = Annotated[Optional[float], typer.Option("--alpha", help="Backbone width: 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4.")]
BackboneOutputStride = Annotated[Optional[int], typer.Option("--output-stride", help="Backbone output stride: 8, 16 or 32.")]
AsppRates = Annotated[Optional[str], typer.Option("--aspp-rates", help="Atrous rates, e.g. 6,12,18, or 'none'.")]
NoDecoder = Annotated[bool, typer.Option("--no-decoder", help="Drop the decoder (DeepLabV3).")]
BackboneWeights = Annotated[str, typer.Option("--backbone-weights", help="imagenet (Keras download), none, "
                                              "or a MobileNetV2 .h5/.weights.h5 file.")]  # fmt: skip
FineTuneWeights = Annotated[Optional[str], typer.Option("--weights", help="Start from pretrained segmentation weights: "
                                                        "their backbone and the ASPP layers that fit, a new logits layer "
                                                        "for your classes (" + ", ".join(pretrained.names()) + ").")]  # fmt: skip

# What a saved model already fixes: refused beside one (its classes may be checked, its size changed).
FIXED_BY_A_MODEL = {"preset": Preset, "backbone_alpha": BackboneAlpha, "backbone_output_stride": BackboneOutputStride,
                    "aspp_rates": AsppRates, "no_decoder": NoDecoder, "backbone_weights": BackboneWeights,
                    "weights": Weights}  # fmt: skip


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


def model_config(preset: str | None, num_classes: int | None = None, input_size: str | None = None,
                 backbone_alpha: float | None = None, backbone_output_stride: int | None = None,
                 aspp_rates: str | None = None, no_decoder: bool = False, weights: str | None = None) -> ModelConfig:  # fmt: skip
    """The `ModelConfig` the build options describe: the preset with the options given, or with
    `weights`, the model those pretrained weights fit (`preset` None: the one they were trained for)."""
    return (partial(pretrained.pretrained_config, weights) if weights else get_config)(
        preset,
        num_classes=num_classes,
        input_size=parse_size(input_size) if input_size is not None else None,
        backbone_alpha=backbone_alpha,
        backbone_output_stride=backbone_output_stride,
        aspp_rates=parse_rates(aspp_rates) if aspp_rates is not None else None,
        decoder=False if no_decoder else None,
    )


def preset_and_backbone(context: typer.Context, preset: str, weights: str | None,
                        backbone_weights: str) -> tuple[str | None, str | None]:  # fmt: skip
    """The preset and backbone weights to build with. Beside pretrained `weights` the preset is
    the one typed, else theirs (None), and there are no backbone weights: they hold the backbone.

    Raises:
        EdgesegError: both --weights and --backbone-weights typed.
    """
    if weights is None:
        return preset, backbone_weights
    if typed(context, "backbone_weights"):
        raise EdgesegError(f"--weights {weights} loads the whole model, backbone included; drop --backbone-weights")
    return (preset if typed(context, "preset") else None), None


def refuse_build_options(context: typer.Context, model: Path) -> None:
    """Refuse build options typed beside a saved model, which already fixes them.

    Raises:
        EdgesegError: naming the options given.
    """
    given = [flag_of(hint, name) for name, hint in FIXED_BY_A_MODEL.items() if typed(context, name)]
    if given:
        raise EdgesegError(f"{', '.join(given)} build a model from a preset; {model} already fixes the "
                           "architecture and weights")  # fmt: skip
