"""`train`: one call from folders of images and masks to a trained run folder.

It owns the rules of a run: what the run folder may hold, which arguments a resumed run must
repeat, the defaults that depend on other arguments (learning rate, class weights), how the
model's classes and the given ones are reconciled, the seed, mixed precision and the memory
cache. It checks every argument and every file before training starts, writes
`classes.json`, and hands the prepared model and data to `edgeseg.loop.fit`.

Arguments are checked before TensorFlow is imported, so a mistake is reported at once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from edgeseg.checks import output_folder
from edgeseg.classes import check_ignore_index, class_colors, class_list, write_classes_json
from edgeseg.cluster import Cluster, cluster_from_env
from edgeseg.config import ModelConfig, check_input_size
from edgeseg.datasets import read_stem_list
from edgeseg.masks import MASK_FORMATS, read_label_map
from edgeseg.presets import PRESETS, model_argument
from edgeseg.settings import PHOTOMETRIC, Settings
from runtime.errors import EdgesegError, ParameterError

# Arguments that may change when a run is resumed; every other one must be repeated as it was.
RESUMABLE_CHANGES = ("epochs",)


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        out: The run folder.
        classes: The class names the model was trained on.
        history: One dict per epoch: epoch, lr, loss, train_accuracy, val_miou,
            val_pixel_accuracy (NaN where validation did not run), seconds.
        steps: Optimizer steps done in all.
    """

    out: Path
    classes: list[str]
    history: list[dict]
    steps: int

    @property
    def best_model(self) -> Path:
        """best.keras: the best epoch by validation mIoU, at the size the frames share."""
        return self.out / "best.keras"

    @property
    def last_model(self) -> Path:
        """last.keras: the latest epoch at the training size, with what resuming needs."""
        return self.out / "last.keras"

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def seconds(self) -> float:
        return sum(row["seconds"] for row in self.history)

    @property
    def best_epoch(self) -> int | None:
        """The epoch of best.keras by validation mIoU (None without validation)."""
        scored = [row for row in self.history if math.isfinite(row["val_miou"])]
        return max(scored, key=lambda row: row["val_miou"])["epoch"] if scored else None

    @property
    def best_miou(self) -> float | None:
        return None if self.best_epoch is None else self.history[self.best_epoch - 1]["val_miou"]

    def to_dict(self) -> dict:
        """JSON form (NaN as null): out, epochs, steps, seconds, best_miou, best_epoch, history."""
        history = [{key: (None if isinstance(v, float) and not math.isfinite(v) else v) for key, v in row.items()}
                   for row in self.history]  # fmt: skip
        return {"out": str(self.out), "epochs": self.epochs, "steps": self.steps, "seconds": self.seconds,
                "best_miou": self.best_miou, "best_epoch": self.best_epoch, "history": history}  # fmt: skip


def train(
    model,
    images: str | Path,
    masks: str | Path,
    out: str | Path,
    *,
    val_images: str | Path | None = None,
    val_masks: str | Path | None = None,
    classes: Sequence[str] | int | str | Path | None = None,
    ignore_index: int = 255,
    train_list: str | Path | None = None,
    val_list: str | Path | None = None,
    val_prefix: str | Sequence[str] | None = None,
    image_suffix: str | None = None,
    mask_suffix: str = ".png",
    mask_format: str | None = None,
    label_map: str | Path | None = None,
    input_size: tuple[int, int] | None = None,
    backbone_weights: str | Path | None = None,
    weights: str | None = None,
    loss: str = "ce",
    class_weights: str | Sequence[float] | None = None,
    optimizer: str = "adam",
    lr: float | None = None,
    schedule: str = "poly",
    warmup_epochs: float = 0.0,
    epochs: int = 50,
    batch_size: int = 8,
    freeze_backbone: bool = False,
    backbone_bn: str = "frozen",
    scale_range: tuple[float, float] = (0.5, 2.0),
    photometric: str = "default",
    classmix: float = 0.0,
    val_every: int = 1,
    ema: float = 0.0,
    resume: bool = False,
    seed: int = 0,
    mixed_precision: bool | None = None,
    cache: bool | None = None,
    reporter=None,
) -> TrainResult:
    """Train a segmentation model on folders of images and masks; keep the best by validation mIoU.

    The run folder `out` receives best.keras (at the size the validation frames share, else
    the training frames'; at the crop size when sizes vary), last.keras (Ctrl-C saves it too;
    continue with `resume=True`), history.csv, curves.png, classes.json (names, colours,
    ignore index: `convert` and `evaluate` read it) and TensorBoard event files in tensorboard/.

    With `TF_CONFIG` naming several workers, every worker runs this same call and they train
    as one (MultiWorkerMirroredStrategy, `batch_size` the global batch); only the chief
    writes `out`, and resuming, every worker reads the chief's last.keras from `out`.

    Example:
        >>> result = train("deeplabv3plus_mnv2", "train", "trainannot", "runs/camvid",
        ...                val_images="val", val_masks="valannot", classes="classes.txt",
        ...                ignore_index=11, backbone_weights="imagenet", epochs=90)
        >>> result.best_miou, result.best_model

    Args:
        model: What to train: a Keras model built by edgeseg (`build_model`), the path of a
            .keras file, a `ModelConfig` or a preset name to build once the data is checked,
            or None with `resume=True` (the run's own model).
        images: Folder of training images.
        masks: Folder of training masks (subfolders included): PNGs with the images' stems,
            holding class indices, palette indices or class colours (`mask_format`).
        out: The run folder (created; its parent must exist).
        val_images: Folder of validation images (with `val_masks`).
        val_masks: Folder of validation masks.
        classes: Class names (class 0 first), a count, or a classes file: one name per line,
            CVAT's labelmap.txt, a JSON/YAML list of {name, color}, or "voc" (built in);
            default: the model's number of classes, named "class N".
        ignore_index: Mask value left out of loss and metrics (0-255, not a class).
        train_list: File of training stems, one per line (VOC/CVAT's
            ImageSets/Segmentation/train.txt); other files in the folders are left alone.
        val_list: File of validation stems: in `val_images` if given, else taken out of
            `images` (and out of training).
        val_prefix: Stem prefixes ("0001TP" or "a,b" or a list): matching stems of `images`
            are the validation set, the rest train. Not with `val_images` or `val_list`.
        image_suffix: What image file names end with after the stem (default: their
            extension); Cityscapes: "_leftImg8bit.png".
        mask_suffix: What mask file names end with after the stem; Cityscapes:
            "_gtFine_labelIds.png".
        mask_format: "index", "palette" or "color"; default: detected from the masks.
        label_map: File mapping stored mask values or colours to classes or ignore
            (`edgeseg.masks.read_label_map`), e.g. Cityscapes labelIds -> trainIds.
        input_size: (height, width) of the training crops; default: the model's input size.
        backbone_weights: For a model built here: "imagenet", a MobileNetV2 .h5 /
            .weights.h5 file, or None / "none" for random initialisation.
        weights: For a model built here: start from pretrained segmentation weights, e.g.
            "pascalvoc" (`edgeseg.pretrained`): their backbone and the ASPP layers whose shapes
            fit, with a new logits layer for `classes` (and a new decoder where the preset
            has one). Not with `backbone_weights`.
        loss: "ce", "wce" (class-weighted), "focal", "dice", "lovasz", "ohem", or a sum such
            as "ce+lovasz" (see `edgeseg.losses.LOSS_TERMS`).
        class_weights: For wce/focal: "inverse", "median" (default for wce), "sqrt-median", "none", or
            one weight per class.
        optimizer: "adam", "adamw" or "sgd".
        lr: Peak learning rate, above 0 and at most 1 (`edgeseg.settings.MAX_LR`); default
            1e-3 for adam/adamw, 1e-2 for sgd.
        schedule: Decay after the warm-up: "poly", "cosine" or "constant".
        warmup_epochs: Linear warm-up length in epochs.
        epochs: Epochs in total (a resumed run trains up to this many).
        batch_size: Crops per step (all GPUs together).
        freeze_backbone: Train ASPP, decoder and head only.
        backbone_bn: "frozen" keeps backbone batch norm on its statistics (small batches,
            pretrained weights); "train" updates it (large batches, or from scratch).
        scale_range: Random rescale range (min, max) of the augmentation.
        photometric: Colour jitter: "default" or "strong" (brightness, contrast and
            saturation twice as wide, and hue; for recordings in other light).
        classmix: Share of the crops (0-1) that take another crop's pixels of a random half of
            its classes, labels with them (ClassMix, `edgeseg.pipeline.classmix`); 0: none.
        val_every: Validate every N epochs and after the last (without validation images: refresh
            best.keras then).
        ema: Keep an exponential moving average of the weights with this momentum (e.g. 0.995:
            about the last 200 steps) and validate and save it as best.keras; 0: none. last.keras
            holds the trained weights, and the average in its optimizer state.
        resume: Continue the interrupted run in `out`; every other argument but `epochs`
            must be as it was.
        seed: Random seed: model initialisation, data order, augmentation.
        mixed_precision: Train in mixed float16; default: on when training on GPUs.
        cache: Keep the decoded training images in memory; default: when they take at most
            a quarter of it.
        reporter: An `edgeseg.loop.Reporter` for progress; default: one printed line per epoch.

    Returns:
        The `TrainResult`.

    Raises:
        EdgesegError: a bad argument (`ParameterError`, naming it; an `out` that cannot be
            written among them), a bad file in the dataset (naming it), a run folder that does
            not fit `resume`, or training that diverged (`ParameterError` naming `lr`, the
            epoch and the step; nothing of that epoch is saved).
        KeyboardInterrupt: after last.keras is saved, on Ctrl-C.
    """
    # === Arguments, checked before any work ===
    settings = Settings(epochs=epochs, batch_size=batch_size, loss=loss, optimizer=optimizer, lr=lr,
                        schedule=schedule, warmup_epochs=warmup_epochs, ignore_index=ignore_index, seed=seed,
                        freeze_backbone=freeze_backbone, backbone_bn=backbone_bn, val_every=val_every, ema=ema)  # fmt: skip
    out = Path(out)
    cluster = cluster_from_env()
    _check_run_folder(out, resume, cluster.chief)
    if (val_images is None) != (val_masks is None):
        raise ParameterError("give {val_images} and {val_masks} together, or neither", "val_images", "val_masks")
    names, colors = class_list(classes) if classes is not None else (None, None)
    prefixes = _check_prefixes(val_prefix)
    for listed in (train_list, val_list):  # read now to report a bad file as given, before any work
        if listed is not None:
            read_stem_list(listed)
    if label_map is not None:
        read_label_map(label_map)
    if mask_format is not None and mask_format not in MASK_FORMATS:
        raise ParameterError(f"{{mask_format}} {mask_format!r} is not one of {', '.join(MASK_FORMATS)}", "mask_format")
    model = _model_argument(model, names, backbone_weights, weights, resume)
    crop = None if input_size is None else check_input_size(input_size)
    scales = _check_scale_range(scale_range)
    if photometric not in PHOTOMETRIC:
        raise ParameterError(f"{{photometric}} {photometric!r}: choose {' or '.join(PHOTOMETRIC)}", "photometric")
    if not 0 <= classmix <= 1:
        raise ParameterError(f"{{classmix}} {classmix} is a share of the crops: give 0 to 1", "classmix")
    if names is not None:
        check_ignore_index(ignore_index, len(names))

    from edgeseg import require_tensorflow  # noqa: PLC0415

    tf = require_tensorflow()
    from edgeseg.losses import class_weighting, parse_class_weights  # noqa: PLC0415 - needs TensorFlow

    weighting = class_weighting(loss, class_weights)
    if names is not None and not isinstance(weighting, str):
        parse_class_weights(weighting, len(names))  # the count, before any work
    run = {**{key: value for key, value in asdict(settings).items() if key not in ("epochs", "class_weights")},
           "class_weights": weighting, "images": _resolved(images), "masks": _resolved(masks),
           "val_images": _resolved(val_images), "val_masks": _resolved(val_masks), "classes": names,
           **({"colors": colors} if colors is not None else {}), "train_list": _resolved(train_list),
           "val_list": _resolved(val_list), "val_prefix": prefixes, "image_suffix": image_suffix,
           "mask_suffix": None if mask_suffix == ".png" else mask_suffix, "mask_format": mask_format,
           "label_map": _resolved(label_map),
           "input_size": list(crop) if crop else None, "scale_range": list(scales),
           "photometric": photometric, **({"classmix": classmix} if classmix else {}),
           "backbone_weights": None if backbone_weights is None else str(backbone_weights), "weights": weights,
           **_model_identity(model)}  # fmt: skip
    if mixed_precision is None:
        mixed_precision = bool(tf.config.list_physical_devices("GPU"))
    return _train(model, run, settings, out, resume, mixed_precision, cache, reporter, cluster)


def _train(model, run: dict, settings: Settings, out: Path, resume: bool, mixed_precision: bool, cache, reporter,
           cluster: Cluster):  # fmt: skip
    """The run itself, once the arguments are checked (TensorFlow is imported)."""
    import keras  # noqa: PLC0415

    from edgeseg import loop  # noqa: PLC0415
    from edgeseg.datasets import scan_pairs, split_pairs  # noqa: PLC0415
    from edgeseg.losses import weights_for  # noqa: PLC0415
    from edgeseg.pipeline import Augmentation, TrainingData  # noqa: PLC0415

    strategy = loop.default_strategy(cluster)
    replicas = strategy.num_replicas_in_sync
    if settings.batch_size % replicas:
        raise ParameterError(f"{{batch_size}} {settings.batch_size} does not split over {replicas} replicas "
                             "(GPUs or machines); use a multiple of it", "batch_size")  # fmt: skip
    reporter = reporter or _printing_reporter(settings.epochs)
    if cluster.workers > 1:
        role = "the chief: it writes the run folder" if cluster.chief else f"it writes nothing to {out}"
        reporter.message(f"training on {cluster.workers} machines ({replicas} replicas); this is {cluster.task}, "
                         f"{role}")  # fmt: skip
    keras.utils.set_random_seed(settings.seed)
    with _precision("mixed_float16" if mixed_precision else None):
        with strategy.scope():  # models are made in the strategy's scope, trained by it outside
            net, state, optimizer_state, run = _starting_point(model, run, settings.epochs, out, resume)
        names, ignore = run["classes"], settings.ignore_index
        check_ignore_index(ignore, len(names))
        train_pairs, val_pairs = split_pairs(
            run["images"], run["masks"], run["val_images"], run["val_masks"], train_list=run.get("train_list"),
            val_list=run.get("val_list"), val_prefix=run.get("val_prefix"), image_suffix=run.get("image_suffix"),
            mask_suffix=run.get("mask_suffix") or ".png",
        )  # fmt: skip
        masks_as = {"mask_format": run.get("mask_format"), "colors": run.get("colors") or class_colors(names),
                    "label_map": read_label_map(run["label_map"]) if run.get("label_map") else None}  # fmt: skip
        train_info = scan_pairs(train_pairs, len(names), ignore, "training", **masks_as)
        val_info = scan_pairs(val_pairs, len(names), ignore, "validation", **masks_as) if val_pairs else None
        reporter.message(f"{len(train_info)} training images, masks read as {train_info.decoding.describe()}"
                         + (f"; {len(val_info)} validation images" if val_info else "; no validation"))  # fmt: skip
        weights = weights_for(run["class_weights"], train_info.counts, train_info.image_pixels)
        settings.class_weights = None if weights is None else [float(w) for w in weights]
        with strategy.scope():
            net = _at_crop_size(net if net is not None else _build(model, run), run["input_size"])
        crop = tuple(net.input.shape[1:3])
        # best.keras (and the batch-norm statistics re-estimated for it) at the size the frames
        # share, the deployment size; at the crop size only when their sizes vary.
        eval_size = (val_info.common_size if val_info else None) or train_info.common_size or crop
        if cluster.chief:
            out.mkdir(exist_ok=True)
            write_classes_json(out, names, ignore, eval_size, run.get("colors"))
        augmentation = Augmentation.of(run.get("photometric", "default"), run["scale_range"], run.get("classmix", 0.0))
        data = TrainingData(train_info, crop, settings.batch_size, ignore, settings.seed, augmentation, cache)
        if resume:
            reporter.message(f"resuming {out} at epoch {len(state.history) + 1}, step {state.step}")
        state.run = run
        state = loop.fit(net, data, val_info, len(names), settings, out, state, optimizer_state, eval_size,
                         strategy, reporter)  # fmt: skip
    return TrainResult(out, names, state.history, state.step)


# === Checks before any work ===


def _check_run_folder(out: Path, resume: bool, chief: bool = True) -> None:
    """A new run needs a folder without a run in it; resuming needs the interrupted run's last.keras.
    Either way the folder must take new files (or be creatable).

    A worker other than the chief writes nothing: it only reads last.keras when resuming.
    """
    if out.exists() and not out.is_dir():
        raise ParameterError(f"{{out}} {out} is a file; give a folder for the run", "out")
    last = out / "last.keras"
    if resume and not last.is_file():
        where = "" if chief else " (every worker resumes from the chief's last.keras: share the folder or copy it)"
        raise EdgesegError(f"nothing to resume: {last} does not exist{where}")
    if not chief:
        return
    if not resume and last.exists():
        raise ParameterError(f"{out} already holds a run (last.keras); continue it with {{resume}} or choose "
                             "another {out}", "resume", "out")  # fmt: skip
    if not out.parent.is_dir():
        raise EdgesegError(f"folder {out.parent} does not exist; create it first")
    output_folder(out, "out")


def _model_argument(model, names: list[str] | None, backbone_weights, weights, resume: bool):
    """`model` as a `ModelConfig`, the Path of a .keras file, a built Keras model, or None (resuming)."""
    if weights is not None and backbone_weights not in (None, "none"):
        raise ParameterError(f"{{weights}} {weights} gives the backbone too; drop {{backbone_weights}}",
                             "weights", "backbone_weights")  # fmt: skip
    if model is None:
        if not resume:
            raise ParameterError("give a {model} to train (None only continues a run, with {resume})",
                                 "model", "resume")  # fmt: skip
        return None
    if isinstance(model, str) and model in PRESETS and names is None:
        raise ParameterError(f"give {{classes}} to build preset {model!r}", "classes")
    model = model_argument(model, None if names is None else len(names), backbone_weights)
    if weights is not None:
        if not isinstance(model, ModelConfig):
            raise ParameterError("{weights} apply to a model built from a preset or a ModelConfig; this {model} "
                                 "already has its weights", "weights", "model")  # fmt: skip
        from edgeseg.pretrained import fine_tune_config  # noqa: PLC0415

        model = fine_tune_config(weights, model)
    return model


def _check_scale_range(scale_range) -> tuple[float, float]:
    low, high = (float(v) for v in scale_range) if len(scale_range) == 2 else (0.0, 0.0)
    if not 0 < low <= high:
        raise ParameterError(f"{{scale_range}} {_shown(list(scale_range))} needs 0 < MIN <= MAX", "scale_range")
    return low, high


def _check_prefixes(val_prefix) -> list[str] | None:
    if val_prefix is None:
        return None
    prefixes = val_prefix.split(",") if isinstance(val_prefix, str) else [str(p) for p in val_prefix]
    prefixes = [p.strip() for p in prefixes]
    if not prefixes or not all(prefixes):
        raise ParameterError(f"{{val_prefix}} {_shown(prefixes)!r} has an empty prefix; give P or P1,P2,...",
                             "val_prefix")  # fmt: skip
    return prefixes


def _resolved(path) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _shown(value) -> str:
    """A run argument as the user wrote it: lists as comma-separated values."""
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


# === The starting point ===


def _model_identity(model) -> dict:
    """The run arguments that describe the model: its file, or its architecture.

    The number of classes is left out (`classes` covers it), and so is the input size (the
    run's `input_size`, the crop, covers it).
    """
    if model is None:
        return {}
    if isinstance(model, Path):
        return {"model": str(model.resolve())}
    from edgeseg.model import config_of  # noqa: PLC0415 - TensorFlow is imported by now

    config = model if isinstance(model, ModelConfig) else config_of(model)
    if config is None:
        raise EdgesegError(f"model {model.name} was not built by edgeseg; start from a preset instead")
    return {key: value for key, value in config.to_dict().items() if key not in ("num_classes", "input_size")}


def _starting_point(model, run: dict, epochs: int, out: Path, resume: bool):
    """The model to train (None: build it later), its `State`, optimizer arrays and the run.

    Resuming, the run folder's last.keras and the interrupted run's arguments; otherwise the
    given model, whose classes and the given ones are reconciled here.
    """
    from edgeseg.checkpoint import State, load_checkpoint  # noqa: PLC0415
    from edgeseg.model import config_of, load_model  # noqa: PLC0415

    if resume:
        net, state, optimizer_state = load_checkpoint(out / "last.keras")
        _check_resume(state, run, epochs, out)
        return net, state, optimizer_state, state.run
    net = load_model(model) if isinstance(model, Path) else None if isinstance(model, ModelConfig) else model
    count = model.num_classes if net is None else config_of(net).num_classes
    if run["classes"] is None:
        run = {**run, "classes": [f"class {index}" for index in range(count)]}
    elif count != len(run["classes"]):
        described = model if isinstance(model, Path) else model.preset if net is None else net.name
        raise EdgesegError(f"model {described} has {count} classes but {len(run['classes'])} are given")
    return net, State(), None, run


def _check_resume(state, run: dict, epochs: int, out: Path) -> None:
    """Refuse to resume with arguments other than the interrupted run's (except `epochs`)."""
    # A run saved before a setting existed (e.g. `ema`) trained with that setting's default.
    saved = {**{field.name: field.default for field in fields(Settings) if field.default is not MISSING}, **state.run}
    changed = [key for key in run if saved.get(key) != run[key] and not (key == "classes" and run[key] is None)]
    if changed:
        described = ", ".join(f"{{{key}}} {_shown(run[key])} (was {_shown(saved.get(key))})" for key in changed)
        raise ParameterError(f"{{resume}} with options that differ from the interrupted run: {described}; only "
                             "{epochs} may change", "resume", "epochs", *changed)  # fmt: skip
    if epochs <= len(state.history):
        raise ParameterError(f"the run in {out} has already trained {len(state.history)} epochs; pass a larger "
                             "{epochs} to train further", "epochs")  # fmt: skip


def _build(config: ModelConfig, run: dict):
    """Build the configured model at the training size, with the run's backbone weights."""
    from edgeseg.model import build_model  # noqa: PLC0415

    size = tuple(run["input_size"] or config.input_size)
    if run.get("weights"):
        from edgeseg.pretrained import fine_tune_model  # noqa: PLC0415

        return fine_tune_model(run["weights"], config.replace(input_size=size))
    return build_model(config.replace(input_size=size), backbone_weights=run["backbone_weights"])


def _at_crop_size(net, input_size: list[int] | None):
    """`net` rebuilt for the training crops (same weights), unless it already takes them."""
    from edgeseg.model import resize_model  # noqa: PLC0415

    if input_size is None or tuple(net.input.shape[1:3]) == tuple(input_size):
        return net
    return resize_model(net, input_size)


@contextlib.contextmanager
def _precision(policy: str | None):
    """Build and train under Keras dtype `policy` (None: the current one); the previous one after."""
    import keras  # noqa: PLC0415

    previous = keras.mixed_precision.global_policy()
    if policy is not None:
        keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _printing_reporter(epochs: int):
    from edgeseg.history import epoch_line  # noqa: PLC0415
    from edgeseg.loop import Reporter  # noqa: PLC0415

    return Reporter(epoch_end=lambda row, best: print(epoch_line(row, epochs, best)))
