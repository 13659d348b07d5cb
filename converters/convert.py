"""`convert_model`: Keras model in, self-describing `.tflite` and a report out, written atomically."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from converters import calibration, report
from converters.bias import corrected_biases
from converters.tflite import check_options, convert, segmentation_output, static_batch_one, with_argmax
from edgeseg import __version__
from edgeseg.config import NORMALIZATION
from edgeseg.model import DeepLab, config_of, load_model
from runtime.atomic import atomic_path, check_output, write_bytes
from runtime.errors import EdgesegError
from runtime.metadata import embed_metadata
from runtime.palette import default_classes, default_colors
from runtime.processing import Normalization

CLASSES_FILE = "classes.json"  # written by `edgeseg train` beside its models


@dataclass
class Options:
    """What `edgeseg convert` was asked for (the CLI flags, validated by `check_options`)."""

    out: Path
    quantization: str = "int8"
    io: str | None = None
    output_kind: str = "logits"
    calibration: Path | None = None
    num_calibration: int = 200
    input_size: tuple[int, int] | None = None
    val_images: Path | None = None
    val_masks: Path | None = None
    strict_int8: bool = False
    report: Path | None = None
    threads: int | None = None
    latency_runs: int = 20
    bias_correction: bool = True


def default_calibration_folder() -> Path:
    """`calibration_data/`: real photographs with recorded licences, installed with edgeseg."""
    return Path(str(importlib.resources.files("calibration_data")))


def convert_model(model: keras.Model | str | Path, options: Options, source: Path | None = None,
                  progress: Callable[[str, int], Callable[[int], None]] | None = None,
                  warn: Callable[[str], None] = lambda message: None) -> dict:  # fmt: skip
    """Convert `model` to TFLite at `options.out` and return the report.

    Args:
        model: A Keras model, or the path of a `.keras` file.
        options: The conversion options.
        source: Where `model` was loaded from, if it was passed as a model; class names
            written by `edgeseg train` are read from the `classes.json` beside it.
        progress: progress(description, total) -> advance(n), for long steps.
        warn: Called with one-line warnings (few calibration images, risky graph constructs).

    Returns:
        The report (JSON-serialisable), also written to `options.report` if given.

    Raises:
        EdgesegError: bad options, model, images or masks, an unwritable output, or
            `strict_int8` with float or quantize ops left inside the graph. The file at
            `options.out` is then untouched and nothing partial is left.
    """
    started = time.perf_counter()
    io = check_options(options.quantization, options.io, options.output_kind)
    if options.strict_int8 and options.quantization != "int8":
        raise EdgesegError(f"--strict-int8 needs --quantization int8, not {options.quantization}")
    check_output(options.out, (".tflite",))
    if options.report is not None:
        check_output(options.report, (".json",))
    val_pairs = _validation_pairs(options.val_images, options.val_masks)
    if isinstance(model, (str, Path)):
        source = Path(model)
        model = load_model(source)
    labels = _class_labels(model, source)
    model = _at_input_size(model, options.input_size)
    segmentation_output(model)
    for message in risky_constructs(model):
        warn(message)
    size = tuple(model.input.shape[1:3])
    normalization = Normalization.from_dict(NORMALIZATION)

    folder = options.calibration or default_calibration_folder()
    advance = progress("reading calibration images", min(options.num_calibration + 16, 10**6)) if progress else None
    images = calibration.load(folder, options.num_calibration, progress=advance)
    if images.skipped:
        warn(f"skipped {len(images.skipped)} unreadable image files in {folder}")
    if len(images.calibration) < calibration.FEW_IMAGES:
        warn(f"only {len(images.calibration)} usable calibration images in {folder}; "
             f"{calibration.FEW_IMAGES} or more represent the data better")  # fmt: skip
    frames = [images.frames[p] for p in images.calibration]
    representative = calibration.representative_dataset(frames, size, normalization)

    deploy = with_argmax(model) if options.output_kind == "labels" else model
    with tempfile.TemporaryDirectory(prefix="edgeseg-convert-") as scratch:
        float_path = Path(scratch) / "float32.tflite"
        write_bytes(float_path, convert(model, "float32"))
        coverage = report.BackgroundCoverage(float_path, images.calibration, labels["classes"])
        try:
            step = progress(f"converting ({options.quantization})", 1) if progress else None
            correct = options.bias_correction and options.quantization == "int8"
            with corrected_biases(model, representative()) if correct else contextlib.nullcontext(0) as corrected:
                converted = convert(deploy, options.quantization, io, representative)
            if step:
                step(1)
            covered = coverage.result()  # before the latency measurement, which needs the machine to itself
        finally:
            coverage.stop()
        metadata = _metadata(model, labels, size, normalization, options, io)
        with atomic_path(options.out) as temp:
            temp.write_bytes(embed_metadata(converted, metadata))
            result = _report(float_path, temp, images, val_pairs, labels, options, progress)
            result["coverage"] = covered
            result.update(file=str(options.out), quantization=options.quantization, io=io,
                          output_kind=options.output_kind, input_size=list(size), bias_corrected_layers=corrected,
                          calibration={"folder": str(folder), "images": len(images.calibration),
                                       "held_out": len(images.holdout), "skipped": len(images.skipped)})  # fmt: skip
            result["seconds"] = round(time.perf_counter() - started, 1)
            _check_strict(result, options)
            if options.report is not None:
                write_bytes(options.report, json.dumps(result, indent=2).encode())
    return result


def _at_input_size(model: keras.Model, input_size: tuple[int, int] | None) -> keras.Model:
    """The model on a static batch-1 input, rebuilt at `input_size` when one is given."""
    config = config_of(model)
    if input_size is None:
        shape = tuple(model.input.shape[1:3])
        if None in shape:
            raise EdgesegError(f"model {model.name} has a dynamic input size {shape}; "
                               "give the deployment size with --input-size HxW")  # fmt: skip
        return static_batch_one(model, shape)
    if config is not None and tuple(config.input_size) != tuple(input_size):
        # Weights do not depend on the input size: the same layers, rebuilt statically.
        resized = DeepLab(config.replace(input_size=tuple(input_size)))
        resized.set_weights(model.get_weights())
        return resized
    return static_batch_one(model, tuple(input_size))


def risky_constructs(model: keras.Model) -> list[str]:
    """Warnings for graph constructs known to convert badly, found before converting."""
    messages = []
    for layer in _all_layers(model):
        kind = type(layer).__name__
        if kind == "Lambda":
            messages.append(f"layer {layer.name} is a Lambda: resizes or shape arithmetic inside it "
                            "often convert to float or dynamic-shape ops; use a static layer")  # fmt: skip
        elif kind == "AveragePooling2D" and tuple(layer.output.shape[1:3]) == (1, 1):
            messages.append(f"layer {layer.name} pools the whole map with AVERAGE_POOL_2D, which "
                            "XNNPACK does not run in int8; GlobalAveragePooling2D(keepdims=True) does")  # fmt: skip
        elif kind in ("UpSampling2D",) and getattr(layer, "interpolation", "") == "nearest":
            messages.append(f"layer {layer.name} upsamples with nearest neighbour (RESIZE_NEAREST_NEIGHBOR "
                            "runs outside XNNPACK in int8); bilinear stays inside")  # fmt: skip
    return messages


def _all_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def _class_labels(model: keras.Model, source: Path | None) -> dict:
    """Class names, colours and ignore index: from training's classes.json, else those the
    model carries (pretrained weights), else defaults."""
    count = int(model.output.shape[-1])
    sidecar = source.parent / CLASSES_FILE if source is not None else None
    if sidecar is not None and sidecar.is_file():
        data = json.loads(sidecar.read_text())
        if len(data.get("classes", [])) == count:
            return {"classes": data["classes"], "colors": data.get("colors") or default_colors(count),
                    "ignore_index": data.get("ignore_index")}  # fmt: skip
    carried = getattr(model, "labels", None) if isinstance(model, DeepLab) else None
    if carried and len(carried["classes"]) == count:
        return {"classes": carried["classes"], "colors": carried["colors"], "ignore_index": None}
    return {"classes": default_classes(count), "colors": [list(c) for c in default_colors(count)],
            "ignore_index": None}  # fmt: skip


def _metadata(model, labels, size, normalization, options, io) -> dict:
    config = config_of(model)
    output_size = tuple(model.output.shape[1:3])
    return {
        **labels,
        "input_size": list(size),
        "normalization": normalization.to_dict(),
        "output_kind": options.output_kind,
        "output_stride": round(size[0] / output_size[0]) if output_size[0] else None,
        "quantization": options.quantization,
        "io": io,
        "config": config.to_dict() if config is not None else None,
        "edgeseg_version": __version__,
    }


def _validation_pairs(images: Path | None, masks: Path | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read validation images and their masks (matched by file stem), checking they fit."""
    if images is None and masks is None:
        return []
    if images is None or masks is None:
        raise EdgesegError("--val-images and --val-masks go together; give both folders")
    image_paths = {p.stem: p for p in calibration.find_images(images)}
    if not masks.is_dir():
        raise EdgesegError(f"validation mask folder {masks} does not exist")
    mask_paths = {p.stem: p for p in masks.iterdir() if p.suffix.lower() == ".png"}
    missing = sorted(set(image_paths) - set(mask_paths))
    if missing:
        raise EdgesegError(f"validation image {image_paths[missing[0]]} has no mask {missing[0]}.png "
                           f"in {masks} ({len(missing)} images without a mask)")  # fmt: skip
    pairs = []
    for stem, path in sorted(image_paths.items()):
        frame = calibration.read_bgr(path)
        mask = _read_mask(mask_paths[stem])
        if frame is None or mask is None:
            raise EdgesegError(f"cannot read {path if frame is None else mask_paths[stem]}")
        if frame.shape[:2] != mask.shape:
            raise EdgesegError(f"mask {mask_paths[stem]} is {mask.shape[1]}x{mask.shape[0]} but image "
                               f"{path} is {frame.shape[1]}x{frame.shape[0]}")  # fmt: skip
        pairs.append((frame, mask))
    return pairs


def _read_mask(path: Path) -> np.ndarray | None:
    import cv2  # noqa: PLC0415

    mask = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    return mask if mask is not None and mask.ndim == 2 else None


def _report(float_path, converted_path, images, val_pairs, labels, options, progress) -> dict:
    threads = options.threads or os.cpu_count() or 1
    result = {"ops": report.op_report(converted_path, threads)}
    result["size_bytes"] = {"float32": float_path.stat().st_size, "converted": converted_path.stat().st_size}
    result["size_ratio"] = result["size_bytes"]["converted"] / result["size_bytes"]["float32"]
    timing = report.latency({"float32": float_path, "converted": converted_path}, threads, options.latency_runs)
    result["latency"] = {"threads": threads, **timing,
                         "ratio": timing["converted"]["invoke_ms"] / timing["float32"]["invoke_ms"]}  # fmt: skip
    classes = labels["classes"]
    if val_pairs:
        advance = progress("validating", 2 * len(val_pairs)) if progress else None
        result["fidelity"] = report.fidelity_on_masks(float_path, converted_path, val_pairs, classes,
                                                      labels["ignore_index"], threads, advance)  # fmt: skip
    else:
        held = [images.frames[p] for p in images.holdout]
        result["fidelity"] = report.agreement(float_path, converted_path, held, threads)
    return result


def _check_strict(result: dict, options: Options) -> None:
    ops = result["ops"]
    offenders = ops["float_ops"] + ops["quantize_ops"]
    if options.strict_int8 and offenders:
        raise EdgesegError(f"--strict-int8: {len(offenders)} ops are not int8 inside the graph, e.g. "
                           f"{offenders[0]}; see the report for all of them")  # fmt: skip
