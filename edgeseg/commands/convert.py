"""`edgeseg convert`: int8 (or float16/dynamic/float32) TFLite with a report that proves it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.commands import _build_options as opts
from converters.modes import IO_TYPES, OUTPUT_KINDS, QUANTIZATIONS
from edgeseg.commands._common import ProgressBars, print_json, typed, user_errors
from edgeseg.presets import DEFAULT_PRESET
from runtime.errors import EdgesegError, ParameterError
from runtime.text import printable

# What `edgeseg convert` builds when given no model and no build choice: a trained network.
DEFAULT_WEIGHTS = "pascalvoc"


@user_errors
def convert(
    context: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Where to write the .tflite model.")],
    model: Annotated[Optional[Path], typer.Argument(help="A .keras model; without it the preset is built "
                                                    "(with none of --preset/--weights/--backbone-weights: "
                                                    f"deeplabv3_mnv2 with the {DEFAULT_WEIGHTS} weights).")] = None,  # fmt: skip
    preset: opts.Preset = DEFAULT_PRESET,
    num_classes: opts.NumClasses = None,
    input_size: opts.InputSize = None,
    backbone_alpha: opts.BackboneAlpha = None,
    backbone_output_stride: opts.BackboneOutputStride = None,
    aspp_rates: opts.AsppRates = None,
    no_decoder: opts.NoDecoder = False,
    backbone_weights: opts.BackboneWeights = "imagenet",
    weights: opts.Weights = None,
    calibration: Annotated[Optional[Path], typer.Option("--calibration", help="Folder of calibration images (default: calibration_data/).")] = None,
    num_calibration: Annotated[int, typer.Option("--num-calibration", min=1, help="Calibration images to use.")] = 200,
    quantization: Annotated[str, typer.Option("--quantization", help=f"{', '.join(QUANTIZATIONS)}.")] = "int8",
    io: Annotated[Optional[str], typer.Option("--io", help=f"Input type: {', '.join(IO_TYPES)} (default for int8: uint8, raw pixels).")] = None,
    output_kind: Annotated[str, typer.Option("--output-kind", help=f"{', '.join(OUTPUT_KINDS)}: logits at the decoder's stride, or an in-graph arg-max.")] = "logits",
    val_images: Annotated[Optional[Path], typer.Option("--val-images", help="Validation images, for mIoU of float vs converted.")] = None,
    val_masks: Annotated[Optional[Path], typer.Option("--val-masks", help="Validation masks (index, palette or colour PNGs, same file stems).")] = None,
    val_label_map: Annotated[Optional[Path], typer.Option("--val-label-map", help="Label map for --val-masks, as train's --label-map.")] = None,
    strict_int8: Annotated[bool, typer.Option("--strict-int8", help="Fail if any op inside the graph is not int8.")] = False,
    bias_correction: Annotated[bool, typer.Option("--bias-correction/--no-bias-correction", help="int8: shift biases to cancel the mean error of rounded weights.")] = True,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the report as JSON here.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Threads for the latency measurement (default: all cores).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Quantize a model to TFLite (full int8 by default) and report ops, size, speed, accuracy."""
    if model is not None:
        opts.refuse_build_options(context, model)
        source, size = model, opts.parse_size(input_size) if input_size else None
    else:
        defaulted = not any(typed(context, name) for name in ("preset", "weights", "backbone_weights"))
        weights = DEFAULT_WEIGHTS if defaulted else weights
        preset, backbone_weights = opts.preset_and_backbone(context, preset, weights, backbone_weights)
        try:
            source = opts.model_config(preset, num_classes, input_size, backbone_alpha, backbone_output_stride,
                                       aspp_rates, no_decoder, weights)  # fmt: skip
        except EdgesegError as error:
            if not defaulted:
                raise
            note = (f". (Without a model or --preset, convert builds the pretrained {DEFAULT_WEIGHTS} model; "
                    "give --preset NAME for an untrained design.)")  # fmt: skip
            if isinstance(error, ParameterError):  # still spelled as this command's flags
                raise ParameterError(error.template + note, *error.parameters) from None
            raise EdgesegError(f"{error}{note}") from None
        size = None
    import edgeseg  # noqa: PLC0415 - conversion imports TensorFlow

    with ProgressBars(quiet=json_output) as progress:
        result = edgeseg.convert(
            source, out, input_size=size, classes=num_classes if model is not None else None,
            backbone_weights=backbone_weights if model is None else None,
            weights=weights if model is None else None, calibration=calibration,
            num_calibration=num_calibration, quantization=quantization, io=io,
            output_kind=output_kind, val_images=val_images, val_masks=val_masks, val_label_map=val_label_map,
            strict_int8=strict_int8, bias_correction=bias_correction, report=report, threads=threads,
            progress=progress.task,
            warn=progress.warn,
        )  # fmt: skip
    if json_output:
        print_json(result)
    else:
        typer.echo(render(result))


def render(result: dict) -> str:
    """The report as a text table."""
    ops = result["ops"]
    lines = [f"wrote {result['file']}  ({result['quantization']}, {result['io']} input, "
             f"{result['output_kind']}, {result['input_size'][0]}x{result['input_size'][1]})", "",
             f"{'op':<22} {'count':>5}  inputs -> outputs"]  # fmt: skip
    for op in ops["ops"]:
        lines.append(f"{op['op']:<22} {op['count']:>5}  {','.join(op['inputs'])} -> {','.join(op['outputs'])}")
    lines.append("")
    lines.append(f"float ops in graph          {len(ops['float_ops'])}" + "".join(f"\n  {n}" for n in ops["float_ops"]))
    lines.append(f"(de)quantize in graph       {len(ops['quantize_ops'])}" + "".join(f"\n  {n}" for n in ops["quantize_ops"]))
    lines.append(f"boundary (de)quantize       {', '.join(ops['boundary_ops']) or 'none'}")
    if result["quantization"] == "int8":
        lines.append(f"bias correction             {result['bias_corrected_layers']} layers")
    outside = ", ".join(f"{o['op']}" for o in ops["outside_delegate"]) or "none"
    lines.append(f"XNNPACK partitions          {ops['delegate_partitions']} (outside: {outside})")
    size = result["size_bytes"]
    lines.append(f"size                        {size['converted'] / 1e6:.2f} MB vs float32 "
                 f"{size['float32'] / 1e6:.2f} MB (x{result['size_ratio']:.2f})")  # fmt: skip
    latency = result["latency"]
    lines.append(f"invoke latency, {latency['threads']} threads  {latency['converted']['invoke_ms']:.1f} ms vs "
                 f"float32 {latency['float32']['invoke_ms']:.1f} ms ({_ratio(latency['ratio'])}); end to end "
                 f"640x480 {latency['converted']['total_ms']:.1f} ms")  # fmt: skip
    fidelity = result["fidelity"]
    if "float_miou" in fidelity:
        lines.append(f"mIoU on {fidelity['images']} val images  float {_pct(fidelity['float_miou'])}  "
                     f"converted {_pct(fidelity['converted_miou'])}  drop {_pct(fidelity['miou_drop'])} points")  # fmt: skip
        for row in fidelity["per_class"]:
            if row["float_iou"] is not None or row["converted_iou"] is not None:
                name = printable(row["class"])
                lines.append(f"  {name:<20} {_pct(row['float_iou'])}  {_pct(row['converted_iou'])}")
    elif fidelity.get("pixel_agreement") is not None:
        lines.append(f"pixel agreement float vs converted on {fidelity['images']} held-out images: "
                     f"{100 * fidelity['pixel_agreement']:.2f}% (worst image {100 * fidelity['worst_image']:.2f}%)")  # fmt: skip
    missing = result["coverage"]["missing"]
    if missing:
        lines.append(f"calibration coverage: the float model never predicts {', '.join(map(printable, missing))} "
                     "on the "
                     "calibration images; those classes may quantize badly")  # fmt: skip
    lines.append(f"took {result['seconds']:.0f} s")
    return "\n".join(lines)


def _ratio(value) -> str:
    return "ratio not a number: too fast to time" if value is None else f"x{value:.2f}"


def _pct(value) -> str:
    return "   -  " if value is None else f"{100 * value:6.2f}"
