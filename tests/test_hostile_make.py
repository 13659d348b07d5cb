"""Hostile input on the making side (issue 11): build, train, convert and eval refuse what cannot
work before any work, in one line naming the option (the Python API: the keyword), and a
SIGTERM leaves nothing behind. The runtime side is in test_hostile_input.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error
from test_interruptions import _wait_for
from typer.testing import CliRunner

tf = pytest.importorskip("tensorflow")

import edgeseg  # noqa: E402
from edgeseg import checkpoint, loop  # noqa: E402
from edgeseg.cli import app  # noqa: E402
from runtime.limits import MAX_CLASSES, MAX_INPUT_SIDE, MAX_THREADS  # noqa: E402
from runtime.metadata import embed_metadata  # noqa: E402

runner = CliRunner()
# A folder in which nothing can be created, root or not (permission bits do not stop root).
UNWRITABLE = Path("/proc")
needs_proc = pytest.mark.skipif(not UNWRITABLE.is_dir(), reason="needs /proc")
TINY_BUILD = ["--alpha", "0.35", "--input-size", "97x129", "--backbone-weights", "none", "--classes", "5"]


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def dataset(tmp_path) -> tuple[Path, Path]:
    """Four 40x48 images with 3-class masks."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(1)
    for index in range(4):
        cv2.imwrite(str(images / f"f{index}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
        cv2.imwrite(str(masks / f"f{index}.png"), rng.integers(0, 3, (40, 48), dtype=np.uint8))
    return images, masks


@pytest.fixture()
def foreign_keras(tmp_path) -> Path:
    """A small Keras model edgeseg did not build: (1, 16, 16, 3) in, two classes out."""
    import keras

    inputs = keras.Input((16, 16, 3), batch_size=1)
    path = tmp_path / "foreign.keras"
    keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs)).save(path)
    return path


def _never(what: str):
    def called(*args, **kwargs):
        raise AssertionError(f"{what} started before the options were checked")

    return called


# === 1. Outputs that cannot be written: refused before the work ===


@needs_proc
def test_outputs_that_cannot_be_written_are_refused_before_any_work(dataset, foreign_keras, tiny_models, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    images, masks = dataset
    monkeypatch.setattr("converters.convert._keras_model", _never("the conversion"))
    monkeypatch.setattr("edgeseg.training._train", _never("training"))
    said = f"cannot write in {UNWRITABLE}"
    assert_one_line_error(cli("build", "--out", UNWRITABLE / "m.keras", *TINY_BUILD), f"error: --out: {said}")
    assert_one_line_error(cli("train", "--images", images, "--masks", masks, "--classes", 3,
                              "--out", UNWRITABLE / "run"), f"error: --out: {said}")  # fmt: skip
    assert_one_line_error(cli("convert", foreign_keras, "--out", UNWRITABLE / "m.tflite"), f"error: --out: {said}")
    assert_one_line_error(cli("convert", foreign_keras, "--out", tmp_path / "m.tflite",
                              "--report", UNWRITABLE / "r.json"), f"error: --report: {said}")  # fmt: skip
    assert_one_line_error(cli("eval", tiny_models["int8"], "--images", images, "--masks", masks,
                              "--confusion", UNWRITABLE / "c.png"), f"error: --confusion: {said}")  # fmt: skip
    # A file where a folder should be: said before the work too.
    (tmp_path / "afile").write_text("")
    assert_one_line_error(cli("convert", foreign_keras, "--out", tmp_path / "afile" / "m.tflite"), "error: --out:")
    assert_one_line_error(cli("train", "--images", images, "--masks", masks, "--classes", 3,
                              "--out", tmp_path / "afile" / "run"), "afile")  # fmt: skip
    # The Python API names its keyword.
    with pytest.raises(edgeseg.ParameterError, match=f"^out: {said}"):
        edgeseg.convert(foreign_keras, UNWRITABLE / "m.tflite")
    with pytest.raises(edgeseg.ParameterError, match=f"^out: {said}"):
        edgeseg.train(edgeseg.ModelConfig(num_classes=3), images, masks, UNWRITABLE / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "foreign.keras", "images", "masks"]


# === 2. Learning rates that cannot work, and training that diverges ===


@pytest.mark.parametrize("lr", ["inf", "1e30", "nan", "-1"])
def test_a_learning_rate_that_cannot_work_is_refused_up_front(dataset, tmp_path, lr):
    images, masks = dataset
    expected = "must be a finite number above 0 and at most 1"
    with pytest.raises(edgeseg.ParameterError, match=re.escape(f"lr {float(lr)} {expected}")):
        edgeseg.train(edgeseg.ModelConfig(num_classes=3), images, masks, tmp_path / "run", lr=float(lr))
    result = cli("train", "--images", images, "--masks", masks, "--classes", 3, "--out", tmp_path / "run", "--lr", lr)
    assert_one_line_error(result, f"error: --lr {float(lr)} {expected}")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_loss_that_turns_nan_stops_training_and_keeps_the_good_epochs(dataset, tmp_path, monkeypatch):
    # A weight turned NaN after optimizer step 3 (2 steps an epoch) stands for a step that
    # diverged; what is under test is what follows: the loss of step 4 is NaN.
    images, masks = dataset
    original = loop.fit

    def diverging(model, *args, **kwargs):
        def poison(step):
            if step == 3:
                variable = model.trainable_variables[0]
                variable.assign(np.full(variable.shape, np.nan, np.float32))

        return original(model, *args, **kwargs, on_step=poison)

    monkeypatch.setattr(loop, "fit", diverging)
    out = tmp_path / "run"
    result = cli("train", "--images", images, "--masks", masks, "--classes", 3, "--preset", "deeplabv3_mnv2",
                 "--alpha", 0.35, "--input-size", "33x33", "--backbone-weights", "none", "--batch-size", 2,
                 "--epochs", 3, "--out", out)  # fmt: skip
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    said = "error: training diverged: the loss is nan at epoch 2, step 2; nothing from this epoch was saved. Lower --lr"
    assert len(errors) == 1 and errors[0].startswith(said), result.stderr
    assert "Traceback" not in result.output
    # Epoch 1 stays: last.keras to resume from and best.keras (without validation: the latest
    # epoch's), both with finite weights.
    with zipfile.ZipFile(out / "last.keras") as archive:
        state = json.loads(archive.read(checkpoint.STATE_MEMBER))
    assert len(state["history"]) == 1 and state["step"] == 2
    for name in ("best.keras", "last.keras"):
        weights = edgeseg.load_model(out / name).get_weights()
        assert all(np.isfinite(w).all() for w in weights), name


def test_weights_that_the_last_step_made_nan_are_refused_before_saving():
    # The epoch's last loss was finite but its update was not: fit checks the weights before
    # it saves best.keras or last.keras.
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    loop._check_finite_weights(model, 0)
    model.trainable_variables[1].assign([np.inf, 0.0])
    with pytest.raises(edgeseg.ParameterError, match=r"^training diverged: weights are not finite after epoch 3; "
                                                     "nothing from this epoch was saved. Lower lr$"):  # fmt: skip
        loop._check_finite_weights(model, 2)


# === 3. Input sizes and 4. class counts beyond what TFLite and uint8 label maps carry ===


def test_input_sizes_beyond_the_limit_are_refused_everywhere(dataset, foreign_keras, tmp_path):
    images, masks = dataset
    huge = "99999999x99999999"
    said = f"{huge} is beyond the limit of {MAX_INPUT_SIDE} pixels a side"
    assert_one_line_error(cli("build", "--out", tmp_path / "m.keras", "--input-size", huge),
                          f"error: --input-size {said}")  # fmt: skip
    assert_one_line_error(cli("train", "--images", images, "--masks", masks, "--classes", 3, "--input-size", huge,
                              "--out", tmp_path / "run"), f"error: --input-size {said}")  # fmt: skip
    assert_one_line_error(cli("convert", "--out", tmp_path / "m.tflite", "--preset", "deeplabv3_mnv2",
                              "--input-size", huge), f"error: --input-size {said}")  # fmt: skip
    assert_one_line_error(cli("convert", foreign_keras, "--out", tmp_path / "m.tflite", "--input-size", huge),
                          f"error: --input-size {said}")  # fmt: skip
    with pytest.raises(edgeseg.ParameterError, match=f"^input_size {MAX_INPUT_SIDE + 1}x8 is beyond the limit"):
        edgeseg.ModelConfig(input_size=(MAX_INPUT_SIDE + 1, 8))
    with pytest.raises(edgeseg.ParameterError, match="^input_size 9000x9000 is beyond"):
        edgeseg.build_model("deeplabv3_mnv2", input_size=(9000, 9000))
    with pytest.raises(edgeseg.ParameterError, match="^input_size 9000x65 is beyond"):
        edgeseg.train(edgeseg.ModelConfig(num_classes=3), images, masks, tmp_path / "run", input_size=(9000, 65))
    with pytest.raises(edgeseg.ParameterError, match="^input_size 9000x65 is beyond"):
        edgeseg.convert(foreign_keras, tmp_path / "m.tflite", input_size=(9000, 65))
    assert edgeseg.ModelConfig(input_size=(MAX_INPUT_SIDE, 64)).input_size == (MAX_INPUT_SIDE, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.keras", "images", "masks"]


def test_class_counts_beyond_uint8_label_maps_are_refused_up_front(dataset, tmp_path):
    import keras

    images, masks = dataset
    said = f"300 is more classes than edgeseg supports: at most {MAX_CLASSES}"
    assert_one_line_error(cli("build", "--out", tmp_path / "m.keras", "--classes", 300), f"error: --classes {said}")
    assert_one_line_error(cli("train", "--images", images, "--masks", masks, "--classes", 300,
                              "--out", tmp_path / "run"), f"error: --classes {said}")  # fmt: skip
    assert_one_line_error(cli("convert", "--out", tmp_path / "m.tflite", "--preset", "deeplabv3_mnv2",
                              "--classes", 300), f"error: --classes {said}")  # fmt: skip
    names = tmp_path / "names.txt"
    names.write_text("".join(f"c{index}\n" for index in range(MAX_CLASSES + 1)))
    assert_one_line_error(cli("train", "--images", images, "--masks", masks, "--classes-file", names,
                              "--out", tmp_path / "run"), f"has {MAX_CLASSES + 1} class names")  # fmt: skip
    with pytest.raises(edgeseg.ParameterError, match=f"^num_classes {said}"):
        edgeseg.build_model("deeplabv3_mnv2", num_classes=300)
    with pytest.raises(edgeseg.ParameterError, match=f"^classes {said}"):
        edgeseg.train(edgeseg.ModelConfig(num_classes=3), images, masks, tmp_path / "run", classes=300)
    # A foreign model with more outputs than that: refused before it is converted.
    inputs = keras.Input((16, 16, 3), batch_size=1)
    wide = tmp_path / "wide.keras"
    keras.Model(inputs, keras.layers.Conv2D(300, 1)(inputs)).save(wide)
    assert_one_line_error(cli("convert", wide, "--out", tmp_path / "m.tflite"), f"has 300 classes; edgeseg "
                          f"supports at most {MAX_CLASSES}")  # fmt: skip
    assert edgeseg.ModelConfig(num_classes=MAX_CLASSES).num_classes == MAX_CLASSES
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("m.*"))


# === 5. SIGTERM during convert leaves nothing behind (build: test_interruptions.py) ===


def _start(*args: object, tmp: Path) -> subprocess.Popen:
    tmp.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "edgeseg", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)})  # fmt: skip


@pytest.mark.slow
def test_sigterm_during_convert_leaves_no_working_folder_and_the_earlier_model(tmp_path):
    out = tmp_path / "out" / "m.tflite"
    out.parent.mkdir()
    out.write_bytes(b"an earlier model")
    temp = tmp_path / "tmp"
    process = _start("convert", *TINY_BUILD, "--num-calibration", "8", "--out", out, tmp=temp)
    # Stopped while the converted model is being written and measured: a .part beside `out`.
    _wait_for(lambda: any(out.parent.glob(".m.tflite.*.part.tflite")), process, timeout=600)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143 and stderr.endswith("terminated by SIGTERM\n"), stderr
    assert [p.name for p in out.parent.iterdir()] == ["m.tflite"] and out.read_bytes() == b"an earlier model"
    assert list(temp.glob("edgeseg-convert-*")) == []


# === 6. A classes file that is not text ===


def test_a_classes_file_that_is_not_utf8_is_one_line(dataset, tiny_models, tmp_path):
    images, masks = dataset
    names = tmp_path / "names.txt"
    names.write_bytes(b"sky\n\xff\xfebuilding\nroad\n")
    said = f"error: classes file {names} is not UTF-8 text (byte 0xff at offset 4)"
    assert_one_line_error(cli("train", "--images", images, "--masks", masks, "--classes-file", names,
                              "--out", tmp_path / "run"), said)  # fmt: skip
    assert_one_line_error(cli("eval", tiny_models["int8"], "--images", images, "--masks", masks,
                              "--classes-file", names), said)  # fmt: skip
    with pytest.raises(edgeseg.EdgesegError, match="is not UTF-8 text"):
        edgeseg.evaluate(tiny_models["int8"], images, masks, classes=names)


# === 7. One check of masks for convert, eval and train ===


def test_convert_refuses_the_masks_eval_refuses(dataset, foreign_keras, tiny_models, tmp_path):
    images, masks = dataset
    for path in masks.iterdir():  # the foreign model's two classes, and one value that is not a class
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) % 2
        if path.name == "f2.png":
            mask[5, 7] = 77
        cv2.imwrite(str(path), mask)
    said = f"mask {masks / 'f2.png'} has value 77 (row 5, column 7), which is neither a class"
    assert_one_line_error(cli("convert", foreign_keras, "--out", tmp_path / "m.tflite", "--val-images", images,
                              "--val-masks", masks), said)  # fmt: skip
    assert_one_line_error(cli("eval", tiny_models["int8"], "--images", images, "--masks", masks), said)
    assert not (tmp_path / "m.tflite").exists()


# === 8. Class names printed escaped ===


def test_eval_prints_class_names_escaped(tiny_models, dataset, tmp_path):
    images, _ = dataset
    masks = tmp_path / "zeros"
    masks.mkdir()
    for image in images.iterdir():
        cv2.imwrite(str(masks / image.name), np.zeros((40, 48), np.uint8))
    metadata = tiny_models.metadata()
    hostile = ["\x1b[31mred\x1b[0m", "[bold]markup[/bold]", "\x1b]0;title\x07", "\u202eevil"]
    metadata["classes"][: len(hostile)] = hostile
    model = tmp_path / "named.tflite"
    model.write_bytes(embed_metadata(tiny_models["int8"].read_bytes(), metadata))
    result = cli("eval", model, "--images", images, "--masks", masks)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout and "\x07" not in result.stdout
    for shown in ("\\x1b[31mred\\x1b[0m", "[bold]markup[/bold]", "\\x1b]0;title\\x07", "\\u202eevil"):
        assert shown in result.stdout, result.stdout
    as_json = json.loads(cli("eval", model, "--images", images, "--masks", masks, "--json").stdout)
    assert hostile[0] in as_json[0]["per_class_iou"]  # JSON escapes control characters itself


# === 9. A latency too small to time ===


def test_a_zero_latency_has_no_ratio_rather_than_a_division_by_zero(foreign_keras, tmp_path, monkeypatch):
    import converters.report

    timed = converters.report.latency

    def too_fast_to_time(paths, *args, **kwargs):
        timing = timed(paths, *args, **kwargs)
        timing["float32"]["invoke_ms"] = 0.0  # what 0.01 ms rounding gives a tiny model
        return timing

    monkeypatch.setattr(converters.report, "latency", too_fast_to_time)
    report = tmp_path / "r.json"
    result = cli("convert", foreign_keras, "--out", tmp_path / "m.tflite", "--num-calibration", 8, "--report", report)
    assert result.exit_code == 0, result.output
    assert "float32 0.0 ms (ratio not a number: too fast to time)" in result.stdout
    assert json.loads(report.read_text())["latency"]["ratio"] is None


# === 10. Thread counts ===


def test_thread_counts_beyond_the_limit_are_refused_and_beyond_the_cores_warned(dataset, foreign_keras, tiny_models,
                                                                               tmp_path, monkeypatch):  # fmt: skip
    images, masks = dataset
    monkeypatch.setattr("converters.convert._keras_model", _never("the conversion"))
    said = f"1000: use 1 to {MAX_THREADS} threads"
    assert_one_line_error(cli("eval", tiny_models["int8"], "--images", images, "--masks", masks, "--threads", 1000),
                          f"error: --threads {said}")  # fmt: skip
    assert_one_line_error(cli("convert", foreign_keras, "--out", tmp_path / "m.tflite", "--threads", 1000),
                          f"error: --threads {said}")  # fmt: skip
    with pytest.raises(edgeseg.ParameterError, match=f"^threads {said}"):
        edgeseg.evaluate(tiny_models["int8"], images, masks, threads=1000)
    with pytest.raises(edgeseg.ParameterError, match=f"^threads {said}"):
        edgeseg.convert(foreign_keras, tmp_path / "m.tflite", threads=1000)
    more = (os.cpu_count() or 1) + 1
    result = cli("eval", tiny_models["int8"], "--images", images, "--masks", masks, "--threads", more)
    assert result.exit_code == 0, result.output
    assert f"warning: threads {more} is more than the {more - 1} CPU cores here" in result.stderr
