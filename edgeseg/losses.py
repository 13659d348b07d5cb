"""Segmentation losses that honour an ignore index and accept logits at any stride.

Every loss is a pure function `loss(labels, logits, ignore_index, ...) -> scalar`:

- `labels`: (B, H, W) or (B, H, W, 1) integer class indices; `ignore_index` marks pixels
  that count nowhere.
- `logits`: (B, h, w, C), any float dtype, at the decoder's stride or at full resolution.
  They are resized bilinearly to (H, W) first (`resize_logits`): upsampling the logits keeps
  thin structures that nearest-downsampling the labels would lose.

`make_loss("wce+dice", ...)` turns a loss name into one callable; `class_weights`
computes inverse-frequency or median-frequency weights from pixel counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np
import tensorflow as tf

from runtime.errors import EdgesegError, ParameterError

LOSS_TERMS = ("ce", "wce", "focal", "dice", "lovasz", "ohem")
WEIGHTED_TERMS = ("wce", "focal")
WEIGHTING_METHODS = ("inverse", "median", "sqrt-median", "none")


def resize_logits(logits: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Bilinear resize of logits to the label size, in float32.

    Corners are aligned when the grids line up ((out - 1) = k * (in - 1), e.g. 65 -> 257),
    as in the model's own resizes; pixel centres otherwise.

    Args:
        logits: (B, h, w, C) float.
        size: (H, W) of the labels, ints or an int32 tensor.

    Returns:
        (B, H, W, C) float32.
    """
    logits = tf.cast(logits, tf.float32)
    source = tuple(logits.shape[1:3])
    if isinstance(size, tf.Tensor) or None in source:
        # Sizes known only at run time (a graph traced for varied sizes): pixel centres.
        return tf.image.resize(logits, size, method="bilinear")
    size = tuple(int(v) for v in size)
    if source == size:
        return logits
    align = all(s > 1 and (d - 1) % (s - 1) == 0 for s, d in zip(source, size))
    return tf.raw_ops.ResizeBilinear(images=logits, size=size, align_corners=align,
                                     half_pixel_centers=not align)  # fmt: skip


def _prepare(labels, logits, ignore_index: int):
    """Labels (B, H, W) int32 with ignored pixels set to 0, validity mask, resized logits."""
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 4:
        labels = labels[..., 0]
    labels = tf.cast(labels, tf.int32)
    valid = tf.not_equal(labels, ignore_index)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    size = tuple(labels.shape[1:3]) if labels.shape[1:3].is_fully_defined() else tf.shape(labels)[1:3]
    logits = resize_logits(logits, size)
    return safe_labels, tf.cast(valid, tf.float32), logits


def _pixel_weights(labels: tf.Tensor, valid: tf.Tensor, class_weights) -> tf.Tensor:
    if class_weights is None:
        return valid
    weights = tf.gather(tf.constant(class_weights, tf.float32), labels)
    return weights * valid


def cross_entropy(labels, logits, ignore_index: int = 255, class_weights=None) -> tf.Tensor:
    """Softmax cross-entropy, averaged over non-ignored pixels (weighted average if weighted).

    With `class_weights` w, the loss is sum_i w[y_i] * ce_i / sum_i w[y_i] (PyTorch's
    convention), so its scale does not depend on the weights' scale.

    Args:
        labels: (B, H, W[, 1]) int.
        logits: (B, h, w, C) float.
        ignore_index: Label value excluded from the loss.
        class_weights: None or a length-C sequence of non-negative floats.

    Returns:
        Scalar float32; 0 when every pixel is ignored.
    """
    labels, valid, logits = _prepare(labels, logits, ignore_index)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    weights = _pixel_weights(labels, valid, class_weights)
    return tf.math.divide_no_nan(tf.reduce_sum(per_pixel * weights), tf.reduce_sum(weights))


def focal_loss(labels, logits, ignore_index: int = 255, gamma: float = 2.0, class_weights=None) -> tf.Tensor:
    """Focal loss (Lin et al.): cross-entropy scaled by (1 - p_true) ** gamma per pixel.

    Averaged like `cross_entropy` (weighted average over non-ignored pixels).

    Args:
        labels: (B, H, W[, 1]) int.
        logits: (B, h, w, C) float.
        ignore_index: Label value excluded from the loss.
        gamma: Focusing exponent; 0 gives cross-entropy.
        class_weights: None or a length-C sequence of non-negative floats.

    Returns:
        Scalar float32.
    """
    labels, valid, logits = _prepare(labels, logits, ignore_index)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    p_true = tf.exp(-per_pixel)
    per_pixel = tf.pow(1.0 - p_true, gamma) * per_pixel
    weights = _pixel_weights(labels, valid, class_weights)
    return tf.math.divide_no_nan(tf.reduce_sum(per_pixel * weights), tf.reduce_sum(weights))


def dice_loss(labels, logits, ignore_index: int = 255, smooth: float = 1.0) -> tf.Tensor:
    """Soft Dice loss over the whole batch: 1 - mean over classes of the smoothed Dice score.

    For class c, with softmax probabilities p and one-hot labels g over non-ignored pixels:
    dice_c = (2 * sum(p_c * g_c) + smooth) / (sum(p_c) + sum(g_c) + smooth). A class absent
    from both labels and predictions scores 1 (no penalty).

    Args:
        labels: (B, H, W[, 1]) int.
        logits: (B, h, w, C) float.
        ignore_index: Label value excluded from the loss.
        smooth: Additive smoothing of numerator and denominator.

    Returns:
        Scalar float32 in [0, 1].
    """
    labels, valid, logits = _prepare(labels, logits, ignore_index)
    num_classes = logits.shape[-1]
    valid = valid[..., None]
    probs = tf.nn.softmax(logits) * valid
    truth = tf.one_hot(labels, num_classes) * valid
    axes = (0, 1, 2)
    intersection = tf.reduce_sum(probs * truth, axis=axes)
    total = tf.reduce_sum(probs, axis=axes) + tf.reduce_sum(truth, axis=axes)
    dice = (2.0 * intersection + smooth) / (total + smooth)
    return 1.0 - tf.reduce_mean(dice)


def lovasz_softmax(labels, logits, ignore_index: int = 255, stride: int = 4) -> tf.Tensor:
    """Lovasz-softmax loss (Berman et al., 2018): a convex surrogate of 1 - IoU per class.

    Computed over the non-ignored pixels of the batch, averaged over the classes present in
    the labels. It sorts every pixel's error once per class, so it is evaluated on a grid of
    every `stride`-th pixel of the full-resolution labels (the decoder's stride by default):
    16 times cheaper at stride 4, and the same grid on every call.

    Args:
        labels: (B, H, W[, 1]) int.
        logits: (B, h, w, C) float.
        ignore_index: Label value excluded from the loss.
        stride: Pixel spacing of the evaluation grid (1 uses every pixel).

    Returns:
        Scalar float32.
    """
    labels, valid, logits = _prepare(labels, logits, ignore_index)
    labels, valid, logits = (t[:, ::stride, ::stride] for t in (labels, valid, logits))
    num_classes = logits.shape[-1]
    keep = tf.reshape(valid, [-1]) > 0
    probs = tf.boolean_mask(tf.reshape(tf.nn.softmax(logits), [-1, num_classes]), keep)
    truth = tf.boolean_mask(tf.one_hot(tf.reshape(labels, [-1]), num_classes), keep)
    errors = tf.transpose(tf.abs(truth - probs))  # (C, P)
    order = tf.argsort(errors, axis=1, direction="DESCENDING")
    errors = tf.gather(errors, order, batch_dims=1)
    truth_sorted = tf.gather(tf.transpose(truth), order, batch_dims=1)
    total = tf.reduce_sum(truth_sorted, axis=1, keepdims=True)
    intersection = total - tf.cumsum(truth_sorted, axis=1)
    union = total + tf.cumsum(1.0 - truth_sorted, axis=1)
    jaccard = 1.0 - intersection / tf.maximum(union, 1.0)
    gradient = tf.concat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
    per_class = tf.reduce_sum(errors * gradient, axis=1)
    present = tf.cast(total[:, 0] > 0, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per_class * present), tf.reduce_sum(present))


def ohem_cross_entropy(labels, logits, ignore_index: int = 255, threshold: float = 0.7,
                       min_kept: float = 1 / 16) -> tf.Tensor:  # fmt: skip
    """Online hard example mining: cross-entropy over the pixels the model gets least right.

    Keeps every pixel whose true-class probability is below `threshold`, and at least the
    hardest `min_kept` share of the non-ignored pixels.

    Args:
        labels: (B, H, W[, 1]) int.
        logits: (B, h, w, C) float.
        ignore_index: Label value excluded from the loss.
        threshold: True-class probability below which a pixel is hard.
        min_kept: Smallest share of the valid pixels kept.

    Returns:
        Scalar float32.
    """
    labels, valid, logits = _prepare(labels, logits, ignore_index)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    losses = tf.boolean_mask(tf.reshape(per_pixel, [-1]), tf.reshape(valid, [-1]) > 0)
    count = tf.size(losses)
    hard = tf.reduce_sum(tf.cast(losses > -np.log(threshold), tf.int32))
    kept = tf.minimum(tf.maximum(hard, tf.cast(tf.cast(count, tf.float32) * min_kept, tf.int32)), count)
    top = tf.math.top_k(losses, k=kept, sorted=False).values
    return tf.math.divide_no_nan(tf.reduce_sum(top), tf.cast(kept, tf.float32))


def parse_loss(name: str) -> tuple[str, ...]:
    """Split a loss name such as 'wce+dice' into its terms.

    Raises:
        EdgesegError: an unknown or repeated term.
    """
    terms = tuple(term.strip().lower() for term in name.split("+"))
    for term in terms:
        if term not in LOSS_TERMS:
            raise EdgesegError(f"unknown loss {term!r} in {name!r}; choose {', '.join(LOSS_TERMS)} "
                               "or a sum such as wce+dice")  # fmt: skip
    if len(set(terms)) != len(terms):
        raise EdgesegError(f"loss {name!r} repeats a term")
    return terms


def make_loss(name: str, ignore_index: int = 255, class_weights=None) -> Callable:
    """The loss called `name` (one of LOSS_TERMS or a sum like 'wce+dice').

    Args:
        name: Loss name.
        ignore_index: Label value excluded from the loss.
        class_weights: Length-C weights used by the 'wce' and 'focal' terms.

    Returns:
        loss(labels, logits) -> scalar float32.

    Raises:
        EdgesegError: an unknown name, or 'wce' without class weights.
    """
    terms = parse_loss(name)
    if "wce" in terms and class_weights is None:
        raise ParameterError("loss wce needs class weights: {class_weights} inverse, median or w1,w2,...",
                             "class_weights")  # fmt: skip
    functions = {
        "ce": lambda y, p: cross_entropy(y, p, ignore_index),
        "wce": lambda y, p: cross_entropy(y, p, ignore_index, class_weights),
        "focal": lambda y, p: focal_loss(y, p, ignore_index, class_weights=class_weights),
        "dice": lambda y, p: dice_loss(y, p, ignore_index),
        "lovasz": lambda y, p: lovasz_softmax(y, p, ignore_index),
        "ohem": lambda y, p: ohem_cross_entropy(y, p, ignore_index),
    }
    chosen = [functions[term] for term in terms]

    def loss(labels, logits):
        return tf.add_n([function(labels, logits) for function in chosen])

    return loss


def class_weights(counts: np.ndarray, image_pixels: np.ndarray, method: str) -> np.ndarray | None:
    """Class weights from the training masks' pixel counts.

    - 'inverse': w_c = 1 / (K * f_c) with f_c = counts[c] / sum(counts) and K the number
      of classes present, so the average weight per pixel is 1.
    - 'median' (median-frequency balancing, Eigen & Fergus): w_c = median(f) / f_c with
      f_c = counts[c] / image_pixels[c], the frequency of c in the images where it appears.
    - 'sqrt-median': the square roots of the median-frequency weights, a softer balance
      (on CamVid rare classes weigh 2-3 instead of 5-9, the commonest 0.4-0.5 instead of 0.15).

    A class that never appears gets weight 1 (it weighs no pixel anyway).

    Args:
        counts: (C,) int, pixels of each class over the training masks.
        image_pixels: (C,) int, total pixels of the masks in which each class appears.
        method: 'inverse', 'median', 'sqrt-median' or 'none'.

    Returns:
        (C,) float32 weights, or None for 'none'.

    Raises:
        EdgesegError: an unknown method.
    """
    if method == "none":
        return None
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.ones(len(counts))
    if not present.any():
        return weights.astype(np.float32)
    if method == "inverse":
        frequency = counts[present] / counts.sum()
        weights[present] = 1.0 / (present.sum() * frequency)
    elif method in ("median", "sqrt-median"):
        frequency = counts[present] / np.asarray(image_pixels, dtype=np.float64)[present]
        weights[present] = np.median(frequency) / frequency
        if method == "sqrt-median":
            weights = np.sqrt(weights)
    else:
        raise EdgesegError(f"unknown class weighting {method!r}; choose {', '.join(WEIGHTING_METHODS)} or w1,w2,...")
    return weights.astype(np.float32)


def parse_class_weights(weights: str | Sequence[float], num_classes: int | None = None) -> np.ndarray:
    """Explicit class weights, 'w1,w2,...' or a sequence (one per class, >= 0, not all 0).

    Args:
        weights: The weights.
        num_classes: C, to check the count against; None skips that check.

    Raises:
        EdgesegError: not numbers, wrong count, negative or all zero.
    """
    try:
        parts = weights.split(",") if isinstance(weights, str) else list(weights)
        array = np.array([float(part) for part in parts], dtype=np.float32)
    except (TypeError, ValueError):
        raise EdgesegError(f"class weights {weights!r} are not {', '.join(WEIGHTING_METHODS)} or "
                           "comma-separated numbers") from None  # fmt: skip
    if num_classes is not None and len(array) != num_classes:
        raise EdgesegError(f"{len(array)} class weights given for {num_classes} classes")
    if (array < 0).any() or not np.isfinite(array).all() or not array.any():
        raise EdgesegError(f"class weights {weights!r} must be finite, non-negative and not all zero")
    return array


def class_weighting(loss: str, class_weights: str | Sequence[float] | None = None) -> str | list[float]:
    """How `loss` weights classes: a method of `WEIGHTING_METHODS` or explicit weights.

    Args:
        loss: Loss name (see `make_loss`).
        class_weights: "inverse", "median", "sqrt-median", "none", explicit weights ('w1,w2,...' or a
            sequence), or None for the default: "median" for a loss with wce, else "none".

    Returns:
        The method name, or the explicit weights as a list of floats (JSON-ready).

    Raises:
        ParameterError: weights for an unweighted loss, or wce without weights.
        EdgesegError: an unknown loss or malformed weights.
    """
    terms = parse_loss(loss)
    if class_weights is not None and not any(term in WEIGHTED_TERMS for term in terms):
        raise ParameterError(f"{{class_weights}} applies to the wce and focal losses; {{loss}} {loss} is unweighted "
                             "(use {loss} wce)", "class_weights", "loss")  # fmt: skip
    if class_weights is None:
        return "median" if "wce" in terms else "none"
    if isinstance(class_weights, str) and class_weights.strip().lower() in WEIGHTING_METHODS:
        method = class_weights.strip().lower()
        if method == "none" and "wce" in terms:
            raise ParameterError("{loss} wce needs class weights; use {loss} ce for unweighted cross-entropy", "loss")
        return method
    return [float(w) for w in parse_class_weights(class_weights)]


def weights_for(weighting: str | Sequence[float], counts: np.ndarray, image_pixels: np.ndarray) -> np.ndarray | None:
    """The class weights of a `class_weighting` result for a dataset's pixel counts.

    Args:
        weighting: A method name or explicit weights.
        counts: (C,) pixels of each class (`edgeseg.datasets.DatasetInfo.counts`).
        image_pixels: (C,) pixels of the masks in which each class appears.

    Returns:
        (C,) float32 weights, or None for "none".

    Raises:
        EdgesegError: explicit weights whose count is not C.
    """
    if isinstance(weighting, str):
        return class_weights(counts, image_pixels, weighting)
    return parse_class_weights(weighting, len(counts))
