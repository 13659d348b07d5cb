"""The training loop: epochs of optimizer steps, validation, best/last checkpoints, Ctrl-C.

`fit` trains a built model on prepared data for the epochs a `State` has not done yet and
writes the run folder as it goes: `last.keras` (see `edgeseg.checkpoint`) after every epoch
and on Ctrl-C, `best.keras` (the model with the best validation mIoU, at the validation
images' size), `history.csv`, `curves.png` and TensorBoard event files (`edgeseg.board`).
With `Settings.ema`, validation and best.keras use the optimizer's moving average of the
weights. `edgeseg.training.train` is the one call that prepares all of that from folders;
this module is where the steps happen. Trained by several machines, only the chief writes.

Batch norm and small CPU batches: batch statistics of a few road-scene crops are far from
the pretrained ones, and the ASPP image-pooling branch normalises a (B, 1, 1, C) tensor over
the batch alone, so in training mode it sees B numbers per channel (one with B = 1: its
output is then the constant beta) and learns features it never gets at inference. Backbone
batch norm is therefore kept in inference mode by default, and the image-pooling batch norm
always is.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf

from edgeseg.backbone import is_backbone_layer
from edgeseg.board import Board
from edgeseg.checkpoint import State, restore_rng_state, save_checkpoint
from edgeseg.cluster import Cluster, cluster_from_env
from edgeseg.datasets import DatasetInfo
from edgeseg.evaluation import KerasSegmenter, score
from edgeseg.history import draw_curves, write_history
from edgeseg.losses import make_loss, resize_logits
from edgeseg.model import config_of, resize_model, save_model
from edgeseg.optimization import learning_rate, make_optimizer, restore_optimizer
from edgeseg.pipeline import TrainingData
from edgeseg.settings import Settings
from runtime.errors import ParameterError

POOLING_BN = "aspp_pool_bn"
BN_REFRESH_IMAGES = 32


@dataclass
class Reporter:
    """Where the loop reports progress (the CLI plugs a rich progress bar in).

    Attributes:
        epoch_start: (epoch, epochs, steps) at the start of an epoch.
        step: (steps done in the epoch, mean loss so far) after each step.
        epoch_end: (history row, is_best) after each epoch.
        message: A line of text.
        interrupted: (step, path of last.keras) when Ctrl-C stopped the run.
    """

    epoch_start: Callable[[int, int, int], None] = lambda epoch, epochs, steps: None
    step: Callable[[int, float], None] = lambda done, loss: None
    epoch_end: Callable[[dict, bool], None] = lambda row, best: None
    message: Callable[[str], None] = print
    interrupted: Callable[[int, Path], None] = lambda step, path: print(
        f"interrupted at step {step}: saved {path}; train again with resume=True to continue")


# === What trains ===


def configure_trainable(model: keras.Model, freeze_backbone: bool = False, backbone_bn: str = "frozen") -> None:
    """Choose what trains, in place.

    A Keras BatchNormalization layer with `trainable = False` runs in inference mode (moving
    statistics) and keeps gamma/beta fixed.

    Args:
        model: A DeepLab model.
        freeze_backbone: Freeze every backbone layer.
        backbone_bn: "frozen" (inference-mode backbone batch norm) or "train".
    """
    for layer in model.layers:
        backbone = is_backbone_layer(layer.name)
        batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        if backbone and freeze_backbone:
            layer.trainable = False
        elif batch_norm and (layer.name == POOLING_BN or (backbone and backbone_bn == "frozen")):
            layer.trainable = False
        else:
            layer.trainable = True


def refresh_batch_norm(model: keras.Model, batches) -> int:
    """Set the moving statistics of the trainable batch-norm layers to their batch average.

    Two things make the moving averages (momentum 0.99) wrong for inference: after a few
    hundred steps they still carry their initial values, and they describe augmented crops
    (rescaled, padded with grey), not the whole frames the model will see. Averaging the
    batch statistics of whole training images at the deployment size, with the final
    weights ("precise BN"), fixes both; on CamVid it lifted inference-mode pixel accuracy
    from 53% to 66% early in training, level with training mode.

    Args:
        model: The model to update, with `configure_trainable` applied (frozen layers stay
            untouched).
        batches: Iterable of (images, anything): images (B, H, W, 3) float32, normalised.

    Returns:
        The number of batches used.
    """
    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]  # fmt: skip
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for images, _ in batches:
            count += 1
            for layer in layers:
                # Momentum 1 - 1/k makes the k-th update a running mean of the k batches.
                layer.momentum = 1.0 - 1.0 / count
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return count


def synchronize_batch_norm(model: keras.Model) -> None:
    """Make batch norm in training mode use the statistics of the whole global batch, in place.

    Each replica (GPU, or machine) otherwise normalises by its own share of the batch, so a
    step on several replicas would not compute what one device computes on the whole batch.
    Applied to every run, one process included: the synchronized path computes the variance
    as E[x^2] - E[x]^2, the plain one in two passes, and training amplifies that rounding
    difference (on an earlier CI machine, the two-worker test's weights after four steps: 4.6e-4
    apart from one process's, 5e-7 with this).
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def default_strategy(cluster: Cluster | None = None) -> tf.distribute.Strategy:
    """The strategy for `cluster` (default: the one TF_CONFIG describes).

    MultiWorkerMirroredStrategy when several processes train together (each over its own
    GPUs, or its CPU), MirroredStrategy over every GPU of this machine, or the default (one
    device) strategy without GPUs.
    """
    if (cluster or cluster_from_env()).workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# === The loop ===


def fit(model: keras.Model, data: TrainingData, val: DatasetInfo | None, num_classes: int,
        settings: Settings, out_dir: Path, state: State, optimizer_state: dict | None = None,
        eval_size: tuple[int, int] | None = None, strategy=None,
        reporter: Reporter = Reporter(), on_step: Callable[[int], None] | None = None) -> State:  # fmt: skip
    """Train `model` for the epochs `state` has not done yet, checkpointing every epoch.

    Args:
        model: A DeepLab model at the training crop size, created under `strategy`'s scope;
            built with a float16 compute dtype (mixed precision), it trains with loss scaling.
        data: The training batches.
        val: The checked validation set, or None.
        num_classes: C.
        settings: How to train.
        out_dir: The run folder.
        state: Where the run is (a fresh `State()` for a new run).
        optimizer_state: Optimizer arrays from last.keras when resuming.
        eval_size: Input size of best.keras (defaults to the training size).
        strategy: A tf.distribute strategy (default: the current one).
        reporter: Progress callbacks.
        on_step: Called with the global step after every optimizer step (tests use it to
            simulate Ctrl-C).

    Returns:
        The final `State`.

    Raises:
        ParameterError: resuming with a different number of steps per epoch, or training that
            diverged (a loss or weights that are not finite; naming the epoch and step, with
            nothing of that epoch saved: best.keras and last.keras stay as the epoch before left them).
        KeyboardInterrupt: after saving last.keras, when the user presses Ctrl-C.
    """
    strategy = strategy or tf.distribute.get_strategy()
    # Of several machines, only the chief writes the run folder (the others train alike).
    writes = strategy.extended.should_checkpoint
    saved_steps = state.settings.get("steps_per_epoch")
    if saved_steps is not None and saved_steps != data.steps_per_epoch:
        raise ParameterError(f"cannot resume: an epoch now has {data.steps_per_epoch} steps, the interrupted run "
                             f"had {saved_steps}; the training images or {{batch_size}} changed", "batch_size")  # fmt: skip
    configure_trainable(model, settings.freeze_backbone, settings.backbone_bn)
    synchronize_batch_norm(model)
    restore_rng_state(model, state.rng)
    stepper = _Stepper(model, settings, strategy, state, optimizer_state, data.steps_per_epoch)
    state.settings = {**asdict(settings), "steps_per_epoch": data.steps_per_epoch}
    board = Board(out_dir, num_classes) if writes else None
    # With an average of the weights, validation and best.keras use it (last.keras carries it in the optimizer).
    average = stepper.optimizer.finalize_variable_values if settings.ema else None
    validator = _Validator(model, val, num_classes, settings, data, tuple(eval_size or config_of(model).input_size),
                           out_dir / "best.keras", board, average)  # fmt: skip
    last_path = out_dir / "last.keras"
    try:
        for epoch in range(len(state.history), settings.epochs):
            row = stepper.epoch(epoch, data, state, reporter, on_step, board)
            _check_finite_weights(model, epoch)
            is_best = validator.end_of_epoch(epoch, row, state) if writes else False
            state.history.append(row)
            state.partial = {}
            if writes:
                save_checkpoint(model, last_path, state, stepper.optimizer)
                write_history(state.history, out_dir / "history.csv")
                draw_curves(state.history, out_dir / "curves.png")
                board.epoch(row, state.step)
            reporter.epoch_end(row, is_best)
    except KeyboardInterrupt:
        state.step = stepper.global_step_value()
        if writes:
            save_checkpoint(model, last_path, state, stepper.optimizer)
            reporter.interrupted(state.step, last_path)
        raise
    return state


class _Stepper:
    """The optimizer, its schedule and the compiled training step; runs one epoch at a time."""

    def __init__(self, model, settings: Settings, strategy, state: State, optimizer_state, steps_per_epoch: int):
        self.settings, self.strategy, self.steps_per_epoch = settings, strategy, steps_per_epoch
        self.total_steps = steps_per_epoch * settings.epochs
        self.warmup_steps = int(round(settings.warmup_epochs * steps_per_epoch))
        loss_fn = make_loss(settings.loss, settings.ignore_index, settings.class_weights)
        replicas = strategy.num_replicas_in_sync
        with strategy.scope():
            optimizer = make_optimizer(settings.optimizer, settings.lr, settings.ema)
            if model.compute_dtype == "float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            variables = model.trainable_variables
            if optimizer_state is not None:
                restore_optimizer(optimizer, variables, optimizer_state)
            else:
                optimizer.build(variables)
            global_step = tf.Variable(state.step, dtype=tf.int64, trainable=False, name="global_step")
        self.optimizer, self.global_step = optimizer, global_step

        def replica_step(images, labels):
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                loss = loss_fn(labels, logits)
                scaled = optimizer.scale_loss(loss / replicas)
            gradients = tape.gradient(scaled, variables)
            optimizer.apply(gradients, variables)
            correct, valid = _pixel_counts(labels, logits, settings.ignore_index)
            return loss, correct, valid

        @tf.function
        def train_step(images, labels):
            loss, correct, valid = strategy.run(replica_step, (images, labels))
            # Counted in the same graph as the weight update: a Ctrl-C never separates the two.
            global_step.assign_add(1)
            mean, total = tf.distribute.ReduceOp.MEAN, tf.distribute.ReduceOp.SUM
            return (strategy.reduce(mean, loss, None), strategy.reduce(total, correct, None),
                    strategy.reduce(total, valid, None))  # fmt: skip

        self.train_step = train_step

    def global_step_value(self) -> int:
        return int(self.global_step.numpy())

    def lr_at(self, step: int) -> float:
        settings = self.settings
        return learning_rate(step, self.total_steps, settings.lr, settings.schedule, self.warmup_steps)

    def epoch(self, epoch: int, data: TrainingData, state: State, reporter: Reporter, on_step,
              board: Board | None = None) -> dict:  # fmt: skip
        """Train the (rest of the) epoch; returns its history row, not yet validated."""
        steps = self.steps_per_epoch
        done = self.global_step_value() - epoch * steps
        if done <= 0 or not state.partial:
            state.partial = {"loss": 0.0, "correct": 0, "valid": 0, "steps": 0, "seconds": 0.0}
        partial = state.partial
        reporter.epoch_start(epoch, self.settings.epochs, steps)
        started, seconds_before = time.perf_counter(), partial["seconds"]
        if self.strategy.num_replicas_in_sync > 1:
            dataset = self.strategy.distribute_datasets_from_function(
                lambda context: data.epoch(epoch, max(done, 0), context))
        else:
            dataset = data.epoch(epoch, skip_batches=max(done, 0))
        for images, labels in dataset:
            step = self.global_step_value()
            self.optimizer.learning_rate = self.lr_at(step)
            loss, correct, valid = self.train_step(images, labels)
            loss = float(loss)
            if not math.isfinite(loss):
                # Raised before anything is saved: best.keras and last.keras stay from the epochs before.
                raise ParameterError(f"training diverged: the loss is {loss} at epoch {epoch + 1}, step "
                                     f"{step + 1 - epoch * steps}; nothing from this epoch was saved. Lower "
                                     f"{{lr}} (it was {self.lr_at(step):.3g} here)", "lr")  # fmt: skip
            partial["loss"] += loss
            partial["correct"] += int(correct)
            partial["valid"] += int(valid)
            partial["steps"] += 1
            partial["seconds"] = seconds_before + time.perf_counter() - started
            state.step = step + 1
            reporter.step(state.step - epoch * steps, partial["loss"] / partial["steps"])
            if board:
                board.step(state.step, float(loss), self.lr_at(step))
            if on_step:
                on_step(state.step)
        state.step = self.global_step_value()
        return {
            "epoch": epoch + 1,
            "lr": self.lr_at(state.step - 1),
            "loss": partial["loss"] / max(partial["steps"], 1),
            "train_accuracy": partial["correct"] / max(partial["valid"], 1),
            "val_miou": float("nan"),
            "val_pixel_accuracy": float("nan"),
            "seconds": partial["seconds"],
        }


class _Validator:
    """Scores the model at the deployment size after an epoch and keeps best.keras.

    `average`, if given, replaces the copy's trainable variables (in the order of the model's)
    with the optimizer's moving average of them; the model being trained keeps its own.
    """

    def __init__(self, model, val, num_classes, settings: Settings, data: TrainingData, eval_size, best_path,
                 board: Board | None = None, average: Callable[[list], None] | None = None):  # fmt: skip
        self.model, self.val, self.num_classes, self.settings = model, val, num_classes, settings
        self.data, self.eval_size, self.best_path, self.board = data, eval_size, best_path, board
        self.average, self.val_model = average, None

    def end_of_epoch(self, epoch: int, row: dict, state: State) -> bool:
        """Validate when due, fill the row's scores, save best.keras; returns whether it is best."""
        settings, val = self.settings, self.val
        if (epoch + 1) % settings.val_every and epoch + 1 != settings.epochs:
            return False
        self._refresh()
        if val is not None:
            segmenter = KerasSegmenter(self.val_model)
            result = score(segmenter, val, self.num_classes, settings.ignore_index)
            row["val_miou"] = result.metrics.miou
            row["val_pixel_accuracy"] = result.metrics.pixel_accuracy
            if self.board:
                self.board.validation(state.step, result.metrics.per_class_iou, segmenter, val)
            if not row["val_miou"] > state.best_miou:
                return False
            state.best_miou = row["val_miou"]
        # Without a validation set, best.keras follows the latest epoch it is due at.
        save_model(self.val_model, self.best_path)
        return True

    def _refresh(self) -> None:
        # The deployment-size copy of the model, with batch norm re-estimated on whole frames.
        if self.val_model is None:
            self.val_model = resize_model(self.model, self.eval_size)
            configure_trainable(self.val_model, self.settings.freeze_backbone, self.settings.backbone_bn)
        else:
            self.val_model.set_weights(self.model.get_weights())
        if self.average is not None:
            self.average(self.val_model.trainable_variables)
        refresh_batch_norm(self.val_model, self.data.frames(self.eval_size, BN_REFRESH_IMAGES))


def _check_finite_weights(model: keras.Model, epoch: int) -> None:
    """Refuse to save weights that the epoch's last step made NaN or infinite (its loss came before it).

    Raises:
        ParameterError: naming the epoch, before best.keras or last.keras is written.
    """
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.trainable_variables):
        raise ParameterError(f"training diverged: weights are not finite after epoch {epoch + 1}; nothing from "
                             "this epoch was saved. Lower {lr}", "lr")  # fmt: skip


def _pixel_counts(labels, logits, ignore_index: int):
    """Correct and non-ignored pixels of a batch, logits resized as in the loss."""
    labels = tf.cast(labels, tf.int32)
    predicted = tf.argmax(resize_logits(logits, labels.shape[1:3]), axis=-1, output_type=tf.int32)
    valid = tf.not_equal(labels, ignore_index)
    correct = tf.logical_and(valid, tf.equal(predicted, labels))
    return tf.reduce_sum(tf.cast(correct, tf.int64)), tf.reduce_sum(tf.cast(valid, tf.int64))
