"""The `edgeseg` command line: one Typer app, one module per command."""

from __future__ import annotations

import typer

from edgeseg.commands import build, info

app = typer.Typer(
    name="edgeseg",
    help="DeepLabV3+ on MobileNetV2: build, train, convert to int8 TFLite, run on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("build", help="Build a DeepLabV3(+) MobileNetV2 model from a preset and save it as .keras.")(
    build.build
)
app.command("info", help="Describe a .keras or .tflite model: config, size, ops, metadata.")(info.info)


def main() -> None:
    app()
