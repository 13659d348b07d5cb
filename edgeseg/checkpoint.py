"""The checkpoint format: `last.keras` with the run's progress and optimizer state inside.

`last.keras` is the model at the training size plus two zip members Keras ignores:
`edgeseg_training.json` (step, history, settings, the run's arguments, random-generator
states) and `edgeseg_optimizer.npz` (optimizer variables), so one atomic file is everything
a resumed run needs.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from edgeseg.model import load_model
from edgeseg.optimization import optimizer_arrays
from runtime.atomic import atomic_path
from runtime.errors import EdgesegError

STATE_MEMBER = "edgeseg_training.json"
OPTIMIZER_MEMBER = "edgeseg_optimizer.npz"


@dataclass
class State:
    """Progress of a run, saved inside last.keras.

    Attributes:
        step: Optimizer steps done.
        history: One dict per finished epoch (the rows of history.csv).
        best_miou: Best validation mIoU so far (-1 before any).
        partial: Sums over the unfinished epoch's steps: loss, correct, valid, steps, seconds.
        settings: The run's `Settings` as a dict.
        run: The arguments that identify the run (data, classes, model, settings), by
            parameter name; a resumed run must be given the same ones.
        rng: Random-generator states of the model's layers (dropout), which Keras does not
            save with the weights; a resumed run draws the same dropout masks.
    """

    step: int = 0
    history: list[dict] = field(default_factory=list)
    best_miou: float = -1.0
    partial: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    rng: dict = field(default_factory=dict)


def _rng_variables(model: keras.Model) -> dict:
    # Keyed by layer name and position: Keras numbers generator names per process.
    found = {}
    for layer in model.layers:
        states = [v for v in layer.variables if v.path.endswith("seed_generator_state")]
        found.update({f"{layer.name}/{index}": variable for index, variable in enumerate(states)})
    return found


def rng_state(model: keras.Model) -> dict[str, list[int]]:
    """The state of every random generator in `model` (e.g. dropout), JSON-ready."""
    return {name: [int(v) for v in variable.numpy()] for name, variable in _rng_variables(model).items()}


def restore_rng_state(model: keras.Model, saved: dict[str, list[int]]) -> None:
    """Put back the generator states of `rng_state` (names that no longer exist are skipped)."""
    for name, variable in _rng_variables(model).items():
        if name in saved:
            variable.assign(np.asarray(saved[name], dtype=variable.dtype))


def save_checkpoint(model: keras.Model, path: Path, state: State, optimizer=None) -> Path:
    """Save `model` with the training state (and optimizer variables) atomically."""
    state.rng = rng_state(model)
    with atomic_path(path) as temp:
        model.save(temp)
        with zipfile.ZipFile(temp, "a") as archive:
            archive.writestr(STATE_MEMBER, json.dumps(asdict(state), indent=1))
            if optimizer is not None:
                buffer = io.BytesIO()
                np.savez(buffer, **optimizer_arrays(optimizer))
                archive.writestr(OPTIMIZER_MEMBER, buffer.getvalue())
    return path


def load_checkpoint(path: Path) -> tuple[keras.Model, State, dict | None]:
    """Load last.keras: the model, its `State`, and the optimizer arrays (or None).

    Raises:
        EdgesegError: a missing file or one without training state.
    """
    if not path.is_file():
        raise EdgesegError(f"nothing to resume: {path} does not exist")
    model = load_model(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if STATE_MEMBER not in names:
            raise EdgesegError(f"{path} has no training state; it was not written by edgeseg train")
        state = State(**json.loads(archive.read(STATE_MEMBER)))
        arrays = None
        if OPTIMIZER_MEMBER in names:
            with np.load(io.BytesIO(archive.read(OPTIMIZER_MEMBER))) as loaded:
                arrays = {key: loaded[key] for key in loaded.files}
    return model, state, arrays
