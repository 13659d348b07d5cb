"""Shared set-up of the runtime benchmarks: the default int8 model and 640x480 test frames.

Without `--model`, the benchmarks run on what README command 1 converts: `edgeseg convert`'s
default (deeplabv3_mnv2 with the Pascal VOC weights, 513x513, calibrated on
calibration_data/), made once in the work folder through `edgeseg.convert`.

Not a test: needs TensorFlow to make that model (not to run the benchmarks on `--model`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from runtime.bench import synthetic_frame

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


def default_int8(path: Path | None = None) -> Path:
    """Convert (once) and return `edgeseg convert`'s default int8 model."""
    path = path or WORK / "default_int8_513.tflite"
    if not path.exists():
        import edgeseg
        from edgeseg.commands.convert import DEFAULT_WEIGHTS
        from edgeseg.pretrained import pretrained_config

        path.parent.mkdir(parents=True, exist_ok=True)
        edgeseg.convert(pretrained_config(DEFAULT_WEIGHTS), path, weights=DEFAULT_WEIGHTS)
    return path


def model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="a .tflite model (default: edgeseg convert's default, made once)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="interpreter threads")


def resolve_model(args: argparse.Namespace) -> Path:
    return args.model if args.model else default_int8()


if __name__ == "__main__":
    print(default_int8())
