"""Named starting points; every option can still be overridden."""

from __future__ import annotations

from runtime.errors import EdgesegError

from edgeseg.config import ModelConfig, check_fields

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
