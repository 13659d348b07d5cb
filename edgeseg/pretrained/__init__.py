"""Pretrained weights shipped with edgeseg: which exist, the model they fit, and loading them.

Each set is a compressed `.npz` file beside this module (package data, no download). It holds
the integers of Google's quantized model with their per-tensor scale and zero point, laid out
as the Keras variables of our model, and is dequantized when loaded. Batch norm was folded
into the convolutions, so every batch norm layer is loaded as the identity with the folded
bias as its offset (gamma 1, moving mean 0, moving variance 1 - epsilon): the model is the
same function, and it still trains. `edgeseg.pretrained.importer` writes the files.

No TensorFlow at import: the CLI lists the catalog without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeseg.config import ModelConfig
from edgeseg.presets import get_config
from runtime.errors import EdgesegError
from runtime.palette import VOC_CLASSES, voc_color

FOLDER = Path(__file__).resolve().parent
# Options that leave every weight's shape and meaning unchanged: the weights fit any of them.
FREE_OPTIONS = ("preset", "input_size", "backbone_output_stride", "aspp_dropout", "head_upsample")
HEAD = "segmentation_head_conv"


@dataclass(frozen=True)
class Pretrained:
    """One set of pretrained weights and the model they fit.

    Attributes:
        name: What `--weights` / `weights=` takes, e.g. "pascalvoc".
        preset: The preset they were trained for.
        alpha: Backbone width multiplier.
        overrides: ModelConfig fields the preset needs changed to fit them.
        classes: Class names, index = class id.
        colors: (R, G, B) per class.
        file: The `.npz` file in this folder.
        source: The file the importer reads them from.
        dataset: What they were trained on.
        reported_miou: The publisher's validation mIoU, in percent.
    """

    name: str
    preset: str
    alpha: float
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    file: str
    source: str
    dataset: str
    reported_miou: float
    overrides: dict = field(default_factory=dict)

    def config(self, **overrides) -> ModelConfig:
        """The configuration these weights fit, with free options (input size...) changed."""
        return get_config(self.preset, backbone_alpha=self.alpha, num_classes=len(self.classes),
                          **{**self.overrides, **overrides})  # fmt: skip

    @property
    def path(self) -> Path:
        return FOLDER / self.file

    def labels(self) -> dict:
        """{"classes": [...], "colors": [[R, G, B], ...]}, as a model carries them."""
        return {"classes": list(self.classes), "colors": [list(color) for color in self.colors]}


_VOC = dict(classes=VOC_CLASSES, colors=tuple(voc_color(i) for i in range(len(VOC_CLASSES))),
            dataset="Pascal VOC 2012 (Google's 8-bit TF DeepLab model)")  # fmt: skip
CATALOG = (
    Pretrained("pascalvoc", "deeplabv3_mnv2", 1.0, file="pascalvoc_deeplabv3_mnv2_1.0.npz",
               source="deeplabv3_mnv2_pascal_quant.tflite", reported_miou=74.26, **_VOC),
    # TF DeepLab rounds widths to multiples of 1 below depth 1.0 (divisible_by=1).
    Pretrained("pascalvoc", "deeplabv3_mnv2", 0.5, file="pascalvoc_deeplabv3_mnv2_0.5.npz",
               source="deeplabv3_mnv2_dm05_pascal_quant.tflite", reported_miou=69.65,
               overrides={"backbone_channel_divisor": 1}, **_VOC),
)  # fmt: skip


def names() -> list[str]:
    """The names `--weights` accepts."""
    return sorted({entry.name for entry in CATALOG})


def describe(name: str) -> str:
    """E.g. "pascalvoc: deeplabv3_mnv2 at alpha 1.0 or 0.5, 21 classes"."""
    return f"{name}: {_fits(name)}"


def _fits(name: str) -> str:
    entries = _entries(name)
    by_preset: dict[str, list[str]] = {}
    for entry in entries:
        by_preset.setdefault(entry.preset, []).append(f"{entry.alpha:.1f}")
    fits = "; ".join(f"{preset} at alpha {' or '.join(alphas)}" for preset, alphas in by_preset.items())
    return f"{fits}, {len(entries[0].classes)} classes"


def catalog() -> list[dict]:
    """Every shipped set, as JSON-ready rows (for `edgeseg info` and `--help`)."""
    return [{"weights": e.name, "preset": e.preset, "alpha": e.alpha, "classes": len(e.classes),
             "dataset": e.dataset, "reported_miou": e.reported_miou,
             "size_bytes": e.path.stat().st_size if e.path.is_file() else None} for e in CATALOG]  # fmt: skip


def _entries(name: str) -> list[Pretrained]:
    entries = [entry for entry in CATALOG if entry.name == name]
    if not entries:
        raise EdgesegError(f"unknown pretrained weights {name!r}; available: "
                           + "; ".join(describe(known) for known in names()))  # fmt: skip
    return entries


def find(name: str, alpha: float) -> Pretrained:
    """The set `name` at width `alpha`.

    Returns:
        Its catalog entry.

    Raises:
        EdgesegError: an unknown name or a width it does not exist at (the message lists them).
    """
    for entry in _entries(name):
        if entry.alpha == float(alpha):
            return entry
    raise EdgesegError(f"{name} weights do not exist at alpha {alpha:g}; they exist for {_fits(name)}")


def pretrained_config(name: str, preset: str | None = None, **overrides) -> ModelConfig:
    """The configuration of the model the weights `name` fit, with `overrides` applied.

    Args:
        name: Pretrained weights, e.g. "pascalvoc".
        preset: A preset; None takes the one the weights were trained for.
        **overrides: ModelConfig fields; `backbone_alpha` picks the width, free options such
            as `input_size` may change, anything else must be what the weights fit.

    Returns:
        The configuration, ready for `edgeseg.model.build_model(config, weights=name)`.

    Raises:
        EdgesegError: an unknown name, or a model the weights do not fit (the message lists
            the combinations that exist).
    """
    overrides = {key: value for key, value in overrides.items() if value is not None}
    entry = find(name, overrides.get("backbone_alpha", 1.0))
    config = get_config(preset or entry.preset, **{"num_classes": len(entry.classes), **entry.overrides, **overrides})
    check_fits(name, config)
    return config


def check_fits(name: str, config: ModelConfig) -> Pretrained:
    """The entry of `name` whose weights fit `config` exactly (free options aside).

    Returns:
        That catalog entry.

    Raises:
        EdgesegError: if none does; the message names the combinations that exist, what
            differs, and how to train other classes from them.
    """
    entries = _entries(name)
    wanted = _architecture(config)
    for entry in entries:
        if _architecture(entry.config()) == wanted:
            return entry
    closest = next((e for e in entries if e.alpha == config.backbone_alpha), entries[0])
    reference = _architecture(closest.config())
    differ = [key for key in reference if reference[key] != wanted[key]]
    raise EdgesegError(
        f"{name} weights exist for {_fits(name)} (any input size); not for "
        f"{config.preset} with alpha {config.backbone_alpha:g} and {config.num_classes} classes "
        f"(its {', '.join(differ)} differ{'s' if len(differ) == 1 else ''}). To train other classes from them: "
        f"edgeseg train --weights {name}"
    )


def _architecture(config: ModelConfig) -> dict:
    return {key: value for key, value in config.to_dict().items() if key not in FREE_OPTIONS}


def fine_tune_config(name: str, config: ModelConfig) -> ModelConfig:
    """`config` (any preset, the user's classes) with what the backbone of `name` needs to load.

    Returns:
        `config` with the entry's overrides (e.g. `backbone_channel_divisor` 1 at alpha 0.5).

    Raises:
        EdgesegError: an unknown name, or a width the weights do not exist at.
    """
    return config.replace(**find(name, config.backbone_alpha).overrides)


def fine_tune_model(name: str, config: ModelConfig):
    """A model of `config` that starts from the weights `name`, for training on other classes.

    The backbone and every ASPP layer whose shapes match are loaded (see `load_pretrained`);
    the logits layer, and the decoder where the preset has one, start fresh.

    Args:
        name: Pretrained weights, e.g. "pascalvoc".
        config: The model to train, from `fine_tune_config`.

    Returns:
        The DeepLab model.

    Raises:
        EdgesegError: weights that do not fit the backbone of `config`.
    """
    from edgeseg.model import build_model  # noqa: PLC0415 - needs TensorFlow

    model = build_model(config)
    load_pretrained(model, name, fine_tune=True)
    return model


def read_weights(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Dequantize a pretrained weight file.

    Returns:
        Layer name -> variable name ("kernel", "bias", "beta") -> float32 array in the
        Keras layout of that variable.
    """
    from runtime.processing import dequantize  # noqa: PLC0415 - OpenCV, only when loading

    layers: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as data:
        for key in data.files:
            if key.count(".") != 1:
                continue  # a scale or zero point, read with its values
            layer, variable = key.split(".")
            layers.setdefault(layer, {})[variable] = dequantize(
                data[key], float(data[f"{key}.scale"]), int(data[f"{key}.zero_point"])
            )
    return layers


def load_pretrained(model, name: str, fine_tune: bool = False) -> list[str]:
    """Load the weights `name` into a DeepLab `model`, by layer name.

    Args:
        model: A model built by `edgeseg.model.build_model` (it carries its ModelConfig).
        name: Pretrained weights, e.g. "pascalvoc".
        fine_tune: False: the model must be the one the weights fit, and every layer loads.
            True: a model for other classes (any preset at the same width): the whole
            backbone loads, then every other layer whose shapes match, never the logits
            layer, which stays freshly initialised for the new classes.

    Returns:
        The names of the layers that were loaded, in model order.

    Raises:
        EdgesegError: weights that do not fit the model.
    """
    config = model.config
    entry = find(name, config.backbone_alpha) if fine_tune else check_fits(name, config)
    if fine_tune and config.backbone_channel_divisor != entry.config().backbone_channel_divisor:
        raise EdgesegError(f"{name} weights at alpha {entry.alpha:g} need backbone_channel_divisor "
                           f"{entry.config().backbone_channel_divisor}; the model has {config.backbone_channel_divisor}")  # fmt: skip

    from edgeseg.backbone import is_backbone_layer  # noqa: PLC0415 - imports Keras, as the model does

    weights = read_weights(entry.path)
    loaded = []
    for layer in model.layers:
        if not layer.weights or (fine_tune and layer.name == HEAD):
            continue
        values = weights.get(layer.name, {})
        arrays = [_value(variable, values, layer) for variable in layer.weights]
        if all(a is not None and a.shape == tuple(v.shape) for a, v in zip(arrays, layer.weights)):
            layer.set_weights(arrays)
            loaded.append(layer.name)
        elif not fine_tune or is_backbone_layer(layer.name):
            found = {key: value.shape for key, value in values.items()} or "nothing"
            raise EdgesegError(f"{name} weights do not fit layer {layer.name}: it needs "
                               f"{[tuple(v.shape) for v in layer.weights]}, the file has {found}")  # fmt: skip
    unused = sorted(set(weights) - set(loaded))
    if not fine_tune and unused:
        raise EdgesegError(f"{name} weights for layers {unused[:3]} found no place in the model")
    return loaded


def _value(variable, values: dict[str, np.ndarray], layer) -> np.ndarray | None:
    # Folded batch norm: the identity, with the folded bias as beta.
    name = variable.name
    if name in values:
        return values[name]
    shape = tuple(variable.shape)
    if name == "gamma":
        return np.ones(shape, np.float32)
    if name == "moving_mean":
        return np.zeros(shape, np.float32)
    if name == "moving_variance":
        return np.full(shape, 1.0 - layer.epsilon, np.float32)
    return None
