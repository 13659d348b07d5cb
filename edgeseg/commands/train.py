"""`edgeseg train`: train DeepLabV3(+) on a folder of images and masks."""

from __future__ import annotations

import json
import math
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg import pretrained
from edgeseg.commands import _build_options as opts
from edgeseg.commands._common import import_tensorflow, print_json, user_errors
from edgeseg.presets import DEFAULT_PRESET, get_config
from runtime.errors import EdgesegError

# Decoded training images are cached in memory when they take at most this share of RAM.
CACHE_SHARE_OF_MEMORY = 0.25


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Schedule(str, Enum):
    poly = "poly"
    cosine = "cosine"
    constant = "constant"


class BackboneBN(str, Enum):
    frozen = "frozen"
    train = "train"


@user_errors
def train(
    images: Annotated[Path, typer.Option("--images", help="Folder of training images (png, jpg, bmp).")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of training masks: PNG, one class index "
                                        "per pixel, same file stems as the images.")],  # fmt: skip
    out: Annotated[Path, typer.Option("--out", help="Run folder: best.keras, last.keras, history.csv, "
                                      "curves.png, classes.json.")],  # fmt: skip
    val_images: Annotated[Optional[Path], typer.Option("--val-images", help="Folder of validation images.")] = None,
    val_masks: Annotated[Optional[Path], typer.Option("--val-masks", help="Folder of validation masks.")] = None,
    classes_file: Annotated[Optional[Path], typer.Option("--classes-file", help="Class names, one per "
                                                         "line, class 0 first.")] = None,  # fmt: skip
    classes: opts.Classes = None,
    ignore_index: Annotated[int, typer.Option("--ignore-index", help="Mask value excluded from loss "
                                              "and metrics (0-255, not a class).")] = 255,  # fmt: skip
    preset: Annotated[Optional[str], typer.Option("--preset", help="Model preset to build (default "
                                                  f"{DEFAULT_PRESET}).")] = None,  # fmt: skip
    model: Annotated[Optional[Path], typer.Option("--model", help="Start from this .keras model "
                                                  "instead of a preset.")] = None,  # fmt: skip
    input_size: Annotated[Optional[str], typer.Option("--input-size", help="Training crop HEIGHTxWIDTH "
                                                      "(default: the preset's or the model's input size).")] = None,  # fmt: skip
    loss: Annotated[str, typer.Option("--loss", help="ce, wce (class-weighted), focal, dice, or a sum "
                                      "such as wce+dice.")] = "ce",  # fmt: skip
    class_weights: Annotated[Optional[str], typer.Option("--class-weights", help="For wce/focal: inverse, "
                                                         "median (default for wce), none, or w1,w2,...")] = None,  # fmt: skip
    optimizer: Annotated[Optimizer, typer.Option("--optimizer", help="Optimizer.")] = Optimizer.adam,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0.0, help="Peak learning rate (default 1e-3 "
                                                "for adam/adamw, 1e-2 for sgd).")] = None,  # fmt: skip
    schedule: Annotated[Schedule, typer.Option("--schedule", help="Learning-rate decay after warm-up.")] = Schedule.poly,
    warmup_epochs: Annotated[float, typer.Option("--warmup-epochs", min=0.0, help="Linear warm-up length.")] = 0.0,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs to train in total.")] = 50,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Crops per step (all GPUs together).")] = 8,
    freeze_backbone: Annotated[bool, typer.Option("--freeze-backbone", help="Train ASPP, decoder and head only.")] = False,
    backbone_bn: Annotated[BackboneBN, typer.Option("--backbone-bn", help="frozen: backbone batch norm in "
                                                    "inference mode (right for small batches and pretrained "
                                                    "weights); train: update it (large batches, or from "
                                                    "scratch).")] = BackboneBN.frozen,  # fmt: skip
    backbone_weights: Annotated[Optional[str], typer.Option("--backbone-weights", help="imagenet (Keras "
                                                            "download, the default), none, or a MobileNetV2 "
                                                            ".h5/.weights.h5 file.")] = None,  # fmt: skip
    pretrained_weights: Annotated[Optional[str], typer.Option("--weights", help="Start from pretrained segmentation weights: "
                                                   "their backbone and the ASPP layers that fit, a new logits layer "
                                                   "for your classes (" + ", ".join(pretrained.names()) + ").")] = None,  # fmt: skip
    alpha: opts.Alpha = None,
    output_stride: opts.OutputStride = None,
    aspp_rates: opts.AsppRates = None,
    no_decoder: opts.NoDecoder = False,
    scale_range: Annotated[str, typer.Option("--scale-range", help="Random rescale range MIN,MAX.")] = "0.5,2.0",
    val_every: Annotated[int, typer.Option("--val-every", min=1, help="Validate every N epochs (and after "
                                           "the last).")] = 1,  # fmt: skip
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary at the end.")] = False,
) -> None:
    """Train a model on images and masks; keep the best by validation mIoU."""
    from edgeseg.data import check_ignore_index, read_classes_file, scan_dataset  # noqa: PLC0415

    # === Options (checked before any work) ===
    if classes_file is not None and classes is not None:
        raise EdgesegError("give --classes-file or --classes, not both")
    names = read_classes_file(classes_file) if classes_file is not None else None
    if classes is not None:
        if classes < 2:
            raise EdgesegError(f"{classes} classes: a segmentation model needs at least 2")
        names = [f"class {index}" for index in range(classes)]
    if (val_images is None) != (val_masks is None):
        raise EdgesegError("give both --val-images and --val-masks, or neither")
    build_flags = {"--preset": preset, "--alpha": alpha, "--output-stride": output_stride,
                   "--aspp-rates": aspp_rates, "--no-decoder": no_decoder or None,
                   "--backbone-weights": backbone_weights, "--weights": pretrained_weights}  # fmt: skip
    if model is not None:
        given = [flag for flag, value in build_flags.items() if value is not None]
        if given:
            raise EdgesegError(f"{', '.join(given)} build a model from a preset; --model {model} already "
                               "fixes the architecture and weights")  # fmt: skip
    if pretrained_weights is not None and backbone_weights is not None:
        raise EdgesegError(f"--weights {pretrained_weights} gives the backbone too; drop --backbone-weights")
    import_tensorflow()
    from edgeseg.losses import WEIGHTED_TERMS, parse_class_weights, parse_loss  # noqa: PLC0415 - needs TensorFlow

    terms = parse_loss(loss)
    weighted = [term for term in terms if term in WEIGHTED_TERMS]
    if class_weights is not None and not weighted:
        raise EdgesegError(f"--class-weights applies to the wce and focal losses; --loss {loss} is unweighted "
                           "(use --loss wce)")  # fmt: skip
    if "wce" in terms and class_weights is not None and class_weights.strip().lower() == "none":
        raise EdgesegError("--loss wce needs class weights; use --loss ce for unweighted cross-entropy")
    weighting = class_weights or ("median" if "wce" in terms else "none")
    crop_size = opts.parse_size(input_size) if input_size is not None else None
    scales = _parse_scale_range(scale_range)
    out_dir = out
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgesegError(f"--out {out_dir} is a file; give a folder for the run")
    last_path = out_dir / "last.keras"
    if resume and not last_path.is_file():
        raise EdgesegError(f"nothing to resume: {last_path} does not exist")
    if not resume and last_path.exists():
        raise EdgesegError(f"{out_dir} already holds a run (last.keras); continue it with --resume or "
                           "choose another --out")  # fmt: skip
    if not out_dir.parent.is_dir():
        raise EdgesegError(f"folder {out_dir.parent} does not exist; create it first")
    if model is not None and not model.is_file():
        raise EdgesegError(f"model file {model} does not exist")
    lr = lr if lr is not None else {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2}[optimizer.value]

    # === Model configuration and classes, where known without TensorFlow ===
    config = None
    if model is None and not resume:
        if names is None:
            raise EdgesegError("give --classes N or --classes-file F (or start from --model)")
        overrides = opts.build_overrides(len(names), input_size, alpha, output_stride, aspp_rates, no_decoder)
        config = get_config(preset or DEFAULT_PRESET, **overrides)
        if pretrained_weights is not None:
            config = pretrained.fine_tune_config(pretrained_weights, config)
    if names is not None:
        check_ignore_index(ignore_index, len(names))
    methods = ("inverse", "median", "none")
    if names is not None and weighting not in methods:
        parse_class_weights(weighting, len(names))  # refuse a bad list before any work

    run = {
        "images": str(images.resolve()), "masks": str(masks.resolve()),
        "val_images": str(val_images.resolve()) if val_images else None,
        "val_masks": str(val_masks.resolve()) if val_masks else None,
        "classes": names, "ignore_index": ignore_index, "preset": preset,
        "model": str(model.resolve()) if model else None, "input_size": input_size, "loss": loss,
        "class_weights": weighting, "optimizer": optimizer.value, "lr": lr, "schedule": schedule.value,
        "warmup_epochs": warmup_epochs, "batch_size": batch_size, "freeze_backbone": freeze_backbone,
        "backbone_bn": backbone_bn.value, "backbone_weights": backbone_weights, "weights": pretrained_weights, "alpha": alpha,
        "output_stride": output_stride, "aspp_rates": aspp_rates, "no_decoder": no_decoder,
        "scale_range": list(scales), "val_every": val_every, "seed": seed,
    }  # fmt: skip

    import keras  # noqa: PLC0415 - needs TensorFlow

    from edgeseg import training  # noqa: PLC0415
    from edgeseg.data import Augmentation, TrainingData, classes_document  # noqa: PLC0415
    from edgeseg.losses import class_weights as compute_weights  # noqa: PLC0415
    from edgeseg.model import build_model, config_of, load_model  # noqa: PLC0415
    from runtime.atomic import write_bytes  # noqa: PLC0415

    strategy, mixed = training.strategy_and_precision()
    if batch_size % strategy.num_replicas_in_sync:
        raise EdgesegError(f"batch size {batch_size} does not split over {strategy.num_replicas_in_sync} "
                           "GPUs; use a multiple of it")  # fmt: skip
    previous_policy = keras.mixed_precision.global_policy()
    keras.utils.set_random_seed(seed)
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        # === Starting point: the interrupted run, a saved model, or a preset ===
        state, optimizer_state, net = training.State(), None, None
        with strategy.scope():
            if resume:
                net, state, optimizer_state = training.load_checkpoint(last_path)
                _check_resume(state, run, names, epochs, out_dir)
                run = state.run
                names = run["classes"]
            elif model is not None:
                net = load_model(model)
                if config_of(net) is None:
                    raise EdgesegError(f"{model} was not built by edgeseg; start from a preset instead")
                if names is None:
                    names = [f"class {index}" for index in range(config_of(net).num_classes)]
                    run["classes"] = names
                    check_ignore_index(ignore_index, len(names))
                elif config_of(net).num_classes != len(names):
                    raise EdgesegError(f"model {model} has {config_of(net).num_classes} classes but "
                                       f"{len(names)} are given")  # fmt: skip

        # === Data (every file checked before training starts) ===
        train_info = scan_dataset(images, masks, len(names), ignore_index, "training")
        val_info = scan_dataset(val_images, val_masks, len(names), ignore_index, "validation") if val_images else None
        if weighting in methods:
            weights = compute_weights(train_info.counts, train_info.image_pixels, weighting)
        else:
            weights = parse_class_weights(weighting, len(names))

        with strategy.scope():
            if net is None and pretrained_weights is not None:
                net = pretrained.fine_tune_model(pretrained_weights, config)
            elif net is None:
                net = build_model(config, backbone_weights=backbone_weights or "imagenet")
            crop = crop_size or tuple(config_of(net).input_size)
            if tuple(config_of(net).input_size) != tuple(crop):
                net = training.resize_model(net, crop)
        eval_size = val_info.common_size if val_info and val_info.common_size else crop

        out_dir.mkdir(exist_ok=True)
        document = classes_document(names, ignore_index, eval_size)
        write_bytes(out_dir / "classes.json", (json.dumps(document, indent=2) + "\n").encode())

        cache = train_info.decoded_bytes <= CACHE_SHARE_OF_MEMORY * _memory_bytes()
        data = TrainingData(train_info, crop, batch_size, ignore_index, seed, Augmentation(scale_range=scales), cache)
        settings = training.Settings(
            epochs=epochs, batch_size=batch_size, loss=loss,
            class_weights=None if weights is None else [float(w) for w in weights],
            optimizer=optimizer.value, lr=lr, schedule=schedule.value, warmup_epochs=warmup_epochs,
            ignore_index=ignore_index, seed=seed, freeze_backbone=freeze_backbone,
            backbone_bn=backbone_bn.value, val_every=val_every,
        )  # fmt: skip
        state.run = run
        state = _run_with_progress(training, net, data, val_info, len(names), settings, out_dir, state,
                                   optimizer_state, eval_size, strategy, resume)  # fmt: skip
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    summary = _summary(out_dir, state)
    if json_output:
        print_json(summary)
    else:
        best = summary["best_miou"]
        typer.echo(f"trained {len(state.history)} epochs in {summary['seconds'] / 60:.1f} min: "
                   + (f"best val mIoU {100 * best:.1f}% (epoch {summary['best_epoch']}), " if best is not None else "")
                   + f"saved {out_dir / 'best.keras'} and {out_dir / 'last.keras'}")  # fmt: skip


def _parse_scale_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise EdgesegError(f"--scale-range {text!r} is not MIN,MAX (e.g. 0.5,2.0)") from None
    if not 0 < low <= high:
        raise EdgesegError(f"--scale-range {text!r} needs 0 < MIN <= MAX")
    return low, high


def _check_resume(state, run: dict, names: list[str] | None, epochs: int, out_dir: Path) -> None:
    """Refuse to resume with options other than the interrupted run's (except --epochs)."""
    changed = [key for key in run if key != "classes" and state.run.get(key) != run[key]]
    if names is not None and state.run.get("classes") != names:
        changed.insert(0, "classes")
    if changed:
        described = ", ".join(f"--{key.replace('_', '-')} {run.get(key)} (was {state.run.get(key)})" for key in changed)
        raise EdgesegError(f"--resume with options that differ from the interrupted run: {described}; "
                           "only --epochs may change")  # fmt: skip
    if epochs <= len(state.history):
        raise EdgesegError(f"the run in {out_dir} has already trained {len(state.history)} epochs; "
                           "pass a larger --epochs to train further")  # fmt: skip


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _run_with_progress(training, net, data, val_info, num_classes, settings, out_dir, state,
                       optimizer_state, eval_size, strategy, resume):  # fmt: skip
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                        transient=True)  # fmt: skip
    task = progress.add_task("", total=1, info="")
    last_miou = {"text": ""}

    def epoch_start(epoch, epochs, steps):
        done = max(state.step - epoch * steps, 0)
        progress.reset(task, total=steps, completed=done, description=f"epoch {epoch + 1}/{epochs}",
                       info=last_miou["text"])  # fmt: skip

    def step(done, loss):
        progress.update(task, completed=done, info=f"loss {loss:.4f}{last_miou['text']}")

    def epoch_end(row, best):
        if math.isfinite(row["val_miou"]):
            last_miou["text"] = f"  val mIoU {100 * row['val_miou']:.1f}%"
        line = (f"epoch {row['epoch']}/{settings.epochs}  loss {row['loss']:.4f}  "
                f"train acc {100 * row['train_accuracy']:.1f}%")  # fmt: skip
        if math.isfinite(row["val_miou"]):
            line += f"  val mIoU {100 * row['val_miou']:.2f}%  val acc {100 * row['val_pixel_accuracy']:.1f}%"
        line += f"  lr {row['lr']:.2e}  {row['seconds']:.0f} s" + ("  (best)" if best and val_info else "")
        progress.console.print(line, highlight=False, soft_wrap=True)

    reporter = training.Reporter(epoch_start, step, epoch_end, lambda text: console.print(text, highlight=False, soft_wrap=True))
    if resume:
        console.print(f"resuming {out_dir} at epoch {len(state.history) + 1}, step {state.step}", highlight=False)
    with progress:
        return training.train(net, data, val_info, num_classes, settings, out_dir, state, optimizer_state,
                              eval_size, strategy, reporter)  # fmt: skip


def _summary(out_dir: Path, state) -> dict:
    history = state.history
    scored = [row for row in history if math.isfinite(row["val_miou"])]
    best = max(scored, key=lambda row: row["val_miou"]) if scored else None
    clean = [{key: (None if isinstance(v, float) and not math.isfinite(v) else v) for key, v in row.items()}
             for row in history]  # fmt: skip
    return {
        "out": str(out_dir),
        "epochs": len(history),
        "steps": state.step,
        "seconds": sum(row["seconds"] for row in history),
        "best_miou": best["val_miou"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "history": clean,
    }
