"""`edgeseg eval`: score .keras and .tflite models side by side on images and masks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from edgeseg.commands._common import import_tensorflow, print_json, user_errors
from runtime.atomic import check_output
from runtime.errors import EdgesegError


@user_errors
def evaluate(
    models: Annotated[List[Path], typer.Argument(help="One or more .keras / .tflite models; the first is "
                                                 "the reference for the differences.")],  # fmt: skip
    images: Annotated[Path, typer.Option("--images", help="Folder of images.")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of PNG masks with the same file stems.")],
    ignore_index: Annotated[Optional[int], typer.Option("--ignore-index", help="Mask value to skip (default: "
                                                        "the model's, else 255).")] = None,  # fmt: skip
    classes_file: Annotated[Optional[Path], typer.Option("--classes-file", help="Class names, one per line "
                                                         "(default: the model's).")] = None,  # fmt: skip
    confusion: Annotated[Optional[Path], typer.Option("--confusion", help="Also write the confusion "
                                                      "matrices to this PNG.")] = None,  # fmt: skip
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for .tflite "
                                                   "models (default: all cores).")] = None,  # fmt: skip
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object per model.")] = False,
) -> None:
    """Score models on images and masks: per-class IoU, mIoU, pixel accuracy, differences."""
    from edgeseg.data import check_ignore_index, read_classes_file, scan_dataset  # noqa: PLC0415

    for path in models:
        if not path.is_file():
            raise EdgesegError(f"model file {path} does not exist")
        if path.suffix not in (".keras", ".tflite"):
            raise EdgesegError(f"{path} is neither a .keras nor a .tflite model")
    if confusion is not None:
        check_output(confusion, (".png",))
    names = read_classes_file(classes_file) if classes_file is not None else None
    if any(path.suffix == ".keras" for path in models):
        import_tensorflow()
    from edgeseg.evaluation import draw_confusion, evaluate as run_model, load_for_eval  # noqa: PLC0415

    loaded = [load_for_eval(path, threads) for path in models]
    counts = {model.num_classes for model in loaded}
    if len(counts) > 1:
        described = ", ".join(f"{model.path.name}: {model.num_classes}" for model in loaded)
        raise EdgesegError(f"the models predict different numbers of classes ({described})")
    num_classes = loaded[0].num_classes
    if names is not None and len(names) != num_classes:
        raise EdgesegError(f"{classes_file} names {len(names)} classes; the models predict {num_classes}")
    names = names or next((m.classes for m in loaded if m.classes), None) or [f"class {i}" for i in range(num_classes)]
    if ignore_index is None:
        ignore_index = next((m.ignore_index for m in loaded if m.ignore_index is not None), 255)
    check_ignore_index(ignore_index, num_classes)
    info = scan_dataset(images, masks, num_classes, ignore_index, "evaluation")

    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    results = []
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:  # fmt: skip
        for model in loaded:
            task = progress.add_task(model.path.name, total=len(info))
            results.append(run_model(model, info, num_classes, ignore_index, lambda: progress.advance(task)))
    if confusion is not None:
        draw_confusion(results, names, confusion)
    if json_output:
        print_json([result.to_dict(names, results[0] if index else None) for index, result in enumerate(results)])
    else:
        Console().print(_table(results, names, len(info)))
        if confusion is not None:
            typer.echo(f"confusion matrices: {confusion}")


def _table(results, names: list[str], images: int):
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"{images} images", title_justify="left")
    table.add_column("class")
    for index, result in enumerate(results):
        table.add_column(f"{result.path.name}\n({result.kind})", justify="right")
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
        table.add_row(name, *cells([r.metrics.per_class_iou[index] for r in results]))
    table.add_section()
    table.add_row("mIoU", *cells([r.metrics.miou for r in results], digits=2))
    table.add_row("pixel accuracy", *cells([r.metrics.pixel_accuracy for r in results], digits=2))
    table.add_row("ms / image", *cells([r.latency_ms for r in results], scale=1.0))
    return table


def _format(value: float, scale: float, digits: int, suffix: str, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * scale:{'+' if signed else ''}.{digits}f}{suffix}"
