"""Score Keras and TFLite segmentation models on a folder of images and masks, side by side.

`evaluate` is the one call (`edgeseg eval` prints what it returns); `score` runs one model
over a checked dataset (training validates with it). Both kinds run through the same pre- and post-processing as the device runtime (stretch the
frame to the model's input size; arg-max at the output's stride, then nearest-neighbour to
the frame's size), and a .keras model runs at the input size of the .tflite models beside it,
so the difference between a float model and its int8 conversion is the quantization alone.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edgeseg.checks import output_file, thread_count
from edgeseg.classes import DEFAULT_IGNORE_INDEX, check_ignore_index, class_colors, class_list, read_classes_json
from edgeseg.config import NORMALIZATION, check_input_size
from edgeseg.datasets import DatasetInfo, find_pairs, read_stem_list, scan_pairs
from edgeseg.masks import read_label_map
from edgeseg.metrics import SegmentationMetrics, json_number, labels_from_logits
from runtime import processing
from runtime.atomic import atomic_path, check_output
from runtime.errors import EdgesegError, ParameterError

MODEL_SUFFIXES = (".keras", ".tflite")


class KerasSegmenter:
    """A Keras model behind the runtime `Segmenter` interface: `segment(frame_bgr) -> labels`.

    Args:
        model: A segmentation model: (1, H, W, 3) float input normalised as
            `edgeseg.config.NORMALIZATION`, (1, h, w, C) logits out at any stride.
    """

    def __init__(self, model):
        import tensorflow as tf  # noqa: PLC0415 - only Keras models need it

        if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.output.shape) != 4:
            raise EdgesegError(f"model {model.name} is not a segmentation model: expected one image "
                               "input and one (1, h, w, classes) output")  # fmt: skip
        self.model = model
        self.input_size = tuple(int(v) for v in model.input.shape[1:3])
        self.num_classes = int(model.output.shape[-1])
        self.normalization = processing.Normalization.from_dict(NORMALIZATION)
        self._predict = tf.function(lambda x: model(x, training=False))

    def logits(self, frame_bgr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 BGR, any size -> (1, h, w, C) float32 logits at the model's output stride."""
        model_input = processing.prepare_input(frame_bgr, self.input_size, self.normalization)
        return np.asarray(self._predict(model_input), dtype=np.float32)

    def segment(self, frame_bgr: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 BGR -> (H, W) uint8 class indices."""
        return labels_from_logits(self.logits(frame_bgr), frame_bgr.shape[:2])

    def at_size(self, input_size: tuple[int, int]) -> KerasSegmenter:
        """This segmenter with its model rebuilt at `input_size` (height, width), same weights.

        Raises:
            EdgesegError: a model edgeseg did not build (`edgeseg.model.resize_model`), or a
                size its config rejects.
        """
        if tuple(input_size) == self.input_size:
            return self
        from edgeseg.model import resize_model  # noqa: PLC0415 - needs TensorFlow, as this class does

        return KerasSegmenter(resize_model(self.model, input_size))


@dataclass
class LoadedModel:
    """A model ready to score, with what it says about its classes.

    Attributes:
        path: The model file.
        kind: "keras" or "tflite".
        segmenter: Has `segment(frame_bgr) -> (H, W) uint8`.
        num_classes: Output classes.
        classes: Class names if the model (or its classes.json) gives them, else None.
        ignore_index: The ignore index the model was trained with, if known.
        colors: (R, G, B) per class if the model gives them (colour masks are read by them).
    """

    path: Path
    kind: str
    segmenter: object
    num_classes: int
    classes: list[str] | None = None
    ignore_index: int | None = None
    colors: list | None = None


def load_for_eval(path: str | Path, threads: int | None = None) -> LoadedModel:
    """Open a `.keras` model (TensorFlow) or a `.tflite` model (runtime `Segmenter`).

    A `.keras` model's class names and ignore index come from `classes.json` beside it
    (written by `edgeseg train`), when present.

    Raises:
        EdgesegError: a missing file, an unknown suffix, or a file that is not a model.
    """
    path = check_model_path(path)
    if path.suffix == ".tflite":
        from runtime import Segmenter  # noqa: PLC0415

        segmenter = Segmenter(path, num_threads=threads)
        metadata = segmenter.metadata or {}
        return LoadedModel(path, "tflite", segmenter, len(segmenter.classes),
                           segmenter.classes if metadata.get("classes") else None,
                           metadata.get("ignore_index"), metadata.get("colors"))  # fmt: skip
    from edgeseg import require_tensorflow  # noqa: PLC0415

    require_tensorflow()
    from edgeseg.model import load_model  # noqa: PLC0415 - needs TensorFlow

    segmenter = KerasSegmenter(load_model(path))
    described = read_classes_json(path.parent, segmenter.num_classes) or {}
    return LoadedModel(path, "keras", segmenter, segmenter.num_classes,
                       described.get("classes"), described.get("ignore_index"), described.get("colors"))  # fmt: skip


def check_model_path(path: str | Path) -> Path:
    """`path` as a Path, if it is an existing .keras or .tflite file.

    Raises:
        EdgesegError: a missing file or another suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"model file {path} does not exist")
    if path.suffix not in MODEL_SUFFIXES:
        raise EdgesegError(f"{path} is neither a .keras nor a .tflite model")
    return path


@dataclass
class Result:
    """Scores of one model on one dataset.

    Attributes:
        latencies_ms: Time of each `segment` call: pre-processing, inference, post-processing.
    """

    path: Path
    kind: str
    metrics: SegmentationMetrics
    latencies_ms: list[float] = field(default_factory=list)
    input_size: tuple[int, int] | None = None

    @property
    def latency_ms(self) -> float:
        return float(np.median(self.latencies_ms)) if self.latencies_ms else float("nan")

    def to_dict(self, names: list[str], reference: Result | None = None) -> dict:
        """JSON form: miou, per_class_iou (name -> IoU or null), pixel_accuracy, the input
        size the model ran at, and the differences to `reference` (the first model) when given."""
        data = {
            "model": str(self.path),
            "kind": self.kind,
            "input_size": list(self.input_size) if self.input_size else None,
            "miou": _number(self.metrics.miou),
            "per_class_iou": {name: _number(v) for name, v in zip(names, self.metrics.per_class_iou)},
            "pixel_accuracy": _number(self.metrics.pixel_accuracy),
            "latency_ms": _number(self.latency_ms),
        }
        if reference is not None:
            data["miou_difference"] = _number(self.metrics.miou - reference.metrics.miou)
            data["per_class_iou_difference"] = {
                name: _number(mine - theirs)
                for name, mine, theirs in zip(names, self.metrics.per_class_iou, reference.metrics.per_class_iou)
            }
            data["pixel_accuracy_difference"] = _number(self.metrics.pixel_accuracy - reference.metrics.pixel_accuracy)
        return data


def _number(value: float) -> float | None:
    value = json_number(value)
    return None if value is None else round(value, 6)


def score(model: LoadedModel | KerasSegmenter, info: DatasetInfo, num_classes: int,
          ignore_index: int | None, on_image: Callable[[], None] | None = None) -> Result:  # fmt: skip
    """Run a model on every pair of a checked dataset and accumulate the metrics.

    Args:
        model: A `LoadedModel`, or a bare `KerasSegmenter` (during training).
        info: Pairs from `edgeseg.datasets.scan_dataset`.
        num_classes: C.
        ignore_index: Mask value to skip, or None.
        on_image: Called after each image (progress bars).

    Returns:
        The `Result`.
    """
    if isinstance(model, KerasSegmenter):
        model = LoadedModel(Path(model.model.name), "keras", model, model.num_classes)
    metrics = SegmentationMetrics(num_classes, ignore_index)
    size = getattr(model.segmenter, "input_size", None)
    result = Result(model.path, model.kind, metrics, input_size=tuple(int(v) for v in size) if size else None)
    for index in range(len(info)):
        image, mask = info.read_pair(index)
        start = time.perf_counter()
        labels = model.segmenter.segment(image)
        result.latencies_ms.append((time.perf_counter() - start) * 1e3)
        metrics.update(mask, labels)
        if on_image:
            on_image()
    return result


@dataclass
class Evaluation:
    """What `evaluate` found.

    Attributes:
        results: One `Result` per model, in the order given (the first is the reference).
        classes: The class names the scores are reported under.
        ignore_index: The mask value that was left out.
        images: How many image/mask pairs were scored.
    """

    results: list[Result]
    classes: list[str]
    ignore_index: int
    images: int

    def to_dict(self) -> list[dict]:
        """JSON form: one object per model (see `Result.to_dict`), differences to the first."""
        first = self.results[0]
        return [result.to_dict(self.classes, first if index else None) for index, result in enumerate(self.results)]


def evaluate(models: str | Path | Sequence, images: str | Path, masks: str | Path, *,
             classes: Sequence[str] | int | str | Path | None = None, ignore_index: int | None = None,
             threads: int | None = None, confusion: str | Path | None = None,
             list_file: str | Path | None = None, image_suffix: str | None = None, mask_suffix: str = ".png",
             mask_format: str | None = None, label_map: str | Path | None = None,
             input_size: tuple[int, int] | None = None,
             progress: Callable[[str, int], Callable[[], None]] | None = None,
             warn: Callable[[str], None] | None = None) -> Evaluation:  # fmt: skip
    """Score one or more models on a folder of images and masks, as the device would run them.

    Example:
        >>> evaluation = evaluate(["best.keras", "model.tflite"], "val", "valannot")
        >>> evaluation.results[1].metrics.miou - evaluation.results[0].metrics.miou   # int8 drop

    Args:
        models: A model or a list of them: `.keras` or `.tflite` paths, or Keras models.
        images: Folder of images.
        masks: Folder of PNG masks with the images' stems (subfolders included).
        classes: Class names (a list, a count or a classes file, `edgeseg.classes.read_class_list`);
            default: the models' own (from a .tflite's metadata or the classes.json beside a
            .keras), else "class N".
        ignore_index: Mask value to leave out; default: the models' own, else 255.
        threads: CPU threads for .tflite models (default: every core).
        confusion: Also write the confusion matrices to this .png.
        list_file: Score only the stems this file lists, one per line.
        image_suffix, mask_suffix: The pairing rule (`edgeseg.datasets.find_pairs`).
        mask_format: "index", "palette" or "color"; default: detected from the masks. Colour
            masks are read by the classes' colours (`classes`, else the models').
        label_map: File mapping stored values or colours to classes or ignore, as in training
            (`edgeseg.masks.read_label_map`).
        input_size: (height, width) to run the Keras models at, rebuilt with their weights as
            `convert` does. Default: the input size of the first .tflite model given, so a
            float model and its conversion see the same pixels; without one, each model's own
            (training saves best.keras at the size its frames share).
        progress: progress(description, total) -> advance(), called once per model.
        warn: Called with one-line warnings (more threads than cores); default: `warnings.warn`.

    Returns:
        The `Evaluation`.

    Raises:
        EdgesegError: a missing or unreadable model, models that predict different numbers
            of classes, classes or an ignore index that do not fit them, a bad dataset, or
            (`ParameterError`) threads beyond `runtime.limits.MAX_THREADS`, a `confusion`
            file that cannot be written, or an `input_size` a Keras model cannot be rebuilt at.
    """
    models = [models] if isinstance(models, (str, Path)) or not isinstance(models, Sequence) else list(models)
    for model in models:  # every file before loading any
        if isinstance(model, (str, Path)):
            check_model_path(model)
    if confusion is not None:
        output_file(confusion, "confusion", (".png",))
    thread_count(threads, warn or (lambda message: warnings.warn(message, stacklevel=3)))
    names, colors = class_list(classes) if classes is not None else (None, None)
    maps = read_label_map(label_map) if label_map is not None else None
    stems = read_stem_list(list_file) if list_file is not None else None
    if input_size is not None:
        check_input_size(input_size)
    loaded = [load_for_eval(model, threads) if isinstance(model, (str, Path)) else _loaded_keras(model)
              for model in models]  # fmt: skip
    _at_common_size(loaded, input_size)
    counts = {model.num_classes for model in loaded}
    if len(counts) > 1:
        described = ", ".join(f"{model.path.name}: {model.num_classes}" for model in loaded)
        raise EdgesegError(f"the models predict different numbers of classes ({described})")
    num_classes = loaded[0].num_classes
    if names is not None and len(names) != num_classes:
        raise ParameterError(f"{{classes}} names {len(names)} classes; the models predict {num_classes}", "classes")
    names = names or next((m.classes for m in loaded if m.classes), None) or [f"class {i}" for i in range(num_classes)]
    if ignore_index is None:
        ignore_index = next((m.ignore_index for m in loaded if m.ignore_index is not None), DEFAULT_IGNORE_INDEX)
    check_ignore_index(ignore_index, num_classes)
    colors = colors or next((m.colors for m in loaded if m.colors), None) or class_colors(names)
    pairs = find_pairs(images, masks, stems, image_suffix, mask_suffix, listed_in=str(list_file))
    info = scan_pairs(pairs, num_classes, ignore_index, "evaluation", mask_format=mask_format, colors=colors,
                      label_map=maps)  # fmt: skip
    results = []
    for model in loaded:
        advance = progress(model.path.name, len(info)) if progress else None
        results.append(score(model, info, num_classes, ignore_index, advance))
    if confusion is not None:
        draw_confusion(results, names, confusion)
    return Evaluation(results, names, ignore_index, len(info))


def _at_common_size(loaded: list[LoadedModel], input_size: tuple[int, int] | None) -> None:
    """Rebuild the Keras models at `input_size`, else at the first .tflite model's, in place."""
    size = input_size or next((tuple(m.segmenter.input_size) for m in loaded if m.kind == "tflite"), None)
    for model in loaded:
        if size is None or model.kind != "keras":
            continue
        try:
            model.segmenter = model.segmenter.at_size(size)
        except EdgesegError as error:
            given = "{input_size}" if input_size else f"the input size of the .tflite model ({size[0]}x{size[1]})"
            raise ParameterError(f"cannot run {model.path.name} at {given}: {error}; give its own size as "
                                 "{input_size}", "input_size") from None  # fmt: skip


def _loaded_keras(model) -> LoadedModel:
    segmenter = KerasSegmenter(model)
    return LoadedModel(Path(model.name), "keras", segmenter, segmenter.num_classes)


# === Confusion-matrix picture ===

CELL = 36
MARGIN_TOP = 56


def draw_confusion(results: list[Result], names: list[str], path: str | Path) -> Path:
    """Write a PNG of each model's row-normalised confusion matrix, side by side.

    Rows are true classes, columns predicted ones; a cell shows the percentage of the row's
    pixels, darker for more.

    Raises:
        EdgesegError: the destination is not writable or does not end in .png.
    """
    path = check_output(path, (".png",))
    count = len(names)
    label_width = 12 + 9 * max(len(name) for name in names)
    panel_width = label_width + CELL * count + 24
    height = MARGIN_TOP + CELL * count + 40
    canvas = np.full((height, panel_width * len(results), 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for panel, result in enumerate(results):
        left = panel * panel_width + label_width
        matrix = result.metrics.matrix.astype(np.float64)
        rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        title = f"{Path(result.path).name}: mIoU {100 * result.metrics.miou:.1f}%"
        cv2.putText(canvas, title, (panel * panel_width + 8, 22), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        for row in range(count):
            top = MARGIN_TOP + row * CELL
            cv2.putText(canvas, names[row][:24], (panel * panel_width + 8, top + CELL // 2 + 5), font, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
            for column in range(count):
                value = rows[row, column]
                shade = int(255 - 200 * value)
                x0 = left + column * CELL
                cv2.rectangle(canvas, (x0, top), (x0 + CELL - 1, top + CELL - 1), (255, shade, shade), -1)
                if value >= 0.005:
                    text_color = (255, 255, 255) if value > 0.5 else (0, 0, 0)
                    cv2.putText(canvas, f"{100 * value:.0f}", (x0 + 6, top + CELL // 2 + 5), font, 0.4,
                                text_color, 1, cv2.LINE_AA)  # fmt: skip
        for column in range(count):
            cv2.putText(canvas, str(column), (left + column * CELL + 10, MARGIN_TOP - 8), font, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
        cv2.putText(canvas, "rows: true class, columns: predicted class id, % of row", (left, height - 14),
                    font, 0.4, (80, 80, 80), 1, cv2.LINE_AA)  # fmt: skip
    with atomic_path(path) as temp:
        if not cv2.imwrite(str(temp), canvas):
            raise EdgesegError(f"could not write {path}")
    return path
