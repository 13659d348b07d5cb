"""`edgeseg eval`: Keras and TFLite models scored side by side on CamVid frames."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("tensorflow")

from edgeseg.cli import app  # noqa: E402
from edgeseg.classes import classes_document  # noqa: E402
from edgeseg.datasets import scan_dataset  # noqa: E402
from edgeseg.evaluation import LoadedModel, score  # noqa: E402

CAMVID = Path(__file__).resolve().parents[2] / "shared/data/camvid"
runner = CliRunner()


def _error_lines(result):
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Three CamVid validation frames and their masks."""
    if not CAMVID.is_dir():
        pytest.skip("../shared/data/camvid is absent")
    root = tmp_path_factory.mktemp("frames")
    for folder in ("val", "valannot"):
        (root / folder).mkdir()
    for name in sorted((CAMVID / "val").iterdir())[:3]:
        shutil.copy(name, root / "val" / name.name)
        shutil.copy(CAMVID / "valannot" / name.name, root / "valannot" / name.name)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny untrained 11-class model as .keras (with classes.json) and as float .tflite."""
    from converters.tflite import convert

    from edgeseg.model import build_model, resize_model, save_model
    from edgeseg.presets import get_config

    root = tmp_path_factory.mktemp("models")
    model = build_model(get_config(num_classes=11, input_size=(97, 129), backbone_alpha=0.35))
    save_model(model, root / "tiny.keras")
    names = (CAMVID / "classes.txt").read_text().split() if CAMVID.is_dir() else [f"c{i}" for i in range(11)]
    (root / "classes.json").write_text(json.dumps(classes_document(names, 11, (97, 129))))
    (root / "tiny.tflite").write_bytes(convert(model, "float32"))
    other = build_model(get_config(num_classes=5, input_size=(65, 65), backbone_alpha=0.35))
    save_model(other, root / "five.keras")
    # The same network converted at another size, as a model trained on crops is deployed.
    wide = resize_model(model, (65, 97))
    (root / "wide.tflite").write_bytes(convert(wide, "float32"))
    return root


def test_keras_and_tflite_side_by_side_json(frames, models):
    result = runner.invoke(app, ["eval", str(models / "tiny.keras"), str(models / "tiny.tflite"),
                                 "--images", str(frames / "val"), "--masks", str(frames / "valannot"), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert [s["kind"] for s in scores] == ["keras", "tflite"]
    keras_scores, tflite_scores = scores
    for model_scores in scores:
        assert {"miou", "per_class_iou", "pixel_accuracy"} <= set(model_scores)
    # The scores are those of the label maps the model makes, counted here with plain numpy.
    from runtime import Segmenter

    segmenter, confusion = Segmenter(models / "tiny.tflite"), np.zeros((11, 11), np.int64)
    for image_path in sorted((frames / "val").iterdir()):
        mask = cv2.imread(str(frames / "valannot" / image_path.name), cv2.IMREAD_UNCHANGED)
        labels, keep = segmenter.segment(cv2.imread(str(image_path))), mask != 11
        confusion += np.bincount(mask[keep] * 11 + labels[keep], minlength=121).reshape(11, 11)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    iou = np.where(union > 0, np.diag(confusion) / np.maximum(union, 1), np.nan)
    assert tflite_scores["miou"] == pytest.approx(np.nanmean(iou), abs=1e-6)
    assert tflite_scores["pixel_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum(), abs=1e-6)
    assert [v is None for v in tflite_scores["per_class_iou"].values()] == list(union == 0)  # absent: null
    assert list(keras_scores["per_class_iou"])[:3] == ["Sky", "Building", "Pole"]  # from classes.json
    # The same float network through TensorFlow and through the runtime: the same labels, nearly.
    assert abs(tflite_scores["pixel_accuracy"] - keras_scores["pixel_accuracy"]) < 0.01
    assert tflite_scores["miou_difference"] == pytest.approx(tflite_scores["miou"] - keras_scores["miou"], abs=1e-5)
    assert "miou_difference" not in keras_scores


def test_table_and_confusion_picture(frames, models, tmp_path):
    picture = tmp_path / "confusion.png"
    result = runner.invoke(app, ["eval", str(models / "tiny.keras"), str(models / "tiny.tflite"),
                                 "--images", str(frames / "val"), "--masks", str(frames / "valannot"),
                                 "--confusion", str(picture)])  # fmt: skip
    assert result.exit_code == 0, result.output
    for fragment in ("Bicyclist", "mIoU", "pixel accuracy", "diff", "tiny.tflite", "3 images"):
        assert fragment in result.stdout, fragment
    image = cv2.imread(str(picture))
    assert image is not None and image.shape[1] > 2 * 11 * 30  # two panels of 11x11 cells


def test_keras_model_runs_at_the_tflite_models_size(frames, models):
    base = ["--images", str(frames / "val"), "--masks", str(frames / "valannot"), "--json"]
    result = runner.invoke(app, ["eval", str(models / "tiny.keras"), str(models / "wide.tflite"), *base])
    assert result.exit_code == 0, result.output
    keras_scores, tflite_scores = json.loads(result.stdout)
    assert keras_scores["input_size"] == tflite_scores["input_size"] == [65, 97]
    # Rebuilt at the converted size, the float network makes the converted one's labels.
    assert abs(tflite_scores["pixel_accuracy"] - keras_scores["pixel_accuracy"]) < 0.01
    alone = runner.invoke(app, ["eval", str(models / "tiny.keras"), *base])
    assert json.loads(alone.stdout)[0]["input_size"] == [97, 129]  # its own size
    chosen = runner.invoke(app, ["eval", str(models / "tiny.keras"), str(models / "wide.tflite"),
                                 "--input-size", "129x161", *base])  # fmt: skip
    assert [s["input_size"] for s in json.loads(chosen.stdout)] == [[129, 161], [65, 97]]


class _Fixed:
    """A stand-in segmenter: the mask itself, or one class everywhere."""

    def __init__(self, masks: dict, constant: int | None = None):
        self.masks, self.constant = masks, constant

    def segment(self, frame):
        key = frame.tobytes()[:4096]
        mask = self.masks[key]
        return np.full_like(mask, self.constant) if self.constant is not None else np.where(mask == 11, 0, mask)


def test_scores_of_a_perfect_and_a_constant_model(frames):
    info = scan_dataset(frames / "val", frames / "valannot", 11, 11)
    masks, truth = {}, []
    for image_path, mask_path in zip(info.images, info.masks):
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        masks[cv2.imread(str(image_path)).tobytes()[:4096]] = mask
        truth.append(mask)
    perfect = score(LoadedModel(Path("perfect"), "fake", _Fixed(masks), 11), info, 11, 11)
    assert perfect.metrics.miou == 1.0 and perfect.metrics.pixel_accuracy == 1.0

    road = score(LoadedModel(Path("road"), "fake", _Fixed(masks, constant=3), 11), info, 11, 11)
    labels = np.concatenate([m.ravel() for m in truth])
    labels = labels[labels != 11]
    assert road.metrics.pixel_accuracy == pytest.approx(np.mean(labels == 3))
    assert road.metrics.per_class_iou[3] == pytest.approx(np.mean(labels == 3))
    present = np.unique(labels)
    assert road.metrics.miou == pytest.approx(np.mean(labels == 3) / len(present))


def test_bad_input_gives_one_line_and_exit_1(frames, models, tmp_path):
    base = ["--images", str(frames / "val"), "--masks", str(frames / "valannot")]
    cases = [
        ([str(tmp_path / "missing.keras")], "missing.keras does not exist"),
        ([str(frames / "valannot" / sorted(p.name for p in (frames / "valannot").iterdir())[0])],
         "is neither a .keras nor a .tflite model"),
        ([str(models / "tiny.keras"), str(models / "five.keras")], "different numbers of classes"),
        ([str(models / "five.keras"), "--ignore-index", "255"], "which is neither a class (0-4) nor the ignore index 255"),
        ([str(models / "tiny.keras"), "--confusion", str(tmp_path / "no" / "c.png")], "does not exist"),
        ([str(models / "tiny.keras"), "--input-size", "wide"], "is not HEIGHTxWIDTH"),
        ([str(models / "tiny.keras"), "--input-size", "9999x64"], "--input-size 9999x64 is beyond the limit"),
    ]  # fmt: skip
    for args, fragment in cases:
        result = runner.invoke(app, ["eval", *args, *base])
        assert result.exit_code == 1, (args, result.output)
        lines = _error_lines(result)
        assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.output
