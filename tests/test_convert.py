"""`edgeseg convert`: int8 everywhere, inside XNNPACK, self-describing, atomic, and faithful."""

import json
import shutil

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

tf = pytest.importorskip("tensorflow")

from conftest import CAMVID, CAMVID_CLASSES, CAMVID_IGNORE, camvid_pairs  # noqa: E402
from edgeseg.cli import app  # noqa: E402
from edgeseg.model import build_model, load_model, save_model  # noqa: E402
from edgeseg.presets import get_config  # noqa: E402
from runtime import Segmenter  # noqa: E402
from runtime.metadata import read_metadata  # noqa: E402
from runtime.processing import labels_from_output, prepare_input  # noqa: E402

runner = CliRunner()
TINY = ["--alpha", "0.35", "--input-size", "97x129", "--backbone-weights", "none", "--classes", "5"]


def _lines(result):
    return [line for line in result.output.splitlines() if line.strip()]


def _convert(args, tmp_path, name="m.tflite"):
    out = tmp_path / name
    result = runner.invoke(app, ["convert", *args, "--out", str(out), "--report", str(tmp_path / "r.json")])
    return result, out


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    result, out = _convert([*TINY, "--strict-int8"], folder)
    assert result.exit_code == 0, result.output
    return out, json.loads((folder / "r.json").read_text()), result.output


def test_default_conversion_is_int8_inside_one_xnnpack_partition(tiny_int8):
    out, report, _ = tiny_int8
    ops = report["ops"]
    assert ops["float_ops"] == [] and ops["quantize_ops"] == []
    assert len(ops["boundary_ops"]) == 1 and ops["boundary_ops"][0].startswith("QUANTIZE")
    assert ops["delegate_partitions"] == 1
    assert [o["op"] for o in ops["outside_delegate"]] == ["QUANTIZE"]
    for op in ops["ops"]:
        if op["op"] != "QUANTIZE":
            assert set(op["inputs"] + op["outputs"]) <= {"int8", "int32"}, op
    assert report["size_ratio"] <= 0.3
    assert report["latency"]["converted"]["invoke_ms"] > 0 and report["latency"]["ratio"] > 0
    assert report["io"] == "uint8" and report["output_kind"] == "logits"
    assert report["calibration"]["images"] > 50
    assert report["bias_corrected_layers"] > 40  # every convolution of the network


def test_calibration_coverage_comes_from_the_child_process(tiny_int8, tmp_path):
    _, report, _ = tiny_int8
    coverage = report["coverage"]
    assert coverage["images"] == report["calibration"]["images"]
    assert len(coverage["pixels_per_class"]) == 5 and sum(coverage["pixels_per_class"]) == pytest.approx(1.0)
    missing = [f"class {i}" for i, share in enumerate(coverage["pixels_per_class"]) if share == 0]
    assert len(coverage["missing"]) == len(missing)
    from converters.report import BackgroundCoverage
    from runtime.errors import EdgesegError

    failing = BackgroundCoverage(tmp_path / "absent.tflite", [], ["a", "b"])
    with pytest.raises(EdgesegError, match="class-coverage check failed") as error:
        failing.result()
    assert "\n" not in str(error.value)
    failing.stop()  # already ended: nothing to do


def test_output_is_self_describing_and_runs_on_raw_pixels(tiny_int8):
    out, _, _ = tiny_int8
    metadata = read_metadata(out)
    assert metadata["input_size"] == [97, 129] and metadata["output_stride"] == 4
    assert metadata["output_kind"] == "logits" and metadata["quantization"] == "int8"
    assert metadata["normalization"] == {"mean": [127.5] * 3, "std": [127.5] * 3}
    assert len(metadata["classes"]) == len(metadata["colors"]) == 5
    assert metadata["config"]["backbone_alpha"] == 0.35
    segmenter = Segmenter(out)
    assert segmenter.spec.raw_pixels  # the normalisation is folded into the input quantization
    labels = segmenter.segment(np.full((48, 64, 3), 120, np.uint8))
    assert labels.shape == (48, 64) and labels.max() < 5


def test_output_has_the_serving_signature_keras_models_convert_with(tiny_int8):
    from ai_edge_litert.interpreter import Interpreter

    out, _, _ = tiny_int8
    interpreter = Interpreter(model_path=str(out))
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["output_0"]}}
    frame = np.random.default_rng(0).integers(0, 256, (1, 97, 129, 3), dtype=np.uint8)
    by_signature = interpreter.get_signature_runner()(image=frame)["output_0"]
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], frame)
    interpreter.invoke()
    np.testing.assert_array_equal(by_signature, interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def test_report_table_names_what_it_proves(tiny_int8):
    _, _, text = tiny_int8
    for fragment in ("CONV_2D", "float ops in graph          0", "XNNPACK partitions          1",
                     "size", "invoke latency", "pixel agreement"):
        assert fragment in text


def test_info_shows_metadata_and_ops(tiny_int8):
    out, _, _ = tiny_int8
    result = runner.invoke(app, ["info", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["metadata"]["input_size"] == [97, 129]
    assert any(op["op"] == "CONV_2D" for op in info["ops"])


def test_labels_output_kind_puts_argmax_in_the_graph(tmp_path):
    result, out = _convert([*TINY, "--output-kind", "labels"], tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert any(op["op"] == "ARG_MAX" for op in report["ops"]["ops"])
    segmenter = Segmenter(out)
    assert segmenter.spec.output_kind == "labels"
    assert segmenter.segment(np.zeros((30, 40, 3), np.uint8)).shape == (30, 40)


@pytest.mark.parametrize(("args", "input_dtype"), [
    (["--io", "int8"], np.int8),
    (["--io", "float32"], np.float32),
    (["--quantization", "float16"], np.float32),
    (["--quantization", "dynamic"], np.float32),
    (["--quantization", "float32"], np.float32),
    (["--no-bias-correction"], np.uint8),
])
def test_other_modes_run_through_the_runtime(tmp_path, args, input_dtype):
    result, out = _convert([*TINY, "--num-calibration", "8", *args], tmp_path)
    assert result.exit_code == 0, result.output
    segmenter = Segmenter(out)
    assert segmenter.spec.input.dtype == input_dtype
    assert segmenter.segment(np.zeros((30, 40, 3), np.uint8)).shape == (30, 40)
    corrected = json.loads((tmp_path / "r.json").read_text())["bias_corrected_layers"]
    int8_corrected = "--quantization" not in args and "--no-bias-correction" not in args
    assert (corrected > 0) == int8_corrected  # int8 only, unless turned off


def test_keras_model_rebuilt_at_another_input_size(tmp_path):
    config = get_config("deeplabv3plus_mnv2", num_classes=4, input_size=(65, 65), backbone_alpha=0.35)
    model_path = save_model(build_model(config), tmp_path / "m.keras")
    result, out = _convert([str(model_path), "--input-size", "97x129", "--num-calibration", "8"], tmp_path)
    assert result.exit_code == 0, result.output
    assert read_metadata(out)["input_size"] == [97, 129]
    assert Segmenter(out).spec.input.shape == (1, 97, 129, 3)


def test_few_and_unreadable_calibration_images_are_reported(tmp_path):
    calibration = tmp_path / "calib"
    (calibration / "nested").mkdir(parents=True)
    for index in range(6):
        cv2.imwrite(str(calibration / "nested" / f"{index}.png"), np.full((40, 50, 3), index * 40, np.uint8))
    (calibration / "broken.jpg").write_bytes(b"not a jpeg")
    result, _ = _convert([*TINY, "--calibration", str(calibration)], tmp_path)
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable" in result.output and "only 5 usable calibration images" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["calibration"] == {"folder": str(calibration), "images": 5, "held_out": 1, "skipped": 1}


def _write_classifier(path):
    import keras

    inputs = keras.Input((32, 32, 3), batch_size=1)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(path)


@pytest.mark.parametrize("case", ["missing", "not_keras", "classifier", "empty_calibration", "no_images",
                                  "masks_mismatch", "unwritable", "io_conflict", "strict_float16"])
def test_bad_input_is_one_line_exit_1_and_keeps_the_previous_file(tmp_path, case):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"previous good model")
    args = [*TINY]
    if case == "missing":
        args = [str(tmp_path / "absent.keras")]
    elif case == "not_keras":
        (tmp_path / "fake.keras").write_text("hello")
        args = [str(tmp_path / "fake.keras")]
    elif case == "classifier":
        _write_classifier(tmp_path / "classifier.keras")
        args = [str(tmp_path / "classifier.keras")]
    elif case == "empty_calibration":
        (tmp_path / "empty").mkdir()
        args += ["--calibration", str(tmp_path / "empty")]
    elif case == "no_images":
        (tmp_path / "texts").mkdir()
        (tmp_path / "texts" / "a.jpg").write_text("not an image")
        args += ["--calibration", str(tmp_path / "texts")]
    elif case == "masks_mismatch":
        (tmp_path / "images").mkdir()
        (tmp_path / "masks").mkdir()
        cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((20, 20, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "masks" / "b.png"), np.zeros((20, 20), np.uint8))
        args += ["--val-images", str(tmp_path / "images"), "--val-masks", str(tmp_path / "masks")]
    elif case == "unwritable":
        out = tmp_path / "missing-folder" / "m.tflite"
    elif case == "io_conflict":
        args += ["--quantization", "float16", "--io", "uint8"]
    elif case == "strict_float16":
        args += ["--quantization", "float16", "--strict-int8"]
    result = runner.invoke(app, ["convert", *args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    lines = _lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    if case != "unwritable":
        assert out.read_bytes() == b"previous good model"
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_ctrl_c_mid_conversion_exits_130_and_leaves_nothing(tmp_path, monkeypatch):
    import converters.convert

    out = tmp_path / "m.tflite"
    out.write_bytes(b"previous good model")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(converters.convert.report, "latency", interrupted)  # after the file is written
    result = runner.invoke(app, ["convert", *TINY, "--num-calibration", "8", "--out", str(out)])
    assert result.exit_code == 130
    assert out.read_bytes() == b"previous good model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]


# === A model trained a little on CamVid: the converted model must agree with the float one ===

SIZE = (96, 128)
IMAGENET = CAMVID.parent.parent / "weights" / "mobilenet_v2_1.0_no_top_imagenet_q8.weights.h5"


def _camvid_arrays(split, count):
    images, masks = [], []
    for image_path, mask_path in camvid_pairs(split, count):
        images.append(cv2.resize(cv2.imread(str(image_path)), SIZE[::-1], interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE), SIZE[::-1],
                                interpolation=cv2.INTER_NEAREST))  # fmt: skip
    return np.stack(images), np.stack(masks)


@pytest.fixture(scope="module")
def trained_camvid_model(tmp_path_factory):
    if not CAMVID.is_dir() or not IMAGENET.is_file():
        pytest.skip("CamVid data or the ImageNet weights of ../shared are absent")
    import keras

    folder = tmp_path_factory.mktemp("trained")
    config = get_config("deeplabv3plus_mnv2", num_classes=len(CAMVID_CLASSES), input_size=SIZE,
                        aspp_filters=64, decoder_filters=64, aspp_dropout=0.0)
    model = build_model(config, backbone_weights=IMAGENET)
    for layer in model.layers:  # batch-1 steps: keep every batch norm on its stored statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    images, masks = _camvid_arrays("train", 24)
    inputs = (images[..., ::-1].astype(np.float32) - 127.5) / 127.5
    targets = cv2.resize(masks.transpose(1, 2, 0), (SIZE[1] // 4, SIZE[0] // 4),
                         interpolation=cv2.INTER_NEAREST).transpose(2, 0, 1)
    weights = (targets != CAMVID_IGNORE).astype(np.float32)
    targets = np.where(targets == CAMVID_IGNORE, 0, targets)
    keras.utils.set_random_seed(0)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(inputs, targets, sample_weight=weights, batch_size=1, epochs=8, verbose=0)
    path = save_model(model, folder / "trained.keras")
    (folder / "classes.json").write_text(json.dumps({"classes": list(CAMVID_CLASSES),
                                                     "ignore_index": CAMVID_IGNORE}))  # fmt: skip
    return path


@pytest.mark.slow
def test_trained_model_int8_agrees_with_float_on_camvid(trained_camvid_model, tmp_path):
    calibration = tmp_path / "calib"
    calibration.mkdir()
    for image_path, _ in camvid_pairs("train", 60):
        shutil.copy(image_path, calibration / image_path.name)
    val_images, val_masks = tmp_path / "val", tmp_path / "valannot"
    val_images.mkdir(), val_masks.mkdir()
    for image_path, mask_path in camvid_pairs("val", 12):
        shutil.copy(image_path, val_images / image_path.name)
        shutil.copy(mask_path, val_masks / mask_path.name)
    result, out = _convert([str(trained_camvid_model), "--calibration", str(calibration), "--strict-int8"], tmp_path)
    assert result.exit_code == 0, result.output
    agreement = json.loads((tmp_path / "r.json").read_text())["fidelity"]["pixel_agreement"]
    assert agreement > 0.9  # a briefly trained model has many near-ties, which may flip either way
    # Where the float model is sure (its top two logits 1.0 or more apart), int8 gives the same class.
    model, segmenter = load_model(trained_camvid_model), Segmenter(out)
    same, sure = [], []
    for image_path, _ in camvid_pairs("val", 12):
        frame = cv2.imread(str(image_path))
        logits = np.asarray(model(prepare_input(frame, segmenter.spec.input_size), training=False))[0]
        labels = labels_from_output(segmenter.invoke(segmenter.preprocess(frame)), segmenter.spec.output.quantization)
        top_two = np.sort(logits, axis=-1)[..., -2:]
        sure.append(top_two[..., 1] - top_two[..., 0] >= 1.0)
        same.append(logits.argmax(-1) == labels.reshape(logits.shape[:2]))
    same, sure = np.stack(same), np.stack(sure)
    assert sure.mean() > 0.2, f"only {sure.mean():.0%} of the pixels are confident: the model barely trained"
    assert same[sure].mean() > 0.995
    metadata = read_metadata(out)
    assert metadata["classes"] == list(CAMVID_CLASSES) and metadata["ignore_index"] == CAMVID_IGNORE

    result, _ = _convert([str(trained_camvid_model), "--calibration", str(calibration),
                          "--val-images", str(val_images), "--val-masks", str(val_masks)], tmp_path, "v.tflite")
    assert result.exit_code == 0, result.output
    fidelity = json.loads((tmp_path / "r.json").read_text())["fidelity"]
    assert fidelity["images"] == 12
    assert fidelity["float_miou"] > 0.1  # it learned something (one class everywhere scores < 0.05)
    assert abs(fidelity["miou_drop"]) < 0.02
    assert [row["class"] for row in fidelity["per_class"]] == list(CAMVID_CLASSES)


# === Fidelity on labelled images: scored by edgeseg.metrics, an absent class is null ===


def test_fidelity_scores_absent_classes_as_null(tiny_models, tmp_path):
    from converters.report import fidelity_on_masks
    from edgeseg.datasets import scan_dataset
    from runtime.bench import synthetic_frame

    classes = list(tiny_models.classes)
    float_model = Segmenter(tiny_models["float32"], num_threads=1)  # as fidelity_on_masks below runs it
    int8_model = Segmenter(tiny_models["int8"], num_threads=1)
    for folder in ("images", "own", "ignored"):
        (tmp_path / folder).mkdir()
    predicted, int8_predicted = set(), set()
    for seed in range(3):
        frame = synthetic_frame((97, 129), seed=seed)
        labels = float_model.segment(frame)  # the float model's own labels as the truth
        predicted |= set(np.unique(labels).tolist())
        int8_predicted |= set(np.unique(int8_model.segment(frame)).tolist())
        cv2.imwrite(str(tmp_path / "images" / f"{seed}.png"), frame)
        cv2.imwrite(str(tmp_path / "own" / f"{seed}.png"), labels)
        cv2.imwrite(str(tmp_path / "ignored" / f"{seed}.png"), np.full(labels.shape, 255, np.uint8))

    info = scan_dataset(tmp_path / "images", tmp_path / "own", len(classes), 255)
    fidelity = fidelity_on_masks(tiny_models["float32"], tiny_models["int8"], info, classes, 255, 1)
    assert fidelity["images"] == 3 and fidelity["float_miou"] == 1.0
    for index, row in enumerate(fidelity["per_class"]):
        assert row["float_iou"] == (1.0 if index in predicted else None), row
        assert (row["converted_iou"] is None) == (index not in predicted | int8_predicted), row
        assert (row["drop"] is None) == (row["float_iou"] is None or row["converted_iou"] is None), row
    assert json.loads(json.dumps(fidelity)) == fidelity  # no NaN in the report

    nothing = scan_dataset(tmp_path / "images", tmp_path / "ignored", len(classes), 255)
    fidelity = fidelity_on_masks(tiny_models["float32"], tiny_models["int8"], nothing, classes, 255, 1)
    assert (fidelity["float_miou"], fidelity["converted_miou"], fidelity["miou_drop"]) == (None, None, None)
    assert all(row[key] is None for row in fidelity["per_class"] for key in ("float_iou", "converted_iou", "drop"))


def test_fidelity_masks_are_read_as_training_reads_them(tmp_path):
    """Colour masks (the model's class colours) and a label map, as `train` and `eval` read them."""
    from converters.convert import Options, _validation_set

    colors = [[0, 0, 0], [128, 64, 128], [220, 20, 60]]
    rng = np.random.default_rng(0)
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    labels = rng.integers(0, 3, (20, 30), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "images/a.png"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    colour = np.array(colors, np.uint8)[labels]
    colour[0, 0] = (255, 255, 255)  # unlabelled: the label map ignores it
    cv2.imwrite(str(tmp_path / "masks/a.png"), colour[..., ::-1])
    (tmp_path / "map.txt").write_text("255,255,255 ignore\n")
    options = Options(out=tmp_path / "m.tflite", val_images=tmp_path / "images", val_masks=tmp_path / "masks",
                      val_label_map=tmp_path / "map.txt")  # fmt: skip
    info = _validation_set(options, {"classes": ["a", "b", "c"], "colors": colors, "ignore_index": None})
    expected = labels.copy()
    expected[0, 0] = 255
    assert info.decoding.format == "color"
    np.testing.assert_array_equal(info.read_pair(0)[1], expected)
    # A bad label map is one line, before any conversion.
    result = runner.invoke(app, ["convert", "--preset", "deeplabv3plus_mnv2", "--classes", "3", "--alpha", "0.35",
                                 "--backbone-weights", "none", "--val-images", str(tmp_path / "images"), "--val-masks", str(tmp_path / "masks"),
                                 "--val-label-map", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "m.tflite")])
    assert result.exit_code == 1 and _lines(result) == [f"error: label map {tmp_path / 'nope.txt'} does not exist"]
