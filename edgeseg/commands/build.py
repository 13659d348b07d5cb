"""`edgeseg build`: a DeepLabV3(+) MobileNetV2 model from a preset, saved as `.keras`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeseg.commands import _build_options as opts
from edgeseg.commands._common import import_tensorflow, print_json, user_errors
from runtime.atomic import check_output


@user_errors
def build(
    out: Annotated[Path, typer.Option("--out", help="Where to write the model (.keras).")],
    preset: opts.Preset = None,
    classes: opts.Classes = None,
    input_size: opts.InputSize = None,
    alpha: opts.Alpha = None,
    output_stride: opts.OutputStride = None,
    aspp_rates: opts.AsppRates = None,
    no_decoder: opts.NoDecoder = False,
    backbone_weights: opts.BackboneWeights = None,
    weights: opts.Weights = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Build a model from a preset and save it as .keras."""
    overrides = opts.build_overrides(classes, input_size, alpha, output_stride, aspp_rates, no_decoder)
    config, backbone_weights = opts.model_config(preset, weights, backbone_weights, overrides)
    check_output(out, (".keras",))
    import_tensorflow()
    from edgeseg.model import build_model, save_model  # noqa: PLC0415 - needs TensorFlow
    from edgeseg.summary import summarize  # noqa: PLC0415

    model = build_model(config, backbone_weights=backbone_weights, weights=weights)
    save_model(model, out)
    summary = {"out": str(out), **summarize(model)}
    if json_output:
        print_json(summary)
    else:
        typer.echo(f"saved {out}: {config.preset}{f' with {weights} weights' if weights else ''}, "
                   f"{summary['params'] / 1e6:.2f}M parameters, "
                   f"{summary['madds'] / 1e9:.2f}G multiply-adds at {config.input_size[0]}x"
                   f"{config.input_size[1]}, logits {summary['output_shape']} "
                   f"(stride {config.output_stride})")  # fmt: skip
