"""Segmentation metrics from a confusion matrix: per-class IoU, mean IoU, pixel accuracy.

Plain numpy, so float Keras models and int8 TFLite models are scored by the same code.
Predictions may be label maps at the mask's size or logits at any stride; logits become
labels the way the device runtime makes them (`runtime.processing.postprocess`: arg-max at
the output's stride, then corner-aligned nearest-neighbour resize), so a float model and
its int8 conversion differ only by quantization.
"""

from __future__ import annotations

import numpy as np

from runtime.processing import postprocess


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int,
                     ignore_index: int | None = 255) -> np.ndarray:  # fmt: skip
    """Count (true class, predicted class) pairs over the pixels that are not ignored.

    Args:
        truth: (H, W) integer labels, each a class in [0, num_classes) or `ignore_index`.
        predicted: (H, W) integer labels in [0, num_classes), same shape.
        num_classes: C.
        ignore_index: Label value in `truth` to skip, or None.

    Returns:
        (C, C) int64: rows are true classes, columns predicted ones.

    Raises:
        ValueError: different shapes, a true label that is neither a class nor ignored, or
            a predicted label that is not a class.
    """
    truth = np.asarray(truth)
    predicted = np.asarray(predicted)
    if truth.shape != predicted.shape:
        raise ValueError(f"labels {truth.shape} and predictions {predicted.shape} differ in shape")
    truth = truth.astype(np.int64).ravel()
    predicted = predicted.astype(np.int64).ravel()
    if ignore_index is not None:
        keep = truth != ignore_index
        truth, predicted = truth[keep], predicted[keep]
    for name, values in (("label", truth), ("prediction", predicted)):
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.size:
            raise ValueError(f"{name} {bad[0]} is not a class (0-{num_classes - 1}) nor the ignore index")
    counts = np.bincount(truth * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """Intersection over union of each class: TP / (TP + FP + FN).

    Args:
        matrix: (C, C) confusion matrix (rows true, columns predicted).

    Returns:
        (C,) float64; NaN for a class absent from both truth and predictions.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
    return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)


def mean_iou(matrix: np.ndarray) -> float:
    """Mean of the per-class IoUs over classes present in truth or predictions (NaN if none)."""
    values = iou_per_class(matrix)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def pixel_accuracy(matrix: np.ndarray) -> float:
    """Fraction of non-ignored pixels predicted correctly (NaN if there are none)."""
    matrix = np.asarray(matrix)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")


class SegmentationMetrics:
    """Accumulates a confusion matrix over images; reads out IoU, mIoU and pixel accuracy.

    Example:
        >>> metrics = SegmentationMetrics(num_classes=11, ignore_index=11)
        >>> metrics.update(mask, labels)        # (H, W) labels, or logits (h, w, C) / (1, h, w, C)
        >>> metrics.miou, metrics.pixel_accuracy

    Args:
        num_classes: C.
        ignore_index: Label value excluded from every metric, or None.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        """Add one image.

        Args:
            truth: (H, W) integer labels.
            prediction: (H, W) integer labels, or float/int8 logits (h, w, C) or (1, h, w, C)
                at any stride (arg-max, then nearest-neighbour resize to (H, W)).
        """
        prediction = np.asarray(prediction)
        if prediction.ndim != np.ndim(truth):
            prediction = labels_from_logits(prediction, np.shape(truth)[:2])
        self.matrix += confusion_matrix(truth, prediction, self.num_classes, self.ignore_index)

    @property
    def per_class_iou(self) -> np.ndarray:
        """(C,) float64, NaN for classes never seen nor predicted."""
        return iou_per_class(self.matrix)

    @property
    def miou(self) -> float:
        return mean_iou(self.matrix)

    @property
    def pixel_accuracy(self) -> float:
        return pixel_accuracy(self.matrix)


def json_number(value: float | None) -> float | None:
    """A score for a JSON report: NaN (a class never seen nor predicted, a mean of nothing) as None."""
    return None if value is None or not np.isfinite(value) else float(value)


def labels_from_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Label map at `size` from logits at any stride, exactly as the device runtime makes it.

    Args:
        logits: (h, w, C) or (1, h, w, C) float (or int8/uint8 with a positive scale).
        size: (H, W) wanted.

    Returns:
        (H, W) uint8.
    """
    logits = np.asarray(logits)
    if logits.ndim == 3:
        logits = logits[None]
    return postprocess(logits.astype(np.float32) if logits.dtype == np.float16 else logits, tuple(size))
