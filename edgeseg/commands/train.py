"""`edgeseg train`: train DeepLabV3(+) on a folder of images and masks (`edgeseg.train`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.commands import _build_options as opts
from edgeseg.commands import _data_options as data
from edgeseg.commands._common import choices, import_tensorflow, print_json, user_errors
from edgeseg.presets import DEFAULT_PRESET
from edgeseg.settings import BACKBONE_BN, OPTIMIZERS, PHOTOMETRIC, SCHEDULES
from runtime.errors import EdgesegError

Optimizer = choices("Optimizer", OPTIMIZERS)
Schedule = choices("Schedule", SCHEDULES)
BackboneBN = choices("BackboneBN", BACKBONE_BN)
Photometric = choices("Photometric", PHOTOMETRIC)


@user_errors
def train(
    context: typer.Context,
    images: Annotated[Path, typer.Option("--images", help="Folder of training images (png, jpg, bmp).")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of training masks: PNGs with the images' "
                                        "stems, holding class indices, palette indices (VOC, CVAT) or class "
                                        "colours (see --mask-format).")],  # fmt: skip
    out: Annotated[Path, typer.Option("--out", help="Run folder: best.keras, last.keras, history.csv, "
                                      "curves.png, classes.json.")],  # fmt: skip
    val_images: Annotated[Optional[Path], typer.Option("--val-images", help="Folder of validation images.")] = None,
    val_masks: Annotated[Optional[Path], typer.Option("--val-masks", help="Folder of validation masks.")] = None,
    classes: data.ClassesFile = None,
    num_classes: opts.NumClasses = None,
    ignore_index: Annotated[int, typer.Option("--ignore-index", help="Mask value excluded from loss "
                                              "and metrics (0-255, not a class).")] = 255,  # fmt: skip
    train_list: Annotated[Optional[Path], typer.Option("--train-list", help="Train only on these stems: a "
                                                       "file with one per line (VOC/CVAT ImageSets/Segmentation/"
                                                       "train.txt).")] = None,  # fmt: skip
    val_list: Annotated[Optional[Path], typer.Option("--val-list", help="Validate on these stems (one per line): "
                                                     "from --val-images if given, else taken out of --images "
                                                     "and out of training.")] = None,  # fmt: skip
    val_prefix: Annotated[Optional[str], typer.Option("--val-prefix", help="Validate on the images of --images "
                                                      "whose stem starts with P (P1,P2,... for several), train on "
                                                      "the rest, e.g. held-out recordings.")] = None,  # fmt: skip
    image_suffix: data.ImageSuffix = None,
    mask_suffix: data.MaskSuffix = ".png",
    mask_format: data.MaskFormatOption = None,
    label_map: data.LabelMap = None,
    preset: opts.Preset = DEFAULT_PRESET,
    model: Annotated[Optional[Path], typer.Option("--model", help="Start from this .keras model "
                                                  "instead of a preset.")] = None,  # fmt: skip
    input_size: opts.InputSize = None,
    loss: Annotated[str, typer.Option("--loss", help="ce, wce (class-weighted), focal, dice, "
                                      "lovasz (Lovasz-softmax), ohem (hard pixels), or a sum such as "
                                      "ce+lovasz.")] = "ce",  # fmt: skip
    class_weights: Annotated[Optional[str], typer.Option("--class-weights", help="For wce/focal: inverse, "
                                                         "median (default for wce), sqrt-median, none, or w1,w2,...")] = None,  # fmt: skip
    optimizer: Annotated[Optimizer, typer.Option("--optimizer", help="Optimizer.")] = OPTIMIZERS[0],
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate (default 1e-3 "
                                                "for adam/adamw, 1e-2 for sgd).")] = None,  # fmt: skip
    schedule: Annotated[Schedule, typer.Option("--schedule", help="Learning-rate decay after warm-up.")] = SCHEDULES[0],
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs", min=0.0, help="Linear warm-up length.")] = 0.0,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs to train in total.")] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Crops per step (all GPUs together).")] = 8,
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone", help="Train ASPP, decoder and head only.")] = False,
    backbone_bn: Annotated[BackboneBN, typer.Option("--backbone-bn", help="frozen: backbone batch norm in "
                                                    "inference mode (right for small batches and pretrained "
                                                    "weights); train: update it (large batches, or from "
                                                    "scratch).")] = BACKBONE_BN[0],  # fmt: skip
    backbone_weights: opts.BackboneWeights = "imagenet",
    weights: opts.FineTuneWeights = None,
    backbone_alpha: opts.BackboneAlpha = None,
    backbone_output_stride: opts.BackboneOutputStride = None,
    aspp_rates: opts.AsppRates = None,
    no_decoder: opts.NoDecoder = False,
    scale_range: Annotated[str, typer.Option("--scale-range", help="Random rescale range MIN,MAX.")] = "0.5,2.0",
    photometric: Annotated[Photometric, typer.Option("--photometric", help="Colour jitter: default, or strong "
                                                     "for scenes in other light.")] = PHOTOMETRIC[0],  # fmt: skip
    classmix: Annotated[float, typer.Option("--classmix", help="Share of crops (0-1) that take another crop's "
                                            "pixels of a random half of its classes, labels too (ClassMix); "
                                            "0: none.")] = 0.0,  # fmt: skip
    val_every: Annotated[int, typer.Option("--val-every", min=1, help="Validate every N epochs and after "
                                           "the last (without validation images: refresh best.keras then).")] = 1,  # fmt: skip
    ema: Annotated[float, typer.Option("--ema", help="Validate and save as best.keras an exponential moving "
                                       "average of the weights with this momentum, e.g. 0.995 (about the last "
                                       "200 steps); 0: none.")] = 0.0,  # fmt: skip
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary at the end.")] = False,
) -> None:
    """Train a model on images and masks; keep the best by validation mIoU."""
    import_tensorflow()  # first: on a base install, what is missing matters before any option
    from edgeseg.classes import class_names  # noqa: PLC0415
    from edgeseg.config import check_num_classes  # noqa: PLC0415
    from edgeseg.training import train as train_model  # noqa: PLC0415

    if classes is not None and num_classes is not None:
        raise EdgesegError("give --classes-file or --classes, not both")
    if num_classes is not None:  # checked as `num_classes` (--classes): the library's `classes` is --classes-file
        check_num_classes(num_classes)
    given_classes = classes if classes is not None else num_classes
    if model is not None:
        opts.refuse_build_options(context, model)
    elif given_classes is None and not resume:
        raise EdgesegError("give --classes N or --classes-file F (or start from --model)")
    else:  # the preset, for as many classes as given (a resumed run compares all but the count)
        count = len(class_names(given_classes)) if given_classes is not None else None
        model = opts.model_config(preset, count, input_size, backbone_alpha, backbone_output_stride, aspp_rates,
                                  no_decoder)  # fmt: skip
        _, backbone_weights = opts.preset_and_backbone(context, preset, weights, backbone_weights)
    with _Progress(epochs) as progress:
        result = train_model(
            model, images, masks, out, val_images=val_images, val_masks=val_masks, classes=given_classes,
            ignore_index=ignore_index, train_list=train_list, val_list=val_list, val_prefix=val_prefix,
            image_suffix=image_suffix, mask_suffix=mask_suffix, mask_format=mask_format and mask_format.value,
            label_map=label_map, input_size=opts.parse_size(input_size) if input_size else None,
            backbone_weights=None if isinstance(model, Path) else backbone_weights,
            weights=None if isinstance(model, Path) else weights, loss=loss,
            class_weights=class_weights, optimizer=optimizer.value, lr=lr, schedule=schedule.value,
            warmup_epochs=warmup_epochs, epochs=epochs, batch_size=batch_size, freeze_backbone=freeze_backbone,
            backbone_bn=backbone_bn.value, scale_range=_parse_scale_range(scale_range),
            photometric=photometric.value, classmix=classmix, val_every=val_every, ema=ema,
            resume=resume, seed=seed, reporter=progress,
        )  # fmt: skip
    if json_output:
        print_json(result.to_dict())
    else:
        best = result.best_miou
        typer.echo(f"trained {result.epochs} epochs in {result.seconds / 60:.1f} min: "
                   + (f"best val mIoU {100 * best:.1f}% (epoch {result.best_epoch}), " if best is not None else "")
                   + f"saved {result.best_model} and {result.last_model}")  # fmt: skip


def _parse_scale_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise EdgesegError(f"--scale-range {text!r} is not MIN,MAX (e.g. 0.5,2.0)") from None
    return low, high


class _Progress:
    """The run's progress on stderr: a rich bar of the epoch's steps, one line per epoch.

    It is the run's `edgeseg.loop.Reporter` (the same callbacks, as methods).
    """

    def __init__(self, epochs: int):
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

        self.epochs = epochs
        self.console = Console(stderr=True)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console,
                             transient=True)  # fmt: skip
        self.task = self.bars.add_task("", total=1, info="")
        self.last_miou = ""

    def __enter__(self) -> _Progress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.bars.reset(self.task, total=steps, completed=0, description=f"epoch {epoch + 1}/{epochs}",
                        info=self.last_miou)  # fmt: skip

    def step(self, done: int, loss: float) -> None:
        self.bars.update(self.task, completed=done, info=f"loss {loss:.4f}{self.last_miou}")

    def epoch_end(self, row: dict, best: bool) -> None:
        from edgeseg.history import epoch_line  # noqa: PLC0415

        if math.isfinite(row["val_miou"]):
            self.last_miou = f"  val mIoU {100 * row['val_miou']:.1f}%"
        self.message(epoch_line(row, self.epochs, best))

    def interrupted(self, step: int, path: Path) -> None:
        self.message(f"interrupted at step {step}: saved {path}; continue with --resume")

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)
