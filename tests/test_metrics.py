"""IoU, mIoU and pixel accuracy on hand-made label maps."""

import math

import numpy as np
import pytest

from edgeseg.metrics import SegmentationMetrics, confusion_matrix, iou_per_class, labels_from_logits, mean_iou
from runtime.processing import postprocess

# Three classes, ignore index 9.
TRUTH = np.array([[0, 0, 1],
                  [1, 1, 9],
                  [2, 2, 9]], np.uint8)  # fmt: skip
PRED = np.array([[0, 1, 1],
                 [1, 0, 2],
                 [2, 2, 0]], np.uint8)  # fmt: skip


def test_confusion_matrix_skips_ignored_pixels():
    matrix = confusion_matrix(TRUTH, PRED, 3, ignore_index=9)
    expected = np.array([[1, 1, 0],
                         [1, 2, 0],
                         [0, 0, 2]])  # fmt: skip
    np.testing.assert_array_equal(matrix, expected)


def test_iou_accuracy_and_mean_by_hand():
    metrics = SegmentationMetrics(3, ignore_index=9)
    metrics.update(TRUTH, PRED)
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1, FN 1 -> 2/4; class 2: 2/2.
    np.testing.assert_allclose(metrics.per_class_iou, [1 / 3, 1 / 2, 1.0])
    assert metrics.miou == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
    assert metrics.pixel_accuracy == pytest.approx(5 / 7)


def test_metrics_accumulate_over_images():
    metrics = SegmentationMetrics(3, ignore_index=9)
    metrics.update(TRUTH, PRED)
    metrics.update(TRUTH, TRUTH.copy())
    # Second image is perfect: TP add 2, 3, 2.
    np.testing.assert_allclose(metrics.per_class_iou, [3 / 5, 5 / 7, 1.0])
    assert metrics.pixel_accuracy == pytest.approx(12 / 14)


def test_a_class_absent_everywhere_is_left_out_of_the_mean():
    truth = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    ious = iou_per_class(confusion_matrix(truth, pred, 4, ignore_index=None))
    assert ious[0] == pytest.approx(0.5) and ious[1] == pytest.approx(2 / 3)
    assert math.isnan(ious[2]) and math.isnan(ious[3])
    assert mean_iou(confusion_matrix(truth, pred, 4, None)) == pytest.approx((0.5 + 2 / 3) / 2)


def test_a_class_only_predicted_scores_zero():
    truth = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 2], [0, 0]])
    ious = iou_per_class(confusion_matrix(truth, pred, 3, None))
    assert ious[0] == pytest.approx(0.75) and ious[2] == 0.0 and math.isnan(ious[1])


def test_logits_at_full_resolution_and_at_a_stride():
    metrics = SegmentationMetrics(3, ignore_index=9)
    logits = np.eye(3, dtype=np.float32)[PRED]  # (3, 3, 3), arg-max = PRED
    metrics.update(TRUTH, logits)
    assert metrics.pixel_accuracy == pytest.approx(5 / 7)

    # Stride: a (2, 2) logit map for a (5, 5) mask, labelled as the runtime labels a frame.
    rng = np.random.default_rng(0)
    small = rng.normal(size=(1, 2, 2, 3)).astype(np.float32)
    labels = labels_from_logits(small, (5, 5))
    np.testing.assert_array_equal(labels, postprocess(small, (5, 5)))
    assert labels[0, 0] == small[0, 0, 0].argmax() and labels[4, 4] == small[0, 1, 1].argmax()
    strided = SegmentationMetrics(3, ignore_index=None)
    strided.update(labels, small)
    assert strided.pixel_accuracy == 1.0


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(TRUTH, PRED[:2], 3, 9)
    with pytest.raises(ValueError, match="label 9 is not a class"):
        confusion_matrix(TRUTH, PRED, 3, ignore_index=None)
    with pytest.raises(ValueError, match="prediction 5"):
        confusion_matrix(TRUTH, np.full((3, 3), 5), 3, ignore_index=9)


def test_nothing_to_score():
    metrics = SegmentationMetrics(2, ignore_index=9)
    metrics.update(np.full((2, 2), 9), np.zeros((2, 2)))
    assert math.isnan(metrics.miou) and math.isnan(metrics.pixel_accuracy)
