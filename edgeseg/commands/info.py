"""`edgeseg info`: describe a `.keras` or `.tflite` model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.commands._common import import_tensorflow, print_json, user_errors
from runtime.console import held_stderr
from runtime.errors import EdgesegError


@user_errors
def info(
    model: Annotated[Optional[Path], typer.Argument(help="A .keras or .tflite model; without it, the presets "
                                                    "and the pretrained weights that ship with edgeseg.")] = None,  # fmt: skip
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Describe a .keras or .tflite model: config, size, ops, metadata (or list what ships)."""
    if model is None:
        _catalog(json_output)
        return
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


def _catalog(json_output: bool) -> None:
    """The presets and the pretrained weights shipped in the package (no TensorFlow needed)."""
    from edgeseg.pretrained import catalog  # noqa: PLC0415
    from edgeseg.presets import PRESET_HELP  # noqa: PLC0415

    rows = catalog()
    if json_output:
        print_json({"presets": PRESET_HELP, "pretrained": rows})
        return
    lines = ["presets (edgeseg build/convert/train --preset NAME):"]
    lines += [f"  {name:<30} {text}" for name, text in PRESET_HELP.items()]
    lines += ["", "pretrained weights (--weights NAME; installed with edgeseg):"]
    lines += [f"  {row['weights']:<10} {row['preset']:<16} alpha {str(row['alpha']):<4} {row['classes']} classes  "
              f"{row['dataset']}, reported val mIoU {row['reported_miou']:.2f}%" for row in rows]  # fmt: skip
    typer.echo("\n".join(lines))
