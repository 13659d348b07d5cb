"""README command 1's model: `edgeseg convert` with no model converts the pretrained Pascal VOC
DeepLabV3, offline, faithfully, and it labels the sample video's astronaut and cat."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO
from runtime import Segmenter
from runtime.metadata import read_metadata
from runtime.palette import VOC_CLASSES

pytest.importorskip("tensorflow")

# samples/sample.mp4 (scripts/make_samples.py): shots of 36 frames every 28 (rocket, astronaut,
# chelsea the cat, coffee), each fading in over its first 8 frames: these show one photo alone.
ASTRONAUT_FRAMES = range(36, 56)
CAT_FRAMES = range(64, 84)


@pytest.fixture(scope="module")
def default_model(tmp_path_factory):
    """`edgeseg convert --out m.tflite` as README command 1 runs it: a fresh process whose HOME
    is an empty folder (no Keras cache), started outside the repository."""
    work = tmp_path_factory.mktemp("default")
    home = work / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("KERAS_HOME", None)
    result = subprocess.run([sys.executable, "-m", "edgeseg", "convert", "--out", "m.tflite", "--report", "r.json"],
                            cwd=work, env=env, capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    downloaded = [p for p in home.rglob("*") if p.suffix in (".h5", ".keras") or p.name == "models"]
    assert not downloaded, f"convert fetched or cached weights: {downloaded}"
    return work / "m.tflite", json.loads((work / "r.json").read_text()), result.stdout


@pytest.mark.slow
def test_default_conversion_is_the_pretrained_pascal_model_and_int8_agrees_with_float(default_model):
    path, report, printed = default_model
    metadata = read_metadata(path)
    assert metadata["classes"] == list(VOC_CLASSES)
    config = metadata["config"]
    assert (config["preset"], config["backbone_alpha"], config["input_size"]) == ("deeplabv3_mnv2", 1.0, [513, 513])
    assert report["quantization"] == "int8" and report["ops"]["float_ops"] == []
    # Calibrated on the shipped photographs; agreement is measured on the ones held out of calibration.
    calibration = report["calibration"]
    assert Path(calibration["folder"]) == REPO / "calibration_data"
    assert calibration["images"] + calibration["held_out"] == 88 and calibration["held_out"] >= 8
    fidelity = report["fidelity"]
    assert fidelity["images"] == calibration["held_out"]
    assert fidelity["pixel_agreement"] >= 0.97, fidelity
    assert f"pixel agreement float vs converted on {fidelity['images']} held-out images: " \
           f"{100 * fidelity['pixel_agreement']:.2f}%" in printed  # fmt: skip


@pytest.mark.slow
def test_sample_video_astronaut_is_person_and_cat_is_cat(default_model):
    segmenter = Segmenter(default_model[0], num_threads=2)
    capture = cv2.VideoCapture(str(REPO / "samples" / "sample.mp4"))
    largest = {}
    for index in range(max(CAT_FRAMES) + 1):
        ok, frame = capture.read()
        assert ok, f"sample.mp4 ended at frame {index}"
        if index in ASTRONAUT_FRAMES or index in CAT_FRAMES:
            counts = np.bincount(segmenter.segment(frame).ravel(), minlength=len(VOC_CLASSES))
            counts[0] = 0  # background
            largest[index] = int(np.argmax(counts)) if counts.any() else 0
    capture.release()
    assert {VOC_CLASSES[largest[i]] for i in ASTRONAUT_FRAMES} == {"person"}, largest
    assert {VOC_CLASSES[largest[i]] for i in CAT_FRAMES} == {"cat"}, largest
