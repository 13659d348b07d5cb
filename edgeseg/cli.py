"""The `edgeseg` command line: one Typer app, one module per command."""

from __future__ import annotations

import sys

import typer

from edgeseg.commands import bench, build, convert, info, run, train
from edgeseg.commands import eval as eval_command

# Help panels: what a base install (the device runtime) runs, and what needs the train extra
# ("\\[" keeps Rich from reading "[train]" as markup).
RUN_PANEL = "Run models (base install)"
MAKE_PANEL = "Make models (needs TensorFlow: pip install 'edgeseg\\[train]')"

app = typer.Typer(
    name="edgeseg",
    help="DeepLabV3+ on MobileNetV2: build, train, convert to int8 TFLite, run on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command(
    "build",
    help="Build a DeepLabV3(+) MobileNetV2 model from a preset and save it as .keras.",
    rich_help_panel=MAKE_PANEL,
)(build.build)
app.command(
    "convert",
    help="Quantize a model to int8 TFLite, with a report of ops, size, speed and accuracy.",
    rich_help_panel=MAKE_PANEL,
)(convert.convert)
app.command(
    "info",
    help="Describe a .keras or .tflite model; without one, list presets and pretrained weights.",
    rich_help_panel=RUN_PANEL,
)(info.info)
app.command(
    "train",
    help="Train a model on folders of images and masks; keep the best by validation mIoU.",
    rich_help_panel=MAKE_PANEL,
)(train.train)
app.command(
    "eval",
    help="Score .keras and .tflite models side by side: per-class IoU, mIoU, pixel accuracy.",
    rich_help_panel=RUN_PANEL,
)(eval_command.evaluate)
app.command(
    "run",
    help="Segment a camera, video or image folder with a .tflite model (no TensorFlow needed).",
    rich_help_panel=RUN_PANEL,
)(run.run)
app.command(
    "bench",
    help="Time .tflite models through the runtime: pre, inference, post, end to end.",
    rich_help_panel=RUN_PANEL,
)(bench.bench)


def main() -> None:
    sys.argv[1:] = default_camera(sys.argv[1:])
    app()


def default_camera(args: list[str]) -> list[str]:
    """`--camera` with no value means camera 0 (Typer options cannot have an optional value)."""
    args = list(args)
    for position, arg in enumerate(args):
        if arg == "--camera" and (position + 1 == len(args) or args[position + 1].startswith("-")):
            args.insert(position + 1, "0")
            break
    return args
