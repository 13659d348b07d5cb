"""`edgeseg eval`: score .keras and .tflite models side by side on images and masks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from edgeseg.commands import _data_options as data
from edgeseg.commands._common import ProgressBars, print_json, user_errors


@user_errors
def evaluate(
    models: Annotated[List[Path], typer.Argument(help="One or more .keras / .tflite models; the first is "
                                                 "the reference for the differences.")],  # fmt: skip
    images: Annotated[Path, typer.Option("--images", help="Folder of images.")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of PNG masks with the images' stems (index, "
                                        "palette or colour: see --mask-format).")],  # fmt: skip
    ignore_index: Annotated[Optional[int], typer.Option("--ignore-index", help="Mask value to skip (default: "
                                                        "the model's, else 255).")] = None,  # fmt: skip
    classes: data.ClassesFile = None,
    list_file: Annotated[Optional[Path], typer.Option("--list", help="Score only these stems (one per line, "
                                                      "e.g. VOC's ImageSets/Segmentation/val.txt).")] = None,  # fmt: skip
    image_suffix: data.ImageSuffix = None,
    mask_suffix: data.MaskSuffix = ".png",
    mask_format: data.MaskFormatOption = None,
    label_map: data.LabelMap = None,
    confusion: Annotated[Optional[Path], typer.Option("--confusion", help="Also write the confusion "
                                                      "matrices to this PNG.")] = None,  # fmt: skip
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for .tflite "
                                                   "models (default: all cores).")] = None,  # fmt: skip
    input_size: Annotated[Optional[str], typer.Option("--input-size", help="Run .keras models at HEIGHTxWIDTH, "
                                                      "rebuilt with their weights (default: the first .tflite "
                                                      "model's size, else their own).")] = None,  # fmt: skip
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per model.")] = False,
) -> None:
    """Score models on images and masks: per-class IoU, mIoU, pixel accuracy, differences."""
    from edgeseg.commands._build_options import parse_size  # noqa: PLC0415
    from edgeseg.evaluation import evaluate as evaluate_models  # noqa: PLC0415 - .keras models need TensorFlow

    size = parse_size(input_size) if input_size is not None else None

    with ProgressBars() as progress:
        evaluation = evaluate_models(models, images, masks, classes=classes, ignore_index=ignore_index,
                                     threads=threads, confusion=confusion, list_file=list_file,
                                     image_suffix=image_suffix, mask_suffix=mask_suffix,
                                     mask_format=mask_format and mask_format.value, label_map=label_map,
                                     input_size=size, progress=progress.task, warn=progress.warn)  # fmt: skip
    if json_output:
        print_json(evaluation.to_dict())
    else:
        from rich.console import Console  # noqa: PLC0415

        Console().print(_table(evaluation.results, evaluation.classes, evaluation.images))
        if confusion is not None:
            typer.echo(f"confusion matrices: {confusion}")


def _table(results, names: list[str], images: int):
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415 - class and file names are shown as they are, never as markup

    from runtime.text import printable  # noqa: PLC0415 - and with their control characters escaped

    table = Table(title=f"{images} images", title_justify="left")
    table.add_column("class")
    for index, result in enumerate(results):
        size = f", {result.input_size[0]}x{result.input_size[1]}" if result.input_size else ""
        table.add_column(Text(f"{printable(result.path.name)}\n({result.kind}{size})"), justify="right")
        if index:
            table.add_column("diff", justify="right")

    def cells(values, scale=100.0, digits=1, suffix=""):
        row, reference = [], values[0]
        for index, value in enumerate(values):
            row.append(_format(value, scale, digits, suffix))
            if index:
                row.append(_format(value - reference, scale, digits, suffix, signed=True))
        return row

    for index, name in enumerate(names):
        table.add_row(Text(printable(name)), *cells([r.metrics.per_class_iou[index] for r in results]))
    table.add_section()
    table.add_row("mIoU", *cells([r.metrics.miou for r in results], digits=2))
    table.add_row("pixel accuracy", *cells([r.metrics.pixel_accuracy for r in results], digits=2))
    table.add_row("ms / image", *cells([r.latency_ms for r in results], scale=1.0))
    return table


def _format(value: float, scale: float, digits: int, suffix: str, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * scale:{'+' if signed else ''}.{digits}f}{suffix}"
