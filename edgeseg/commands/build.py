"""`edgeseg build`: a DeepLabV3(+) MobileNetV2 model from a preset, saved as `.keras`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeseg.commands import _build_options as opts
from edgeseg.checks import output_file
from edgeseg.commands._common import print_json, user_errors
from edgeseg.presets import DEFAULT_PRESET


@user_errors
def build(
    context: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Where to write the model (.keras).")],
    preset: opts.Preset = DEFAULT_PRESET,
    num_classes: opts.NumClasses = None,
    input_size: opts.InputSize = None,
    backbone_alpha: opts.BackboneAlpha = None,
    backbone_output_stride: opts.BackboneOutputStride = None,
    aspp_rates: opts.AsppRates = None,
    no_decoder: opts.NoDecoder = False,
    backbone_weights: opts.BackboneWeights = "imagenet",
    weights: opts.Weights = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Build a model from a preset and save it as .keras."""
    preset, backbone_weights = opts.preset_and_backbone(context, preset, weights, backbone_weights)
    config = opts.model_config(preset, num_classes, input_size, backbone_alpha, backbone_output_stride,
                               aspp_rates, no_decoder, weights)  # fmt: skip
    output_file(out, "out", (".keras",))
    import edgeseg  # noqa: PLC0415 - its model functions import TensorFlow

    model = edgeseg.build_model(config, backbone_weights=backbone_weights, weights=weights)
    edgeseg.save_model(model, out)
    from edgeseg.summary import summarize  # noqa: PLC0415

    summary = {"out": str(out), **summarize(model)}
    if json_output:
        print_json(summary)
    else:
        typer.echo(f"saved {out}: {config.preset}{f' with {weights} weights' if weights else ''}, "
                   f"{summary['params'] / 1e6:.2f}M parameters, "
                   f"{summary['madds'] / 1e9:.2f}G multiply-adds at {config.input_size[0]}x"
                   f"{config.input_size[1]}, logits {summary['output_shape']} "
                   f"(stride {config.output_stride})")  # fmt: skip
