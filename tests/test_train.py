"""`edgeseg train` as a user runs it, on tiny models and a handful of CamVid frames."""

import csv
import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("tensorflow")

from edgeseg import checkpoint, loop, optimization  # noqa: E402
from edgeseg.cli import app  # noqa: E402
from edgeseg.model import resize_model  # noqa: E402
from runtime.errors import EdgesegError  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
CAMVID = SHARED / "data/camvid"
WEIGHTS = SHARED / "weights/mobilenet_v2_1.0_no_top_imagenet_q8.weights.h5"
needs_camvid = pytest.mark.skipif(not CAMVID.is_dir(), reason="../shared/data/camvid is absent")
runner = CliRunner()


def _error_lines(result):
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    """Six training and two validation CamVid frames (360x480), copied to a temporary folder."""
    if not CAMVID.is_dir():
        pytest.skip("../shared/data/camvid is absent")
    root = tmp_path_factory.mktemp("camvid")
    for split, count in (("train", 6), ("val", 2)):
        for folder in (split, split + "annot"):
            (root / folder).mkdir()
        for name in sorted((CAMVID / split).iterdir())[:count]:
            shutil.copy(name, root / split / name.name)
            shutil.copy(CAMVID / (split + "annot") / name.name, root / (split + "annot") / name.name)
    shutil.copy(CAMVID / "classes.txt", root / "classes.txt")
    return root


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--images", str(data / "train"), "--masks", str(data / "trainannot"),
            "--val-images", str(data / "val"), "--val-masks", str(data / "valannot"),
            "--classes-file", str(data / "classes.txt"), "--ignore-index", "11", "--alpha", "0.35",
            "--input-size", "65x65", "--backbone-weights", "none", "--batch-size", "2", "--epochs", "2",
            "--out", str(out), *extra]  # fmt: skip


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_writes_the_run_folder(camvid, tmp_path):
    from edgeseg.model import config_of, load_model

    out = tmp_path / "run"
    result = runner.invoke(app, tiny_args(camvid, out, "--loss", "wce+dice", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 2 and summary["steps"] == 6
    scored = [row["val_miou"] for row in summary["history"]]
    assert summary["best_miou"] == max(scored) and summary["best_epoch"] == 1 + scored.index(max(scored))
    for name in ("best.keras", "last.keras", "history.csv", "curves.png", "classes.json"):
        assert (out / name).is_file(), name
    rows = read_history(out / "history.csv")
    assert [row["epoch"] for row in rows] == ["1", "2"] and all(row["val_miou"] for row in rows)
    assert float(rows[1]["loss"]) > 0
    curves = cv2.imread(str(out / "curves.png"))
    assert curves is not None and curves.shape[2] == 3
    tags = tensorboard_tags(out / "tensorboard")
    assert tags["step/loss"] == list(range(1, 7)) and tags["step/learning_rate"] == list(range(1, 7))
    assert tags["epoch/val_miou"] == [3, 6] and tags["epoch/loss"] == [3, 6]
    assert tags["val_iou/Road"] == [3, 6]  # a class both validation frames hold
    overlays = [tag for tag in tags if tag.startswith("val_overlay/")]
    assert len(overlays) == 2 and all(tags[tag] == [3, 6] for tag in overlays)
    classes = json.loads((out / "classes.json").read_text())
    assert classes["classes"][2] == "Pole" and classes["colors"][2] == [192, 192, 128]
    assert classes["ignore_index"] == 11 and classes["input_size"] == [360, 480]
    # best.keras is at the validation images' size, ready for eval and convert.
    best = load_model(out / "best.keras")
    assert tuple(best.input.shape[1:3]) == (360, 480) and config_of(best).backbone_alpha == 0.35
    # best.keras is the model that scored best: scored again, it gives the same mIoU.
    from edgeseg.evaluation import evaluate

    again = evaluate(out / "best.keras", camvid / "val", camvid / "valannot").results[0].metrics.miou
    assert again == pytest.approx(summary["best_miou"], abs=1e-6)
    with zipfile.ZipFile(out / "last.keras") as archive:
        state = json.loads(archive.read(checkpoint.STATE_MEMBER))
        assert checkpoint.OPTIMIZER_MEMBER in archive.namelist()
    assert state["step"] == 6 and len(state["history"]) == 2
    assert state["settings"]["class_weights"] is not None  # wce defaults to median frequency


def tensorboard_tags(folder: Path) -> dict[str, list[int]]:
    """The steps of every tag in the TensorBoard event files of `folder`."""
    import tensorflow as tf

    tags = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


@needs_camvid
def test_without_validation_frames_best_keras_is_at_the_training_frames_size(camvid, tmp_path):
    from edgeseg.model import load_model

    args = tiny_args(camvid, tmp_path / "run", "--epochs", "1")
    at = args.index("--val-images")
    result = runner.invoke(app, args[:at] + args[at + 4:])  # no --val-images / --val-masks
    assert result.exit_code == 0, result.output
    # Its batch-norm statistics re-estimated on whole 360x480 frames, as it will be deployed.
    assert tuple(load_model(tmp_path / "run" / "best.keras").input.shape[1:3]) == (360, 480)
    assert json.loads((tmp_path / "run" / "classes.json").read_text())["input_size"] == [360, 480]


@needs_camvid
@pytest.mark.slow
def test_interrupted_run_resumes_where_it_stopped(camvid, tmp_path, monkeypatch):
    from edgeseg.model import load_model

    straight = tmp_path / "straight"
    assert runner.invoke(app, tiny_args(camvid, straight)).exit_code == 0

    # Ctrl-C after step 4 of 6 (in the second epoch): last.keras is saved, exit code 130.
    original = loop.fit

    def interrupted(*args, **kwargs):
        def press_ctrl_c(step):
            if step == 4:
                raise KeyboardInterrupt
        return original(*args, **kwargs, on_step=press_ctrl_c)

    monkeypatch.setattr(loop, "fit", interrupted)
    out = tmp_path / "resumed"
    result = runner.invoke(app, tiny_args(camvid, out))
    assert result.exit_code == 130, result.output
    assert "continue with --resume" in result.output
    with zipfile.ZipFile(out / "last.keras") as archive:
        state = json.loads(archive.read(checkpoint.STATE_MEMBER))
    assert state["step"] == 4 and len(state["history"]) == 1
    monkeypatch.setattr(loop, "fit", original)

    again = runner.invoke(app, tiny_args(camvid, out))
    assert again.exit_code == 1 and "--resume" in again.output  # refuses to overwrite the run
    result = runner.invoke(app, tiny_args(camvid, out, "--resume"))
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "epoch 2, step 4" in result.output
    assert len(read_history(out / "history.csv")) == 2
    # Same data order, augmentations, optimizer state and schedule: the same weights.
    for a, b in zip(load_model(straight / "last.keras").get_weights(), load_model(out / "last.keras").get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@needs_camvid
def test_resume_refuses_changed_options(camvid, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, tiny_args(camvid, out, "--epochs", "1")).exit_code == 0
    result = runner.invoke(app, tiny_args(camvid, out, "--resume", "--lr", "0.1"))
    assert result.exit_code == 1
    assert "--lr 0.1 (was 0.001)" in result.output and len(_error_lines(result)) == 1
    result = runner.invoke(app, tiny_args(camvid, out, "--resume", "--epochs", "1"))
    assert result.exit_code == 1 and "already trained 1 epochs" in result.output


# === Bad input: one line naming the file (and value), exit 1 ===


def _tiny_dataset(root: Path, count: int = 3) -> Path:
    for folder in ("train", "trainannot", "val", "valannot"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for index in range(count):
            cv2.imwrite(str(root / split / f"f{index}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
            cv2.imwrite(str(root / (split + "annot") / f"f{index}.png"), rng.integers(0, 3, (40, 48), dtype=np.uint8))
    (root / "classes.txt").write_text("a\nb\nc\n")
    return root


@pytest.mark.parametrize(("damage", "message"), [
    ("image_without_mask", "image {root}/train/f1.png has no mask: expected {root}/trainannot/f1.png"),
    ("mask_without_image", "mask {root}/valannot/f1.png has no image in {root}/val"),
    ("size_mismatch", "mask {root}/trainannot/f1.png is 40x47 but image {root}/train/f1.png is 40x48"),
    ("unreadable_image", "cannot read training image {root}/train/f1.png: not a valid image file"),
    ("bad_value", "mask {root}/valannot/f1.png has value 9 (row 2, column 5), which is neither a class (0-2) "
                  "nor the ignore index 255"),
])  # fmt: skip
def test_bad_data_gives_one_line_and_exit_1(tmp_path, damage, message):
    root = _tiny_dataset(tmp_path / "data")
    if damage == "image_without_mask":
        (root / "trainannot/f1.png").unlink()
    elif damage == "mask_without_image":
        (root / "val/f1.png").unlink()
    elif damage == "size_mismatch":
        cv2.imwrite(str(root / "trainannot/f1.png"), np.zeros((40, 47), np.uint8))
    elif damage == "unreadable_image":
        (root / "train/f1.png").write_bytes(b"not a png")
    elif damage == "bad_value":
        mask = cv2.imread(str(root / "valannot/f1.png"), cv2.IMREAD_UNCHANGED)
        mask[2, 5] = 9
        cv2.imwrite(str(root / "valannot/f1.png"), mask)
    args = tiny_args(root, tmp_path / "run")
    args[args.index("--ignore-index") + 1] = "255"
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: {message.format(root=root)}"), result.output
    assert not (tmp_path / "run" / "last.keras").exists()


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--classes", "3"], "give --classes-file or --classes, not both"),
    (["--model", "m.keras"], "--alpha, --backbone-weights build a model from a preset"),
    (["--loss", "wce", "--class-weights", "none"], "needs class weights"),
    (["--class-weights", "median"], "--class-weights applies to the wce and focal losses"),
    (["--loss", "tversky"], "unknown loss 'tversky'"),
    (["--class-weights", "1,2", "--loss", "wce"], "2 class weights given for 3 classes"),
    (["--ignore-index", "1"], "ignore index 1 is one of the 3 classes"),
    (["--resume"], "nothing to resume"),
    (["--input-size", "20x20"], "too small for output stride 16"),
    (["--scale-range", "2"], "not MIN,MAX"),
    (["--ema", "1"], "--ema 1.0 must be at least 0 (no average) and below 1"),
    (["--preset", "unet"], "unknown preset 'unet'"),
    (["--val-prefix", "f"], "--val-prefix picks the validation images out of --images; give it without --val-images "
                            "and --val-list"),
    (["--val-prefix", ","], "--val-prefix ',' has an empty prefix"),
    (["--train-list", "nope.txt"], "list file nope.txt does not exist"),
    (["--mask-format", "color"], "is a grey PNG, but the masks are read as color PNGs (as given); give every mask "
                                 "one format, or choose it with --mask-format index|palette|color"),
    (["--label-map", "nope.txt"], "label map nope.txt does not exist"),
    (["--classes-file", "nope.txt"], "classes file nope.txt does not exist (built in: voc)"),
])  # fmt: skip
def test_bad_options_give_one_line_and_exit_1(tmp_path, extra, fragment):
    root = _tiny_dataset(tmp_path / "data")
    args = tiny_args(root, tmp_path / "run")
    args[args.index("--ignore-index") + 1] = "255"
    for flag in [e for e in extra if e.startswith("--")]:
        if flag in args:  # replace the tiny defaults rather than repeating the flag
            index = args.index(flag)
            del args[index:index + 2]
    if "--model" in extra:
        (tmp_path / "m.keras").write_bytes(b"")
        extra = ["--model", str(tmp_path / "m.keras")]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 1, result.output
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.output


def test_out_with_a_previous_run_needs_resume(tmp_path):
    root = _tiny_dataset(tmp_path / "data")
    (tmp_path / "run").mkdir()
    (tmp_path / "run/last.keras").write_bytes(b"")
    args = tiny_args(root, tmp_path / "run")
    args[args.index("--ignore-index") + 1] = "255"
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "already holds a run" in result.output


# === Pieces of the loop ===


def _tiny_model(input_size=(65, 65), classes=3):
    from edgeseg.model import build_model
    from edgeseg.presets import get_config

    return build_model(get_config(num_classes=classes, input_size=input_size, backbone_alpha=0.35))


def test_batch_norm_that_sees_too_little_data_stays_in_inference_mode():
    import keras

    model = _tiny_model()
    loop.configure_trainable(model)
    norms = {layer.name: layer.trainable for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)}  # fmt: skip
    assert norms["aspp_pool_bn"] is False  # normalises (B, 1, 1, C) over the batch alone
    assert norms["block_5_expand_BN"] is False and norms["bn_Conv1"] is False
    assert norms["aspp_conv_0_bn"] and norms["decoder_conv_1_bn"]
    assert model.get_layer("block_5_expand").trainable
    loop.configure_trainable(model, backbone_bn="train")
    assert model.get_layer("block_5_expand_BN").trainable and not model.get_layer("aspp_pool_bn").trainable
    loop.configure_trainable(model, freeze_backbone=True)
    assert not model.get_layer("block_5_expand").trainable and model.get_layer("aspp_conv_0_conv").trainable


def test_resize_model_keeps_the_weights():
    model = _tiny_model((65, 65))
    resized = resize_model(model, (97, 129))
    assert tuple(resized.input.shape[1:3]) == (97, 129) and tuple(resized.output.shape[1:3]) == (25, 33)
    for a, b in zip(model.get_weights(), resized.get_weights()):
        np.testing.assert_array_equal(a, b)
    same = resize_model(model, (65, 65))
    image = np.random.default_rng(0).uniform(-1, 1, (1, 65, 65, 3)).astype(np.float32)
    np.testing.assert_allclose(model(image), same(image), atol=1e-6)


def test_without_validation_best_keras_is_written_every_val_every_epochs_and_after_the_last(tmp_path, monkeypatch):
    # Each write re-estimates batch norm on whole frames and saves: 7 s on CamVid, once an
    # epoch before, whatever --val-every said.
    from edgeseg.checkpoint import State
    from edgeseg.datasets import scan_dataset
    from edgeseg.pipeline import TrainingData
    from edgeseg.settings import Settings

    data = _tiny_dataset(tmp_path / "data", count=2)
    info = scan_dataset(data / "train", data / "trainannot", 3, 255)
    saved = []
    original = loop.save_model
    state = State()
    monkeypatch.setattr(loop, "save_model", lambda model, path: (saved.append(len(state.history)), original(model, path)))
    settings = Settings(epochs=5, batch_size=2, val_every=2)
    loop.fit(_tiny_model((33, 33)), TrainingData(info, (33, 33), 2, 255), None, 3, settings, tmp_path, state,
             reporter=loop.Reporter(message=lambda text: None))  # fmt: skip
    assert saved == [1, 3, 4]  # written at the end of epochs 2, 4 and 5 (the history holds the ones before)
    assert (tmp_path / "best.keras").is_file() and len(state.history) == 5


def test_ema_validates_and_saves_the_average_and_last_keras_keeps_the_trained_weights(tmp_path):
    from edgeseg.checkpoint import State, load_checkpoint
    from edgeseg.datasets import scan_dataset
    from edgeseg.model import load_model
    from edgeseg.pipeline import TrainingData
    from edgeseg.settings import Settings

    data = _tiny_dataset(tmp_path / "data", count=2)
    info = scan_dataset(data / "train", data / "trainannot", 3, 255)
    model = _tiny_model((33, 33))
    after_each_step = []
    settings = Settings(epochs=2, batch_size=1, lr=0.05, ema=0.6)
    loop.fit(model, TrainingData(info, (33, 33), 1, 255), None, 3, settings, tmp_path, State(),
             reporter=loop.Reporter(message=lambda text: None),
             on_step=lambda step: after_each_step.append([v.numpy() for v in model.trainable_variables]))  # fmt: skip
    assert len(after_each_step) == 4
    expected = after_each_step[0]  # the first step copies the weights, each next one moves 40% of the way
    for weights in after_each_step[1:]:
        expected = [0.6 * average + 0.4 * w for average, w in zip(expected, weights)]
    best = load_model(tmp_path / "best.keras")
    loop.configure_trainable(best)
    assert len(best.trainable_variables) == len(expected)
    for variable, value in zip(best.trainable_variables, expected):
        np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(expected, after_each_step[-1]))
    last, _, arrays = load_checkpoint(tmp_path / "last.keras")
    loop.configure_trainable(last)
    for variable, value in zip(last.trainable_variables, after_each_step[-1]):
        np.testing.assert_array_equal(variable.numpy(), value)
    averages = [arrays[key] for key in sorted(arrays) if "average" in key]  # resuming goes on from them
    assert len(averages) == len(expected) and all(np.allclose(a, b, atol=1e-6) for a, b in zip(averages, expected))
    with pytest.raises(EdgesegError, match="ema"):
        Settings(epochs=1, batch_size=1, ema=1.0)


def test_learning_rate_schedules():
    lr = optimization.learning_rate
    assert lr(0, 100, 0.1, "poly") == pytest.approx(0.1)
    assert lr(50, 100, 0.1, "poly") == pytest.approx(0.1 * 0.5**0.9)
    assert lr(50, 100, 0.1, "cosine") == pytest.approx(0.05)
    assert lr(99, 100, 0.1, "constant") == 0.1
    assert lr(0, 100, 0.1, "poly", warmup_steps=10) == pytest.approx(0.001)
    assert lr(5, 100, 0.1, "poly", warmup_steps=10) == pytest.approx(0.1 * (0.01 + 0.99 * 0.5))
    assert lr(10, 100, 0.1, "poly", warmup_steps=10) == pytest.approx(0.1)
    assert lr(100, 100, 0.1, "poly", warmup_steps=10) == pytest.approx(0.0)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_optimizer_state_round_trip(ema):
    import tensorflow as tf

    variables = [tf.Variable(np.ones((2, 3), np.float32)), tf.Variable(np.zeros(3, np.float32))]
    optimizer = optimization.make_optimizer("adamw", 0.01, ema)
    optimizer.apply([tf.ones((2, 3)), tf.ones(3)], variables)
    optimizer.apply([tf.ones((2, 3)), tf.ones(3)], variables)
    arrays = optimization.optimizer_arrays(optimizer)
    assert len(arrays) == (8 if ema else 6)  # iteration, learning rate, 2 x (momentum, velocity) [, 2 averages]
    fresh = optimization.make_optimizer("adamw", 0.01, ema)
    optimization.restore_optimizer(fresh, variables, arrays)
    for a, b in zip(optimizer.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = optimization.make_optimizer("adamw", 0.01, ema)
    with pytest.raises(EdgesegError, match="does not fit"):
        optimization.restore_optimizer(other, variables[:1], arrays)
    with pytest.raises(EdgesegError, match="does not fit"):  # resuming with another --ema
        optimization.restore_optimizer(optimization.make_optimizer("adamw", 0.01, 0.9 - ema), variables, arrays)


# === Batch norm: the saved model in inference mode predicts as well as it trained ===


@needs_camvid
@pytest.mark.skipif(not WEIGHTS.is_file(), reason="../shared/weights is absent")
@pytest.mark.slow
def test_overfit_frames_then_inference_mode_matches_training_mode(tmp_path):
    from edgeseg.datasets import scan_dataset
    from edgeseg.evaluation import load_for_eval, score

    # Four frames at a quarter of their size, batch 2: the small-batch case where batch norm
    # statistics go wrong (a prototype here trained to 97% and predicted 35%).
    for folder in ("img", "msk"):
        (tmp_path / folder).mkdir()
    for name in sorted((CAMVID / "train").iterdir())[::90][:4]:
        image = cv2.imread(str(name))
        mask = cv2.imread(str(CAMVID / "trainannot" / name.name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(tmp_path / "img" / name.name), cv2.resize(image, (120, 90), interpolation=cv2.INTER_AREA))
        cv2.imwrite(str(tmp_path / "msk" / name.name), cv2.resize(mask, (120, 90), interpolation=cv2.INTER_NEAREST))
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "--images", str(tmp_path / "img"), "--masks", str(tmp_path / "msk"),
        "--val-images", str(tmp_path / "img"), "--val-masks", str(tmp_path / "msk"),
        "--classes-file", str(CAMVID / "classes.txt"), "--ignore-index", "11", "--input-size", "90x120",
        "--scale-range", "1,1", "--backbone-weights", str(WEIGHTS), "--batch-size", "2", "--epochs", "50",
        "--lr", "0.002", "--val-every", "50", "--out", str(out), "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    history = json.loads(result.stdout)["history"]
    train_accuracy = history[-1]["train_accuracy"]
    assert train_accuracy > 0.85, history[-1]

    model = load_for_eval(out / "best.keras")
    info = scan_dataset(tmp_path / "img", tmp_path / "msk", 11, 11)
    inference_accuracy = score(model, info, 11, 11).metrics.pixel_accuracy
    assert inference_accuracy >= train_accuracy - 0.03, (inference_accuracy, train_accuracy)


# === GPU code paths, exercised on the CPU ===


@pytest.mark.slow
def test_mirrored_strategy_and_mixed_precision_paths(tmp_path):
    # Two logical CPUs stand in for two GPUs; a fresh process because devices are fixed at start.
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf, keras, cv2
        from pathlib import Path
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from edgeseg import loop
        from edgeseg.checkpoint import State
        from edgeseg.datasets import scan_dataset
        from edgeseg.model import build_model
        from edgeseg.pipeline import TrainingData
        from edgeseg.settings import Settings
        from edgeseg.presets import get_config
        root = Path({str(tmp_path)!r})
        for folder in ("img", "msk"):
            (root / folder).mkdir()
        rng = np.random.default_rng(0)
        for index in range(4):
            cv2.imwrite(str(root / "img" / f"{{index}}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
            cv2.imwrite(str(root / "msk" / f"{{index}}.png"), rng.integers(0, 3, (40, 40), dtype=np.uint8))
        info = scan_dataset(root / "img", root / "msk", 3, 255)
        keras.mixed_precision.set_global_policy("mixed_float16")
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            model = build_model(get_config(num_classes=3, input_size=(33, 33), backbone_alpha=0.35))
        data = TrainingData(info, (33, 33), 4, 255)
        settings = Settings(epochs=1, batch_size=4, loss="wce+dice", class_weights=[1.0, 2.0, 3.0])
        state = loop.fit(model, data, info, 3, settings, root, State(), strategy=strategy,
                         reporter=loop.Reporter(message=lambda text: None))
        print("replicas", strategy.num_replicas_in_sync, "steps", state.step,
              "loss", state.history[0]["loss"], "policy", model.dtype_policy.name)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    words = result.stdout.split()
    assert words[words.index("replicas") + 1] == "2" and words[words.index("steps") + 1] == "1"
    assert np.isfinite(float(words[words.index("loss") + 1]))
    assert words[words.index("policy") + 1] == "mixed_float16"
    assert (tmp_path / "best.keras").is_file() and (tmp_path / "last.keras").is_file()
