"""`runtime.Segmenter`, `runtime.backend` and `runtime.inspect` on real (small) TFLite models."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from conftest import CAMVID_IGNORE, DEFAULT_BACKEND, TINY_INPUT, camvid_pairs

from runtime import EdgesegError, Segmenter
from runtime.inspect import describe, render
from runtime.metadata import embed_metadata
from runtime.palette import VOC_CLASSES, default_classes, default_colors, voc_color
from runtime.processing import normalize, resize_labels


def _solid_colors(weights: np.ndarray, bias: np.ndarray, margin: float = 0.15) -> list[tuple[np.ndarray, int]]:
    # Colours (BGR) whose class is clear: the best score beats the second by `margin`.
    chosen = []
    for rgb in itertools.product((0, 64, 128, 192, 255), repeat=3):
        scores = normalize(np.array(rgb, np.float32)) @ weights + bias
        best, second = np.sort(scores)[-1], np.sort(scores)[-2]
        if best - second > margin:
            chosen.append((np.array(rgb[::-1], np.uint8), int(np.argmax(scores))))
    return chosen


@pytest.mark.parametrize("name", ["int8", "int8_io", "int8_labels", "float32"])
def test_solid_frames_get_the_class_of_their_colour(tiny_models, name):
    segmenter = Segmenter(tiny_models[name], num_threads=1)
    cases = _solid_colors(tiny_models.weights, tiny_models.bias)
    assert len({label for _, label in cases}) >= 2, "the colour head should separate several classes"
    for bgr, expected in cases:
        frame = np.broadcast_to(bgr, (48, 64, 3)).copy()
        labels = segmenter.segment(frame)
        assert labels.shape == (48, 64) and labels.dtype == np.uint8
        assert (labels == expected).all(), f"colour {bgr[::-1]} (RGB) should be class {expected}"


@pytest.mark.parametrize("name, min_agreement", [("int8", 0.95), ("int8_io", 0.95), ("int8_labels", 0.95),
                                                 ("int8_meta", 0.95), ("float32", 0.999)])  # fmt: skip
def test_camvid_label_maps_match_the_float_model(tiny_models, camvid, name, min_agreement):
    segmenter = Segmenter(tiny_models[name], num_threads=1)
    for image_path, _ in camvid_pairs("val", 6):
        frame = cv2.imread(str(image_path))
        labels = segmenter.segment(frame)
        assert labels.shape == frame.shape[:2]
        reference = resize_labels(tiny_models.reference_labels(frame), frame.shape[:2])
        assert (labels == reference).mean() >= min_agreement, image_path.name


def test_int8_model_segments_camvid_as_well_as_float(tiny_models, camvid):
    # The colour head is weak, but it beats "everything is the largest class"; int8 must keep that.
    segmenter = Segmenter(tiny_models["int8"], num_threads=1)
    correct_int8 = correct_float = total = 0
    counts = np.zeros(256, np.int64)
    for image_path, mask_path in camvid_pairs("val", 10):
        frame, mask = cv2.imread(str(image_path)), cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        keep = mask != CAMVID_IGNORE
        labels = segmenter.segment(frame)
        reference = resize_labels(tiny_models.reference_labels(frame), frame.shape[:2])
        correct_int8 += int((labels == mask)[keep].sum())
        correct_float += int((reference == mask)[keep].sum())
        total += int(keep.sum())
        counts += np.bincount(mask[keep], minlength=256)
    majority = counts.max() / total
    assert correct_int8 / total >= correct_float / total - 0.02
    assert correct_int8 / total >= majority + 0.03


def test_model_without_metadata_gets_inferred_settings(tiny_models):
    segmenter = Segmenter(tiny_models["int8"], num_threads=2)
    spec = segmenter.spec
    assert spec.input_size == TINY_INPUT and spec.raw_pixels and spec.output_kind == "logits"
    assert not spec.from_metadata
    count = len(tiny_models.classes)
    assert segmenter.classes == default_classes(count) and segmenter.colors == default_colors(count)
    assert segmenter.backend == DEFAULT_BACKEND and segmenter.num_threads == 2
    info = segmenter.describe()
    assert info["input"].startswith("uint8[1, 97, 129, 3]") and info["output"].startswith("int8[1, 25, 33,")
    int8_io = Segmenter(tiny_models["int8_io"], num_threads=1)
    assert int8_io.spec.input.dtype == np.int8 and not int8_io.spec.raw_pixels


def test_labels_model_defaults_to_voc_classes(tiny_models):
    segmenter = Segmenter(tiny_models["int8_labels"], num_threads=1)
    assert segmenter.spec.output_kind == "labels"
    assert segmenter.classes == list(VOC_CLASSES)
    assert segmenter.palette_bgr.shape == (256, 3)  # any label value can be drawn


def test_metadata_gives_classes_colours_and_normalization(tiny_models):
    segmenter = Segmenter(tiny_models["int8_meta"], num_threads=1)
    metadata = tiny_models.metadata()
    assert segmenter.spec.from_metadata
    assert segmenter.classes == metadata["classes"]
    assert segmenter.colors == [tuple(color) for color in metadata["colors"]]
    assert segmenter.spec.ignore_index == CAMVID_IGNORE
    red, green, blue = segmenter.colors[2]
    np.testing.assert_array_equal(segmenter.palette_bgr[2], [blue, green, red])


@pytest.mark.parametrize(
    "change, message",
    [({"input_size": [65, 65]}, "input_size"), ({"classes": ["a", "b"]}, "classes"),
     ({"output_kind": "labels"}, "output_kind"), ({"normalization": {"std": [0, 1, 1]}}, "std must be positive"),
     ({"colors": [[1, 2, 3]]}, "colours"), ({"input_size": 97}, "input_size must be")],  # fmt: skip
)
def test_metadata_contradicting_the_tensors_is_refused(tiny_models, tmp_path, change, message):
    path = tmp_path / "bad_meta.tflite"
    path.write_bytes(embed_metadata(tiny_models["int8"].read_bytes(), {**tiny_models.metadata(), **change}))
    with pytest.raises(EdgesegError, match=message):
        Segmenter(path)


@pytest.mark.parametrize("name, shape", [("classifier", r"\(1, 1000\)"), ("grayscale", r"\(1, 65, 65, 1\)")])
def test_non_segmentation_models_are_refused_in_one_line(tiny_models, name, shape):
    with pytest.raises(EdgesegError, match=f"not a segmentation model.*{shape}") as error:
        Segmenter(tiny_models[name])
    assert "\n" not in str(error.value)


def test_missing_and_non_tflite_files_are_refused(tmp_path):
    with pytest.raises(EdgesegError, match="not found"):
        Segmenter(tmp_path / "missing.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer at all")
    with pytest.raises(EdgesegError, match="not a TFLite model"):
        Segmenter(junk)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 8)
    with pytest.raises(EdgesegError, match="damaged TFLite model: offset 28 is outside the 16-byte file"):
        Segmenter(truncated)


def test_backend_and_delegate_choices(tiny_models):
    path = tiny_models["int8"]
    assert Segmenter(path, backend="ai_edge_litert").backend == "ai_edge_litert"
    with pytest.raises(EdgesegError, match="choose one of: ai_edge_litert, tflite_runtime, tensorflow"):
        Segmenter(path, backend="onnx")
    with pytest.raises(EdgesegError, match="Edge TPU"):
        Segmenter(path, delegate="edgetpu")  # no libedgetpu on a CI machine
    with pytest.raises(EdgesegError, match="num_threads"):
        Segmenter(path, num_threads=0)
    # Without XNNPACK (reference kernels) the result is the same.
    frame = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    plain = Segmenter(path, num_threads=1, delegate="none").segment(frame)
    assert (plain == Segmenter(path, num_threads=1).segment(frame)).mean() > 0.99


def test_timing_and_overlay(tiny_models):
    segmenter = Segmenter(tiny_models["int8_meta"], num_threads=1)
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    labels = segmenter.segment(frame)
    timing = segmenter.last_timing
    assert timing.pre_ms > 0 and timing.invoke_ms > 0 and timing.post_ms > 0
    assert timing.total_ms == pytest.approx(timing.pre_ms + timing.invoke_ms + timing.post_ms)
    np.testing.assert_array_equal(segmenter.overlay(frame, labels, alpha=0.0), frame)
    np.testing.assert_array_equal(segmenter.overlay(frame, labels, alpha=1.0), segmenter.colorize(labels))
    assert segmenter.overlay(frame, labels).shape == frame.shape
    with pytest.raises(ValueError):
        segmenter.overlay(frame, labels, alpha=1.5)
    with pytest.raises(ValueError):
        segmenter.overlay(frame[:10], labels)
    with pytest.raises(ValueError):
        segmenter.segment(frame.astype(np.float32))


def test_describe_lists_tensors_ops_and_metadata(tiny_models):
    # LiteRT named: tflite-runtime 2.14's XNNPACK takes no int8 op, so its delegation differs.
    info = describe(tiny_models["int8_meta"], backend="ai_edge_litert")
    (tensor_in,), (tensor_out,) = info["inputs"], info["outputs"]
    assert tensor_in["dtype"] == "uint8" and tensor_in["shape"] == [1, *TINY_INPUT, 3]
    assert tensor_in["quantization"]["scale"] == pytest.approx(2 / 255, rel=0.01)
    assert tensor_out["dtype"] == "int8" and tensor_out["quantization"] is not None
    ops = {op["op"]: op for op in info["ops"]}
    assert ops["CONV_2D"]["inputs"] == ["int8", "int8", "int32"] and ops["CONV_2D"]["count"] == 1
    assert ops["AVERAGE_POOL_2D"]["count"] == 2 and ops["QUANTIZE"]["inputs"] == ["uint8"]
    assert "DELEGATE" not in ops and info["delegation"]["delegate_nodes"] == 1
    assert "CONV_2D" not in {op["op"] for op in info["delegation"]["outside"]}  # XNNPACK runs it
    assert "QUANTIZE" in {op["op"] for op in info["delegation"]["outside"]}
    assert info["metadata"]["classes"] == list(tiny_models.classes)
    text = render(info)
    assert "CONV_2D" in text and "uint8[1, 97, 129, 3]" in text and "output_stride: 4" in text
    assert describe(tiny_models["float32"])["delegation"]["outside"] == []
    assert describe(tiny_models["int8"])["metadata"] is None


def test_palettes():
    assert voc_color(0) == (0, 0, 0) and voc_color(1) == (128, 0, 0) and voc_color(15) == (192, 128, 128)
    assert default_classes(21)[15] == "person" and default_classes(3) == ["class 0", "class 1", "class 2"]
    colors = default_colors(40)
    assert len(set(colors)) == 40
