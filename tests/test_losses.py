"""Losses on small hand-made tensors whose values are worked out in the test with numpy."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from edgeseg.losses import (  # noqa: E402
    class_weights,
    cross_entropy,
    dice_loss,
    focal_loss,
    lovasz_softmax,
    make_loss,
    ohem_cross_entropy,
    parse_class_weights,
    parse_loss,
)
from runtime.errors import EdgesegError  # noqa: E402

# Two pixels, three classes. Pixel 0: logits (2, 0, 0), label 0. Pixel 1: logits (0, 1, 0), label 2.
LOGITS = np.array([[[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]], np.float32)  # (1, 1, 2, 3)
LABELS = np.array([[[0, 2]]], np.int32)  # (1, 1, 2)
E = np.e
CE0 = -np.log(E**2 / (E**2 + 2))  # 0.2395
CE1 = -np.log(1 / (E + 2))  # 1.5514


def test_cross_entropy_is_the_mean_over_pixels():
    assert float(cross_entropy(LABELS, LOGITS)) == pytest.approx((CE0 + CE1) / 2, rel=1e-5)


def test_cross_entropy_skips_the_ignore_index():
    labels = np.array([[[0, 255]]], np.int32)
    assert float(cross_entropy(labels, LOGITS, ignore_index=255)) == pytest.approx(CE0, rel=1e-5)
    labels = np.array([[[7, 2]]], np.int32)  # any ignore value, here 7
    assert float(cross_entropy(labels, LOGITS, ignore_index=7)) == pytest.approx(CE1, rel=1e-5)


def test_everything_ignored_gives_zero_not_nan():
    labels = np.full((1, 1, 2), 255, np.int32)
    for loss in (cross_entropy, focal_loss):
        assert float(loss(labels, LOGITS)) == 0.0


def test_weighted_cross_entropy_is_the_weighted_mean():
    weights = [1.0, 2.0, 3.0]
    expected = (1.0 * CE0 + 3.0 * CE1) / (1.0 + 3.0)
    assert float(cross_entropy(LABELS, LOGITS, class_weights=weights)) == pytest.approx(expected, rel=1e-5)


def test_focal_loss_scales_each_pixel_by_one_minus_p_squared():
    p0, p1 = np.exp(-CE0), np.exp(-CE1)
    expected = ((1 - p0) ** 2 * CE0 + (1 - p1) ** 2 * CE1) / 2
    assert float(focal_loss(LABELS, LOGITS, gamma=2.0)) == pytest.approx(expected, rel=1e-5)
    assert float(focal_loss(LABELS, LOGITS, gamma=0.0)) == pytest.approx((CE0 + CE1) / 2, rel=1e-5)


def test_dice_loss_on_hard_predictions():
    # Four pixels, two classes; labels 0 0 1 1, predictions 0 1 1 1 (logits +-50: softmax is one-hot).
    labels = np.array([[[0, 0, 1, 1]]], np.int32)
    predicted = np.array([0, 1, 1, 1])
    logits = np.where(np.eye(2)[predicted] > 0, 50.0, -50.0).astype(np.float32)[None, None]
    # class 0: I=1, P=1, G=2 -> (2+1)/(3+1); class 1: I=2, P=3, G=2 -> (4+1)/(5+1)
    expected = 1 - (3 / 4 + 5 / 6) / 2
    assert float(dice_loss(labels, logits, smooth=1.0)) == pytest.approx(expected, abs=1e-5)
    perfect = np.where(np.eye(2)[[0, 0, 1, 1]] > 0, 50.0, -50.0).astype(np.float32)[None, None]
    assert float(dice_loss(labels, perfect)) == pytest.approx(0.0, abs=1e-5)


def test_dice_loss_ignores_pixels():
    labels = np.array([[[0, 255, 1, 1]]], np.int32)
    predicted = np.array([0, 1, 1, 1])
    logits = np.where(np.eye(2)[predicted] > 0, 50.0, -50.0).astype(np.float32)[None, None]
    # Pixel 1 gone: class 0: I=1, P=1, G=1 -> 1; class 1: I=2, P=2, G=2 -> 1.
    assert float(dice_loss(labels, logits, ignore_index=255)) == pytest.approx(0.0, abs=1e-5)


def test_logits_at_the_decoder_stride_are_resized_to_the_labels():
    # 2x2 logits for 5x5 labels line up corner to corner ((5-1) = 4 * (2-1)): the four corner
    # pixels take the four logit vectors exactly; every other pixel is ignored.
    logits = np.array([[[[2, 0, 0], [0, 1, 0]], [[0, 0, 3], [1, 1, 1]]]], np.float32)  # (1, 2, 2, 3)
    labels = np.full((1, 5, 5, 1), 255, np.int32)
    corner_labels = {(0, 0): 0, (0, 4): 2, (4, 0): 2, (4, 4): 1}
    for (row, column), label in corner_labels.items():
        labels[0, row, column, 0] = label
    vectors = [logits[0, 0, 0], logits[0, 0, 1], logits[0, 1, 0], logits[0, 1, 1]]
    expected = np.mean([
        -np.log(np.exp(v[label]) / np.exp(v).sum()) for v, label in zip(vectors, corner_labels.values())
    ])  # fmt: skip
    assert float(cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-5)


def test_full_resolution_and_strided_logits_agree_when_constant():
    logits = np.tile(np.array([1.0, 0.0, -1.0], np.float32), (1, 4, 4, 1))
    labels = np.zeros((1, 16, 16), np.int32)
    full = np.tile(np.array([1.0, 0.0, -1.0], np.float32), (1, 16, 16, 1))
    assert float(cross_entropy(labels, logits)) == pytest.approx(float(cross_entropy(labels, full)), rel=1e-6)


def test_sum_of_losses():
    weights = [1.0, 2.0, 3.0]
    loss = make_loss("wce+dice", ignore_index=255, class_weights=weights)
    expected = float(cross_entropy(LABELS, LOGITS, class_weights=weights)) + float(dice_loss(LABELS, LOGITS))
    assert float(loss(LABELS, LOGITS)) == pytest.approx(expected, rel=1e-6)
    assert float(make_loss("ce")(LABELS, LOGITS)) == pytest.approx((CE0 + CE1) / 2, rel=1e-5)


def test_lovasz_softmax_on_hard_predictions_is_one_minus_the_mean_iou():
    # On one-hot predictions the Lovasz extension is the Jaccard loss itself.
    # Labels 0 0 1 1, predictions 0 1 1 1: IoU 1/2 for class 0, 2/3 for class 1.
    labels = np.array([[[0, 0, 1, 1]]], np.int32)
    logits = np.where(np.eye(2)[[0, 1, 1, 1]] > 0, 50.0, -50.0).astype(np.float32)[None, None]
    assert float(lovasz_softmax(labels, logits, stride=1)) == pytest.approx(1 - (1 / 2 + 2 / 3) / 2, rel=1e-5)
    # Ignoring the wrongly predicted pixel leaves perfect predictions; a class absent from the
    # labels (class 2 here) does not count.
    ignored = np.array([[[0, 255, 1, 1]]], np.int32)
    three = np.concatenate([logits, np.full((1, 1, 4, 1), -50.0, np.float32)], axis=-1)
    assert float(lovasz_softmax(ignored, three, stride=1)) == pytest.approx(0.0, abs=1e-6)


def test_lovasz_softmax_gives_gradients_towards_the_right_class():
    logits = tf.Variable(np.zeros((1, 1, 4, 2), np.float32))
    labels = np.array([[[0, 0, 1, 1]]], np.int32)
    with tf.GradientTape() as tape:
        loss = lovasz_softmax(labels, logits, stride=1)
    gradient = tape.gradient(loss, logits).numpy()[0, 0]
    # Descending the gradient raises each pixel's true-class logit over the other.
    assert (gradient[[0, 1], 0] < gradient[[0, 1], 1]).all() and (gradient[[2, 3], 1] < gradient[[2, 3], 0]).all()


def test_ohem_keeps_the_hard_pixels_and_a_minimum_share():
    # True-class probabilities: pixel 0 0.79 (easy at 0.7), pixel 1 0.21 (hard).
    assert float(ohem_cross_entropy(LABELS, LOGITS, threshold=0.7, min_kept=0.0)) == pytest.approx(CE1, rel=1e-5)
    assert float(ohem_cross_entropy(LABELS, LOGITS, threshold=0.9, min_kept=0.0)) == pytest.approx((CE0 + CE1) / 2,
                                                                                                   rel=1e-5)  # fmt: skip
    # Nothing below 0.1, but at least half the pixels: the hardest one.
    assert float(ohem_cross_entropy(LABELS, LOGITS, threshold=0.1, min_kept=0.5)) == pytest.approx(CE1, rel=1e-5)
    assert float(ohem_cross_entropy(np.full((1, 1, 2), 255, np.int32), LOGITS)) == 0.0


def test_mixed_precision_logits_are_accepted():
    assert float(cross_entropy(LABELS, tf.cast(LOGITS, tf.float16))) == pytest.approx((CE0 + CE1) / 2, rel=1e-3)


def test_loss_names():
    assert parse_loss("wce+dice") == ("wce", "dice")
    with pytest.raises(EdgesegError, match="unknown loss 'tversky'"):
        parse_loss("ce+tversky")
    assert parse_loss("ce+lovasz") == ("ce", "lovasz")
    with pytest.raises(EdgesegError, match="repeats"):
        parse_loss("ce+ce")
    with pytest.raises(EdgesegError, match="needs class weights"):
        make_loss("wce")


def test_inverse_frequency_weights():
    counts = np.array([60, 30, 10, 0])
    weights = class_weights(counts, np.array([100, 100, 100, 0]), "inverse")
    # Three classes present: w = 1 / (3 f): f = 0.6, 0.3, 0.1; the absent class gets 1.
    np.testing.assert_allclose(weights, [1 / 1.8, 1 / 0.9, 1 / 0.3, 1.0], rtol=1e-6)
    assert np.sum(counts[:3] / 100 * weights[:3]) == pytest.approx(1.0)


def test_median_frequency_weights():
    # Frequencies where present: 60/100, 30/100, 10/50 = 0.6, 0.3, 0.2; median 0.3.
    weights = class_weights(np.array([60, 30, 10]), np.array([100, 100, 50]), "median")
    np.testing.assert_allclose(weights, [0.5, 1.0, 1.5], rtol=1e-6)
    assert class_weights(np.array([1, 2]), np.array([3, 3]), "none") is None
    soft = class_weights(np.array([60, 30, 10]), np.array([100, 100, 50]), "sqrt-median")
    np.testing.assert_allclose(soft, np.sqrt([0.5, 1.0, 1.5]), rtol=1e-6)


def test_explicit_weights():
    np.testing.assert_allclose(parse_class_weights("1,2.5,0", 3), [1, 2.5, 0])
    for text, message in (("1,2", "2 class weights given for 3"), ("1,x,2", "comma-separated"),
                          ("1,-1,2", "non-negative"), ("0,0,0", "not all zero")):  # fmt: skip
        with pytest.raises(EdgesegError, match=message):
            parse_class_weights(text, 3)
