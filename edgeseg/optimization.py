"""Optimizers, learning-rate schedules, and the optimizer state a checkpoint carries.

Keras is imported where an optimizer is made, so the schedule is plain Python.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from edgeseg.settings import OPTIMIZERS, SCHEDULES
from runtime.errors import EdgesegError, ParameterError

if TYPE_CHECKING:
    import keras


def make_optimizer(name: str, lr: float, ema: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam, AdamW (decoupled weight decay 0.01) or SGD (Nesterov momentum 0.9, decay 4e-5).

    Batch-norm parameters and biases are excluded from weight decay. With `ema` above 0 the
    optimizer also keeps an exponential moving average of the variables it updates (Keras's
    `use_ema`, with that momentum): its variables, so a checkpoint carries it;
    `finalize_variable_values` copies it into the variables.

    Raises:
        ParameterError: an unknown name.
    """
    import keras  # noqa: PLC0415 - the schedule needs no TensorFlow

    average = {"use_ema": True, "ema_momentum": ema} if ema > 0 else {}
    if name == "adam":
        optimizer = keras.optimizers.Adam(lr, **average)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=0.01, **average)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=4e-5, **average)
    else:
        raise ParameterError(f"{{optimizer}} {name!r} is unknown; choose one of {', '.join(OPTIMIZERS)}", "optimizer")
    if name != "adam":
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def learning_rate(step: int, total_steps: int, lr: float, schedule: str, warmup_steps: int = 0) -> float:
    """Learning rate at optimizer step `step` (0-based).

    Linear warm-up from lr / 100 to lr over `warmup_steps`, then `schedule` over the rest:
    poly: lr * (1 - t) ** 0.9; cosine: lr * (1 + cos(pi t)) / 2; constant: lr, where t goes
    from 0 to 1 over the steps after the warm-up.

    Raises:
        ParameterError: an unknown schedule.
    """
    if schedule not in SCHEDULES:
        raise ParameterError(f"{{schedule}} {schedule!r} is unknown; choose one of {', '.join(SCHEDULES)}", "schedule")
    if step < warmup_steps:
        return lr * (0.01 + 0.99 * step / warmup_steps)
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    if schedule == "poly":
        return lr * (1.0 - progress) ** 0.9
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return lr


def optimizer_arrays(optimizer: keras.optimizers.Optimizer) -> dict[str, np.ndarray]:
    """The optimizer's variables, keyed by position and path."""
    return {f"{index:05d}|{variable.path}": np.asarray(variable.numpy())
            for index, variable in enumerate(optimizer.variables)}  # fmt: skip


def restore_optimizer(optimizer: keras.optimizers.Optimizer, variables: list, arrays: dict) -> None:
    """Build `optimizer` for `variables` and load the values from `optimizer_arrays`.

    Raises:
        EdgesegError: the saved state does not fit (different trainable layers).
    """
    optimizer.build(variables)
    saved = [arrays[key] for key in sorted(arrays)]
    if len(saved) != len(optimizer.variables) or any(
        tuple(array.shape) != tuple(variable.shape) for array, variable in zip(saved, optimizer.variables)
    ):
        raise EdgesegError("the optimizer state in last.keras does not fit this model's trainable "
                           "layers; resume with the options of the interrupted run")  # fmt: skip
    for array, variable in zip(saved, optimizer.variables):
        variable.assign(array)
