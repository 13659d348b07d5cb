"""The Python API: lazy `import edgeseg`, the README example run as written, and the policy `train` owns."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CAMVID_CLASSES, CAMVID_IGNORE, REPO, assert_one_line_error, camvid_pairs

runner = CliRunner()


def test_import_edgeseg_loads_the_api_lazily_without_tensorflow():
    script = (
        "import sys, edgeseg\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'cv2')]\n"
        "config = edgeseg.ModelConfig(num_classes=3)\n"
        "heavy += [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "print(heavy, sorted(set(edgeseg.__all__) - set(dir(edgeseg))), config.num_classes)\n"
        "edgeseg.no_such_name\n"
    )  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.stdout.strip() == "[] [] 3", result.stdout + result.stderr
    assert "AttributeError: module 'edgeseg' has no attribute 'no_such_name'" in result.stderr


def test_api_names_resolve_to_the_library_functions():
    pytest.importorskip("tensorflow")
    import edgeseg
    from converters.convert import convert
    from edgeseg.evaluation import evaluate
    from edgeseg.model import build_model
    from edgeseg.training import train

    assert (edgeseg.build_model, edgeseg.train, edgeseg.evaluate, edgeseg.convert) == (build_model, train, evaluate, convert)


# === The README example, exactly as written ===


def readme_example() -> str:
    """The python block of the README's "Python API" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the Python API section holds one example"
    return blocks[0]


@pytest.mark.slow
def test_readme_python_api_example_runs_as_written(camvid, tmp_path, monkeypatch, capsys):
    pytest.importorskip("tensorflow")
    # Its data folders: four training and two validation CamVid frames at a quarter of their size.
    for split, count in (("train", 4), ("val", 2)):
        for folder in (split, split + "annot"):
            (tmp_path / "data" / folder).mkdir(parents=True)
        for image_path, mask_path in camvid_pairs(split, count):
            image = cv2.resize(cv2.imread(str(image_path)), (120, 90), interpolation=cv2.INTER_AREA)
            mask = cv2.resize(cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED), (120, 90),
                              interpolation=cv2.INTER_NEAREST)  # fmt: skip
            cv2.imwrite(str(tmp_path / "data" / split / image_path.name), image)
            cv2.imwrite(str(tmp_path / "data" / (split + "annot") / image_path.name), mask)
    shutil.copy(camvid / "classes.txt", tmp_path / "data" / "classes.txt")
    monkeypatch.chdir(tmp_path)

    namespace = {"__name__": "__readme__"}
    with pytest.warns(UserWarning, match=r"only \d usable calibration images"):
        exec(compile(readme_example(), "README.md (Python API)", "exec"), namespace)

    result, report, labels, frame = (namespace[name] for name in ("result", "report", "labels", "frame"))
    assert result.epochs == 2 and result.steps == 4 and result.classes == list(CAMVID_CLASSES)
    assert result.best_epoch in (1, 2) and result.best_miou == max(row["val_miou"] for row in result.history)
    for name in ("best.keras", "last.keras", "history.csv", "curves.png", "classes.json"):
        assert (tmp_path / "demo_run" / name).is_file(), name
    described = json.loads((tmp_path / "demo_run/classes.json").read_text())
    assert described["classes"] == list(CAMVID_CLASSES) and described["ignore_index"] == CAMVID_IGNORE
    assert report["quantization"] == "int8" and report["ops"]["float_ops"] == []
    assert report["input_size"] == [90, 120]  # best.keras is at the validation frames' size
    from runtime.metadata import read_metadata

    assert read_metadata(tmp_path / "demo.tflite")["classes"] == list(CAMVID_CLASSES)  # from classes.json
    assert labels.shape == frame.shape[:2] and labels.dtype == np.uint8 and labels.max() < 11
    overlay = cv2.imread(str(tmp_path / "demo_overlay.png"))
    assert overlay.shape == frame.shape and not np.array_equal(overlay, frame)
    assert f"best validation mIoU {result.best_miou:.3f} at epoch {result.best_epoch}" in capsys.readouterr().out


# === What `train` decides, without training (the loop is replaced by a recorder) ===


def _synthetic_dataset(root: Path, classes: int = 3, count: int = 4, size=(40, 48)) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        cv2.imwrite(str(images / f"{index}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
        cv2.imwrite(str(masks / f"{index}.png"), rng.integers(0, classes, size, dtype=np.uint8))
    return images, masks


@pytest.fixture
def recorded_fit(monkeypatch):
    """Replace the training loop by one that records what it was given and trains nothing."""
    pytest.importorskip("tensorflow")
    import keras

    from edgeseg import loop

    calls = []

    def fit(model, data, val, num_classes, settings, out_dir, state, *args, **kwargs):
        calls.append({"weights": [w.copy() for w in model.get_weights()], "data": data, "settings": settings,
                      "policy": keras.mixed_precision.global_policy().name, "compute_dtype": model.compute_dtype,
                      "num_classes": num_classes, "input_size": tuple(model.input.shape[1:3])})  # fmt: skip
        return state

    monkeypatch.setattr(loop, "fit", fit)
    return calls


def test_seed_drives_initialisation_and_data_order(tmp_path, recorded_fit):
    import edgeseg

    images, masks = _synthetic_dataset(tmp_path / "data")
    config = edgeseg.get_config(num_classes=3, input_size=(65, 65), backbone_alpha=0.35)
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        edgeseg.train(config, images, masks, tmp_path / run, batch_size=2, epochs=1, seed=seed)
    first, again, other = recorded_fit
    assert [call["settings"].seed for call in recorded_fit] == [3, 3, 4]
    assert [call["data"].seed for call in recorded_fit] == [3, 3, 4]
    for a, b in zip(first["weights"], again["weights"]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first["weights"], other["weights"]))
    batch = [x.numpy() for x, _ in first["data"].epoch(0)]
    assert not np.array_equal(batch[0], [x.numpy() for x, _ in other["data"].epoch(0)][0])


def test_mixed_precision_is_an_argument_and_leaves_no_global_state(tmp_path, recorded_fit):
    import keras

    import edgeseg

    images, masks = _synthetic_dataset(tmp_path / "data")
    config = edgeseg.get_config(num_classes=3, input_size=(65, 65), backbone_alpha=0.35)
    edgeseg.train(config, images, masks, tmp_path / "mixed", batch_size=2, epochs=1, mixed_precision=True)
    edgeseg.train(config, images, masks, tmp_path / "float", batch_size=2, epochs=1)  # CPU: off by default
    mixed, plain = recorded_fit
    assert (mixed["policy"], mixed["compute_dtype"]) == ("mixed_float16", "float16")
    assert (plain["policy"], plain["compute_dtype"]) == ("float32", "float32")
    assert keras.mixed_precision.global_policy().name == "float32"


def test_train_defaults_and_reconciliation(tmp_path, recorded_fit):
    import edgeseg

    images, masks = _synthetic_dataset(tmp_path / "data")
    model = edgeseg.build_model(num_classes=3, input_size=(65, 65), backbone_alpha=0.35)
    edgeseg.train(model, images, masks, tmp_path / "sgd", optimizer="sgd", loss="wce", input_size=(33, 49),
                  batch_size=2, epochs=1)  # fmt: skip
    call = recorded_fit[0]
    assert call["settings"].lr == 1e-2  # SGD's default peak learning rate
    counts = np.zeros(3)
    for path in sorted(masks.iterdir()):
        counts += np.bincount(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ravel(), minlength=3)
    median = np.median(counts / counts.sum()) / (counts / counts.sum())  # every class in every mask
    np.testing.assert_allclose(call["settings"].class_weights, median, rtol=1e-5)  # wce: median frequency
    assert call["input_size"] == (33, 49) and call["data"].cache  # a tiny set is cached in memory
    described = json.loads((tmp_path / "sgd/classes.json").read_text())
    assert described["classes"] == ["class 0", "class 1", "class 2"]
    assert described["input_size"] == [40, 48]  # best.keras's: the size the frames share, not the crop's

    with pytest.raises(edgeseg.EdgesegError, match="has 3 classes but 4 are given"):
        edgeseg.train(model, images, masks, tmp_path / "four", classes=["a", "b", "c", "d"], ignore_index=9)
    with pytest.raises(edgeseg.ParameterError, match=r"^give classes to build preset 'deeplabv3_mnv2'$"):
        edgeseg.train("deeplabv3_mnv2", images, masks, tmp_path / "preset")
    assert len(recorded_fit) == 1 and not (tmp_path / "four").exists()


def test_errors_name_the_keyword_in_python(tmp_path):
    import edgeseg

    images, masks = _synthetic_dataset(tmp_path / "data")
    with pytest.raises(edgeseg.ParameterError) as error:
        edgeseg.train(edgeseg.ModelConfig(num_classes=3), images, masks, tmp_path / "run", lr=0.0)
    assert str(error.value) == "lr 0.0 must be a finite number above 0 and at most 1"
    with pytest.raises(edgeseg.ParameterError, match=r"^give val_images and val_masks together, or neither$"):
        edgeseg.train(edgeseg.ModelConfig(num_classes=3), images, masks, tmp_path / "run", val_images=images)
    with pytest.raises(edgeseg.ParameterError, match=r"^photometric 'wild': choose default or strong$"):
        edgeseg.train(edgeseg.ModelConfig(num_classes=3), images, masks, tmp_path / "run", photometric="wild")
    with pytest.raises(edgeseg.ParameterError, match=r"^classmix 1.5 is a share of the crops: give 0 to 1$"):
        edgeseg.train(edgeseg.ModelConfig(num_classes=3), images, masks, tmp_path / "run", classmix=1.5)
    assert not (tmp_path / "run").exists()


def test_the_same_errors_name_the_flag_in_the_cli(tmp_path):
    pytest.importorskip("tensorflow")  # `edgeseg train` says first when TensorFlow is missing
    from edgeseg.cli import app

    images, masks = _synthetic_dataset(tmp_path / "data")
    base = ["train", "--images", str(images), "--masks", str(masks), "--classes", "3", "--out", str(tmp_path / "run")]
    assert_one_line_error(runner.invoke(app, [*base, "--lr", "0"]), "error: --lr 0.0 must be a finite number above 0 and at most 1")
    assert_one_line_error(runner.invoke(app, [*base, "--val-images", str(images)]),
                          "give --val-images and --val-masks together, or neither")  # fmt: skip
    assert not (tmp_path / "run").exists()


# === One classes.json reader: a corrupt file is one line everywhere ===


@pytest.mark.parametrize("command", ["eval", "convert"])
def test_corrupt_classes_json_is_one_line(tmp_path, command):
    pytest.importorskip("tensorflow")
    from edgeseg.cli import app
    from edgeseg.model import build_model, save_model

    save_model(build_model(num_classes=3, input_size=(65, 65), backbone_alpha=0.35), tmp_path / "m.keras")
    (tmp_path / "classes.json").write_text('{"classes": ["a", "b", "c"], "colors": [[1, 2]]')
    images, masks = _synthetic_dataset(tmp_path / "data")
    args = {"eval": ["eval", str(tmp_path / "m.keras"), "--images", str(images), "--masks", str(masks)],
            "convert": ["convert", str(tmp_path / "m.keras"), "--out", str(tmp_path / "m.tflite")]}[command]  # fmt: skip
    assert_one_line_error(runner.invoke(app, args), f"{tmp_path / 'classes.json'} is not valid JSON")
    (tmp_path / "classes.json").write_text('{"classes": ["a", "b", "c"], "colors": [[1, 2]]}')
    assert_one_line_error(runner.invoke(app, args), "has malformed \"colors\" or \"ignore_index\"")
    assert not (tmp_path / "m.tflite").exists()


def test_convert_refuses_build_options_beside_a_model(tmp_path):
    from edgeseg.cli import app

    (tmp_path / "m.keras").write_bytes(b"")
    result = runner.invoke(app, ["convert", str(tmp_path / "m.keras"), "--preset", "deeplabv3_mnv2",
                                 "--backbone-weights", "none", "--out", str(tmp_path / "m.tflite")])  # fmt: skip
    assert_one_line_error(result, "--preset, --backbone-weights build a model from a preset")
