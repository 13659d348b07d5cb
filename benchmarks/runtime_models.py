"""Shared set-up of the runtime benchmarks: a DeepLab-sized int8 model and 640x480 test frames.

Until `edgeseg convert` exists, `deeplab_sized_int8` stands in for its default output: Keras's
MobileNetV2 (alpha 1.0, random weights) at 513x513 up to block_16 (stride 32), a 1x1 logits
head upsampled to stride 4 and added to a 1x1 head on block_3 (stride 4), converted to int8
with uint8 input and int8 logits of shape (1, 129, 129, 21) — the converter's default I/O.
The backbone is where the time goes, so the ratios measured hold roughly; re-run every
benchmark on the real converter output with `--model` (the lead does so at the end).

Not a test: needs TensorFlow to build the stand-in (not to run the benchmarks on `--model`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from runtime.bench import synthetic_frame
from runtime.processing import prepare_input

REPO = Path(__file__).resolve().parents[1]
CAMVID = REPO.parent / "shared" / "data" / "camvid"
WORK = Path(os.environ.get("EDGESEG_BENCH_DIR", "/tmp/edgeseg-bench"))
FRAME_SIZE = (480, 640)


def iter_frames_640x480(count: int) -> Iterator[np.ndarray]:
    """`count` 640x480 BGR frames: CamVid training frames (upscaled, looped) or synthetic ones."""
    paths = sorted((CAMVID / "train").glob("*.png"))
    for index in range(count):
        if not paths:
            yield synthetic_frame(FRAME_SIZE, seed=index)
            continue
        image = cv2.imread(str(paths[index % len(paths)]))
        yield cv2.resize(image, FRAME_SIZE[::-1], interpolation=cv2.INTER_LINEAR)


def frames_640x480(count: int) -> list[np.ndarray]:
    return list(iter_frames_640x480(count))


def make_video(frames: int, fps: float = 30.0) -> Path:
    """A 640x480 mp4 of `frames` frames in the work folder (made once)."""
    path = WORK / f"camvid_640x480_{frames}.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.part.mp4")
        writer = cv2.VideoWriter(str(temp), cv2.VideoWriter_fourcc(*"mp4v"), fps, FRAME_SIZE[::-1])
        for frame in iter_frames_640x480(frames):
            writer.write(frame)
        writer.release()
        os.replace(temp, path)
    return path


def deeplab_sized_int8(path: Path | None = None, calibration: int = 32) -> Path:
    """Build (once) and return the stand-in int8 model at 513x513."""
    path = path or WORK / "deeplab_sized_int8_513.tflite"
    if path.exists():
        return path
    import tensorflow as tf

    keras = tf.keras
    size = (513, 513)
    backbone = keras.applications.MobileNetV2(input_shape=(*size, 3), include_top=False, weights=None)
    high = backbone.get_layer("block_16_project_BN").output  # 17x17x320, stride 32
    low = backbone.get_layer("block_3_expand_relu").output  # 129x129x144, stride 4
    logits_high = keras.layers.Conv2D(21, 1, name="head_high")(high)
    logits_high = keras.layers.Resizing(129, 129, interpolation="bilinear", name="head_upsample")(logits_high)
    logits = keras.layers.Add(name="logits")([logits_high, keras.layers.Conv2D(21, 1, name="head_low")(low)])
    model = keras.Model(backbone.input, logits)

    frames = frames_640x480(calibration)

    def representative():
        for frame in frames:
            yield [prepare_input(frame, size)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    data = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".part")
    temp.write_bytes(data)
    os.replace(temp, path)
    return path


def model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="a .tflite model (default: build the DeepLab-sized stand-in)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="interpreter threads")


def resolve_model(args: argparse.Namespace) -> Path:
    return args.model if args.model else deeplab_sized_int8()


if __name__ == "__main__":
    print(deeplab_sized_int8())
