"""`convert`: a Keras model in, a self-describing `.tflite` and a report out, written atomically."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras

from converters import calibration, report
from converters.bias import corrected_biases
from converters.tflite import check_options, convert as convert_graph, segmentation_output, static_batch_one, with_argmax
from edgeseg import __version__
from edgeseg.checks import output_file, thread_count
from edgeseg.classes import DEFAULT_IGNORE_INDEX, class_colors, class_names, read_classes_json
from edgeseg.config import NORMALIZATION, ModelConfig, check_input_size
from edgeseg.datasets import scan_dataset
from edgeseg.masks import read_label_map
from edgeseg.model import DeepLab, build_model, config_of, load_model, resize_model
from edgeseg.presets import model_argument
from runtime.atomic import atomic_path, write_bytes
from runtime.errors import ParameterError
from runtime.metadata import embed_metadata
from runtime.palette import default_classes, default_colors
from runtime.processing import Normalization


@dataclass(frozen=True)
class Options:
    """What a conversion was asked for (the arguments of `convert`, validated by `check_options`)."""

    out: Path
    quantization: str = "int8"
    io: str | None = None
    output_kind: str = "logits"
    calibration: Path | None = None
    num_calibration: int = 200
    input_size: tuple[int, int] | None = None
    val_images: Path | None = None
    val_masks: Path | None = None
    val_label_map: Path | None = None
    strict_int8: bool = False
    report: Path | None = None
    threads: int | None = None
    latency_runs: int = 20
    bias_correction: bool = True


def convert(
    model,
    out: str | Path,
    *,
    input_size: tuple[int, int] | None = None,
    classes: Sequence[str] | int | str | Path | None = None,
    backbone_weights: str | Path | None = None,
    weights: str | None = None,
    calibration: str | Path | None = None,
    num_calibration: int = 200,
    quantization: str = "int8",
    io: str | None = None,
    output_kind: str = "logits",
    val_images: str | Path | None = None,
    val_masks: str | Path | None = None,
    val_label_map: str | Path | None = None,
    strict_int8: bool = False,
    bias_correction: bool = True,
    report: str | Path | None = None,
    threads: int | None = None,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Convert a model to TFLite (full int8 by default) at `out` and return the report.

    Example:
        >>> report = convert("runs/camvid/best.keras", "model.tflite", input_size=(360, 480))
        >>> report["ops"]["float_ops"], report["fidelity"]

    Args:
        model: A Keras model, the path of a .keras file (class names come from the
            classes.json beside it), or a `ModelConfig` or preset name to build first.
        out: Where to write the .tflite file.
        input_size: (height, width) to convert at; an edgeseg model is rebuilt at it with the
            same weights (default: the model's input size).
        classes: Names to embed (a list, or a file with one per line), or a number of classes
            (for a preset: the classes to build; otherwise checked against the model).
            Default: the classes.json beside a .keras file, else defaults for the count.
        backbone_weights: For a model built here: "imagenet", a MobileNetV2 .h5 /
            .weights.h5 file, or None / "none" for random initialisation.
        weights: For a model built here: pretrained weights of the whole model, e.g.
            "pascalvoc" (`edgeseg.pretrained`); their class names are embedded.
        calibration: Folder of calibration images, searched recursively (default: the
            repository's calibration_data/).
        num_calibration: Calibration images to use.
        quantization: "int8", "float16", "dynamic" or "float32".
        io: Input type: "uint8" (raw pixels; default for int8), "int8" or "float32".
        output_kind: "logits" (at the decoder's stride) or "labels" (in-graph arg-max).
        val_images: Labelled images (with `val_masks`) for the float-vs-converted mIoU.
        val_masks: Their PNG masks, same file stems: index, palette or colour PNGs (colours
            are the model's classes'), read as training and `evaluate` read them.
        val_label_map: Label map for `val_masks` (`edgeseg.masks.read_label_map`).
        strict_int8: Fail if any op inside the graph is not int8.
        bias_correction: int8: shift biases to cancel the mean error of rounded weights.
        report: Also write the report as JSON here.
        threads: Threads for the latency measurement (default: every core).
        progress: progress(description, total) -> advance(n), for long steps.
        warn: Called with one-line warnings (few calibration images, risky graph constructs);
            default: `warnings.warn`.

    Returns:
        The report (JSON-serialisable): ops, size, latency, fidelity, coverage, calibration.

    Raises:
        EdgesegError: bad arguments (`ParameterError`, naming them: an unwritable output, an
            input size or thread count beyond its limit, ...), model, images or masks, or
            `strict_int8` with float or quantize ops left inside the graph. The file at `out` is then untouched and nothing partial is left.
    """
    options = Options(out=Path(out), quantization=quantization, io=io, output_kind=output_kind,
                      calibration=None if calibration is None else Path(calibration), num_calibration=num_calibration,
                      input_size=None if input_size is None else tuple(input_size),
                      val_images=val_images, val_masks=val_masks, strict_int8=strict_int8,
                      val_label_map=None if val_label_map is None else Path(val_label_map),
                      report=None if report is None else Path(report), threads=threads,
                      bias_correction=bias_correction)  # fmt: skip
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    started = time.perf_counter()
    io = check_options(options.quantization, options.io, options.output_kind)
    if options.strict_int8 and options.quantization != "int8":
        raise ParameterError(f"{{strict_int8}} needs {{quantization}} int8, not {options.quantization}",
                             "strict_int8", "quantization")  # fmt: skip
    output_file(options.out, "out", (".tflite",))
    if options.report is not None:
        output_file(options.report, "report", (".json",))
    if options.input_size is not None:
        check_input_size(options.input_size)
    thread_count(options.threads, warn)
    if (options.val_images is None) != (options.val_masks is None):
        raise ParameterError("give {val_images} and {val_masks} together, or neither", "val_images", "val_masks")
    if options.val_label_map is not None:
        read_label_map(options.val_label_map)  # a bad file is reported before the conversion
    model, source = _keras_model(model, options.input_size, classes, backbone_weights, weights)
    segmentation_output(model)
    for message in risky_constructs(model):
        warn(message)
    labels = _class_labels(model, source, classes)
    val = _validation_set(options, labels)
    images = _calibration_set(options, progress, warn)

    with tempfile.TemporaryDirectory(prefix="edgeseg-convert-") as scratch:
        float_path = write_bytes(Path(scratch) / "float32.tflite", convert_graph(model, "float32"))
        converted, corrected, covered = _quantize(model, float_path, images, labels, options, io, progress)
        metadata = _metadata(model, labels, options, io)
        with atomic_path(options.out) as temp:
            temp.write_bytes(embed_metadata(converted, metadata))
            result = _report(float_path, temp, images, val, labels, options, progress)
            result.update(coverage=covered, file=str(options.out), quantization=options.quantization, io=io,
                          output_kind=options.output_kind, input_size=metadata["input_size"],
                          bias_corrected_layers=corrected,
                          calibration={"folder": str(images.folder), "images": len(images.calibration),
                                       "held_out": len(images.holdout), "skipped": len(images.skipped)})  # fmt: skip
            result["seconds"] = round(time.perf_counter() - started, 1)
            _check_strict(result, options)
            if options.report is not None:
                write_bytes(options.report, json.dumps(result, indent=2).encode())
    return result


def default_calibration_folder() -> Path:
    """`calibration_data/`: real photographs with recorded licences, installed with edgeseg."""
    return Path(str(importlib.resources.files("calibration_data")))


# === The model and what it describes ===


def _keras_model(model, input_size, classes, backbone_weights, weights) -> tuple[keras.Model, Path | None]:
    """The Keras model to convert, at its deployment size, and the .keras file it came from."""
    count = None if classes is None else len(class_names(classes))
    model = model_argument(model, count, backbone_weights, weights)
    if isinstance(model, ModelConfig):
        config = model.replace(input_size=tuple(input_size)) if input_size else model
        return build_model(config, backbone_weights=backbone_weights, weights=weights), None
    source = model if isinstance(model, Path) else None
    loaded = _at_input_size(load_model(source) if source else model, input_size)
    if count is not None and loaded.output.shape[-1] != count:
        raise ParameterError(f"{{classes}} {count} but {source or loaded.name} has {loaded.output.shape[-1]} "
                             "classes", "classes")  # fmt: skip
    return loaded, source


def _at_input_size(model: keras.Model, input_size: tuple[int, int] | None) -> keras.Model:
    """The model on a static batch-1 input, rebuilt at `input_size` when one is given."""
    if input_size is None:
        shape = tuple(model.input.shape[1:3])
        if None in shape:
            raise ParameterError(f"model {model.name} has a dynamic input size {shape}; give the deployment "
                                 "size as {input_size}", "input_size")  # fmt: skip
        return static_batch_one(model, shape)
    config = config_of(model)
    if config is not None and tuple(config.input_size) != tuple(input_size):
        return resize_model(model, input_size)
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


def _class_labels(model: keras.Model, source: Path | None, classes) -> dict:
    """Class names, colours and ignore index: the names given, else training's classes.json, else
    those the model carries (pretrained weights), else defaults."""
    count = int(model.output.shape[-1])
    described = read_classes_json(source.parent, count) if source is not None else None
    if classes is not None and not isinstance(classes, int):
        names = class_names(classes)
        return {"classes": names, "colors": class_colors(names),
                "ignore_index": described["ignore_index"] if described else None}  # fmt: skip
    if described:
        return described
    carried = getattr(model, "labels", None) if isinstance(model, DeepLab) else None
    if carried and len(carried["classes"]) == count:
        return {"classes": carried["classes"], "colors": carried["colors"], "ignore_index": None}
    return {"classes": default_classes(count), "colors": [list(c) for c in default_colors(count)],
            "ignore_index": None}  # fmt: skip


def _metadata(model, labels, options, io) -> dict:
    config = config_of(model)
    size = tuple(model.input.shape[1:3])
    output_size = tuple(model.output.shape[1:3])
    return {
        **labels,
        "input_size": list(size),
        "normalization": NORMALIZATION,
        "output_kind": options.output_kind,
        "output_stride": round(size[0] / output_size[0]) if output_size[0] else None,
        "quantization": options.quantization,
        "io": io,
        "config": config.to_dict() if config is not None else None,
        "edgeseg_version": __version__,
    }


# === Images ===


def _validation_set(options: Options, labels: dict):
    """The checked labelled images for the fidelity check (`edgeseg.datasets.scan_dataset`), or None."""
    if options.val_images is None:
        return None
    ignore_index = labels["ignore_index"] if labels["ignore_index"] is not None else DEFAULT_IGNORE_INDEX
    # Colour masks are read by the model's class colours; the format is detected as in training.
    label_map = None if options.val_label_map is None else read_label_map(options.val_label_map)
    return scan_dataset(options.val_images, options.val_masks, len(labels["classes"]), ignore_index, "validation",
                        colors=labels["colors"], label_map=label_map)  # fmt: skip


def _calibration_set(options: Options, progress, warn) -> calibration.CalibrationSet:
    folder = options.calibration or default_calibration_folder()
    advance = progress("reading calibration images", min(options.num_calibration + 16, 10**6)) if progress else None
    images = calibration.load(folder, options.num_calibration, progress=advance)
    if images.skipped:
        warn(f"skipped {len(images.skipped)} unreadable image files in {folder}")
    if len(images.calibration) < calibration.FEW_IMAGES:
        warn(f"only {len(images.calibration)} usable calibration images in {folder}; "
             f"{calibration.FEW_IMAGES} or more represent the data better")  # fmt: skip
    return images


# === Conversion and report ===


def _quantize(model, float_path: Path, images, labels: dict, options: Options, io: str, progress):
    """The converted flatbuffer, the layers bias correction changed, and the class coverage.

    The coverage of the calibration images runs in a child process while TFLite's calibrator
    holds this one's core.
    """
    size = tuple(model.input.shape[1:3])
    frames = [images.frames[p] for p in images.calibration]
    representative = calibration.representative_dataset(frames, size, Normalization.from_dict(NORMALIZATION))
    deploy = with_argmax(model) if options.output_kind == "labels" else model
    coverage = report.BackgroundCoverage(float_path, images.calibration, labels["classes"])
    try:
        step = progress(f"converting ({options.quantization})", 1) if progress else None
        correct = options.bias_correction and options.quantization == "int8"
        with corrected_biases(model, representative()) if correct else contextlib.nullcontext(0) as corrected:
            converted = convert_graph(deploy, options.quantization, io, representative)
        if step:
            step(1)
        return converted, corrected, coverage.result()  # before the latency measurement, which needs the machine
    finally:
        coverage.stop()


def _report(float_path, converted_path, images, val, labels, options, progress) -> dict:
    threads = options.threads or os.cpu_count() or 1
    result = {"ops": report.op_report(converted_path, threads)}
    result["size_bytes"] = {"float32": float_path.stat().st_size, "converted": converted_path.stat().st_size}
    result["size_ratio"] = result["size_bytes"]["converted"] / result["size_bytes"]["float32"]
    timing = report.latency({"float32": float_path, "converted": converted_path}, threads, options.latency_runs)
    # A model small enough to time at 0 ms (rounded) has no ratio: None (JSON null), never a division by zero.
    float_ms = timing["float32"]["invoke_ms"]
    result["latency"] = {"threads": threads, **timing,
                         "ratio": timing["converted"]["invoke_ms"] / float_ms if float_ms > 0 else None}  # fmt: skip
    classes = labels["classes"]
    if val is not None:
        advance = progress("validating", 2 * len(val)) if progress else None
        ignore_index = labels["ignore_index"] if labels["ignore_index"] is not None else DEFAULT_IGNORE_INDEX
        result["fidelity"] = report.fidelity_on_masks(float_path, converted_path, val, classes, ignore_index,
                                                      threads, advance)  # fmt: skip
    else:
        held = [images.frames[p] for p in images.holdout]
        result["fidelity"] = report.agreement(float_path, converted_path, held, threads)
    return result


def _check_strict(result: dict, options: Options) -> None:
    ops = result["ops"]
    offenders = ops["float_ops"] + ops["quantize_ops"]
    if options.strict_int8 and offenders:
        raise ParameterError(f"{{strict_int8}}: {len(offenders)} ops are not int8 inside the graph, e.g. "
                             f"{offenders[0]}; see the report for all of them", "strict_int8")  # fmt: skip
