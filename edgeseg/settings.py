"""How to train: the settings of a run, their choices and defaults, checked without TensorFlow.

The tuples here are the one list of each choice; the CLI builds its option choices from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime.errors import ParameterError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("poly", "cosine", "constant")
BACKBONE_BN = ("frozen", "train")
# Colour jitter strengths by name, as `edgeseg.pipeline.Augmentation` fields: strong helps on
# recordings whose light differs from the training ones.
PHOTOMETRIC_JITTER = {"default": {}, "strong": {"brightness": 0.25, "contrast": 0.4, "saturation": 0.5, "hue": 0.05}}
PHOTOMETRIC = tuple(PHOTOMETRIC_JITTER)
# Peak learning rate when none is given: Adam's usual step, and SGD's for DeepLab fine-tuning.
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2}
# The largest peak learning rate accepted. DeepLab trains with SGD at 0.007-0.1 and Adam at
# about 1e-3; a step of more than 1 is larger than the weights themselves (|w| ~ 0.1 in
# MobileNetV2), so above it a run can only diverge to a NaN loss.
MAX_LR = 1.0


@dataclass
class Settings:
    """How to train (everything a resumed run must find unchanged, except `epochs`).

    Attributes:
        epochs: Total epochs.
        batch_size: Global batch size (split across GPUs).
        loss: Loss name, e.g. "ce" or "wce+dice" (see `edgeseg.losses.make_loss`).
        class_weights: Per-class weights for the weighted terms, or None.
        optimizer: One of `OPTIMIZERS`.
        lr: Peak learning rate, finite, above 0 and at most `MAX_LR`; None takes `DEFAULT_LR`
            of the optimizer.
        schedule: One of `SCHEDULES`: "poly" (power 0.9), "cosine" or "constant", after the
            warm-up.
        warmup_epochs: Linear warm-up from lr / 100, in epochs (fractions allowed).
        ignore_index: Label excluded from loss and metrics.
        seed: Random seed of the run: model initialisation, data order and augmentation.
        freeze_backbone: Train ASPP, decoder and head only.
        backbone_bn: One of `BACKBONE_BN`: "frozen" keeps backbone batch norm in inference
            mode; "train" updates it.
        val_every: Validate every N epochs and after the last (without validation images: refresh
            best.keras then).
        ema: Momentum of an exponential moving average of the trained weights, in [0, 1); 0 keeps
            none. With one, validation and best.keras use the averaged weights.

    Raises:
        ParameterError: a value out of range or not among the choices, naming the parameter.
    """

    epochs: int
    batch_size: int
    loss: str = "ce"
    class_weights: list[float] | None = None
    optimizer: str = "adam"
    lr: float | None = None
    schedule: str = "poly"
    warmup_epochs: float = 0.0
    ignore_index: int = 255
    seed: int = 0
    freeze_backbone: bool = False
    backbone_bn: str = "frozen"
    val_every: int = 1
    ema: float = 0.0

    def __post_init__(self) -> None:
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("backbone_bn", BACKBONE_BN)):
            if getattr(self, name) not in choices:
                raise ParameterError(f"{{{name}}} {getattr(self, name)!r} is unknown; choose one of "
                                     f"{', '.join(choices)}", name)  # fmt: skip
        for name in ("epochs", "batch_size", "val_every"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{{{name}}} {getattr(self, name)} must be at least 1", name)
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise ParameterError(f"{{lr}} {self.lr} must be a finite number above 0 and at most {MAX_LR:g}", "lr")
        if not 0 <= self.ema < 1:
            raise ParameterError(f"{{ema}} {self.ema} must be at least 0 (no average) and below 1, e.g. 0.995", "ema")
        if self.warmup_epochs < 0:
            raise ParameterError(f"{{warmup_epochs}} {self.warmup_epochs} must not be negative", "warmup_epochs")
