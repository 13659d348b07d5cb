"""Named starting points; every option can still be overridden."""

from __future__ import annotations

from pathlib import Path

from edgeseg.config import ModelConfig, check_fields
from runtime.errors import EdgesegError, ParameterError

DEFAULT_PRESET = "deeplabv3plus_mnv2"

PRESETS: dict[str, dict] = {
    # DeepLabV3+ as in the paper: OS16, separable ASPP 6/12/18 + image pooling, decoder 48/256,
    # low-level features from layer_4's depthwise output (stride 4) as in TF DeepLab.
    "deeplabv3plus_mnv2": dict(),
    # The TF model zoo's mobile DeepLabV3: OS16, image pooling + 1x1 branch only, no decoder.
    "deeplabv3_mnv2": dict(aspp_rates=(), decoder=False),
    # The common shortcut: native stride-16 features before block 13, low level before block 3.
    "deeplabv3plus_mnv2_shortcut": dict(
        backbone_tap="block_13_expand_relu", decoder_tap="block_3_expand_relu"
    ),
}

PRESET_HELP = {
    "deeplabv3plus_mnv2": "DeepLabV3+ (paper): OS16, separable ASPP 6/12/18 + image pooling, decoder 48/256",
    "deeplabv3_mnv2": "DeepLabV3 mobile (TF model zoo): OS16, image pooling + 1x1 branch, no decoder",
    "deeplabv3plus_mnv2_shortcut": "DeepLabV3+ with taps block_13_expand_relu / block_3_expand_relu",
}


def get_config(preset: str = DEFAULT_PRESET, **overrides) -> ModelConfig:
    """Return the configuration of `preset` with `overrides` applied.

    Raises:
        EdgesegError: for an unknown preset (the message lists them) or an invalid option.
    """
    if preset not in PRESETS:
        raise EdgesegError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    check_fields(overrides)
    options = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return ModelConfig(preset=preset, **options)


def model_argument(model, num_classes: int | None = None, backbone_weights=None, weights: str | None = None):
    """What a `model` argument (of `edgeseg.train` or `edgeseg.convert`) names, checked without TensorFlow.

    Args:
        model: A preset name, a `ModelConfig`, the path of a .keras file, or a built model.
        num_classes: Classes of a model built from a preset; checked against a ModelConfig's.
        backbone_weights: Given only for a model to build (a preset or a ModelConfig).
        weights: Pretrained weights of the whole model to build (a preset or a ModelConfig);
            a preset then gets the configuration they fit (`edgeseg.pretrained`).

    Returns:
        A `ModelConfig` to build, the `Path` of an existing .keras file, or `model` itself.

    Raises:
        ParameterError: backbone or pretrained weights for a model that already has weights,
            or a name that is neither a preset nor a .keras file.
        EdgesegError: a missing file, a ModelConfig with other classes than `num_classes`, or
            pretrained weights that do not fit the preset.
    """
    if isinstance(model, str) and model in PRESETS:
        if weights is not None:
            from edgeseg.pretrained import pretrained_config  # noqa: PLC0415 - it imports this module

            model = pretrained_config(weights, model, num_classes=num_classes)
        else:
            model = get_config(model, num_classes=num_classes)
    if isinstance(model, ModelConfig):
        if num_classes is not None and model.num_classes != num_classes:
            raise EdgesegError(f"model config {model.preset} has {model.num_classes} classes but {num_classes} "
                               "are given")  # fmt: skip
        return model
    for given, name in ((backbone_weights, "backbone_weights"), (weights, "weights")):
        if given is not None:
            raise ParameterError(f"{{{name}}} apply to a model built from a preset or a ModelConfig; this "
                                 "{model} already has its weights", name, "model")  # fmt: skip
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.suffix != ".keras":
            raise ParameterError(f"{{model}} {str(model)!r} is neither a preset ({', '.join(PRESETS)}) nor a "
                                 ".keras file", "model")  # fmt: skip
        if not path.is_file():
            raise EdgesegError(f"model file {path} does not exist")
        return path
    return model
