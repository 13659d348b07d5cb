"""`edgeseg info`: describe a `.keras` or `.tflite` model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeseg.commands._common import import_tensorflow, print_json, user_errors
from runtime.console import held_stderr
from runtime.errors import EdgesegError


@user_errors
def info(
    model: Annotated[Path, typer.Argument(help="A .keras or .tflite model.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Describe a .keras or .tflite model: config, size, ops, metadata."""
    if model.is_dir():
        raise EdgesegError(f"{model} is a folder; give a .keras or .tflite model file")
    if not model.is_file():
        raise EdgesegError(f"model file {model} does not exist")
    if model.suffix == ".tflite":
        from runtime.inspect import describe, render  # noqa: PLC0415 - TF-free

        with held_stderr():  # the interpreter announces its XNNPACK delegate on stderr
            description = describe(model)
        if description["metadata_error"]:
            # The model itself is described; that its metadata was refused is said on stderr too.
            typer.echo(f"warning: {description['metadata_error']}", err=True)
    elif model.suffix == ".keras":
        import_tensorflow()
        from edgeseg.model import load_model  # noqa: PLC0415 - needs TensorFlow
        from edgeseg.summary import render, summarize  # noqa: PLC0415

        description = summarize(load_model(model))
    else:
        raise EdgesegError(f"{model} is neither a .keras nor a .tflite model")
    if json_output:
        print_json(description)
    else:
        typer.echo(render(description))
