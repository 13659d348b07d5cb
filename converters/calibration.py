"""Calibration images: found in a folder, chosen deterministically, prepared as the runtime does."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import EdgesegError, ParameterError
from runtime.images import IMAGE_SUFFIXES, image_files
from runtime.processing import Normalization, prepare_input

FEW_IMAGES = 50
SEED = 0


@dataclass
class CalibrationSet:
    """Images for the representative dataset and a held-out few to check fidelity on.

    Attributes:
        calibration: Paths whose images calibrate the quantization.
        holdout: Paths kept out of calibration, for float-vs-converted agreement.
        frames: Loaded BGR frames by path (uint8, (H, W, 3)), readable images only.
        skipped: Paths that could not be read as images.
        folder: The folder they come from.
    """

    calibration: list[Path]
    holdout: list[Path]
    frames: dict[Path, np.ndarray] = field(repr=False)
    skipped: list[Path]
    folder: Path


def find_images(folder: str | Path) -> list[Path]:
    """Image files under `folder` (recursive; `runtime.images.IMAGE_SUFFIXES`), sorted.

    Raises:
        EdgesegError: if the folder is missing or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ParameterError(f"calibration folder {folder} does not exist; give a folder of images as "
                             "{calibration}", "calibration")  # fmt: skip
    paths = image_files(folder, recursive=True)
    if not paths:
        raise EdgesegError(f"calibration folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def split(paths: list[Path], count: int, holdout: int) -> tuple[list[Path], list[Path]]:
    """Choose `count` calibration paths and up to `holdout` others, the same way every time.

    When there are too few images for both, the held-out part shrinks first, but never to
    nothing: fidelity needs images the calibration has not seen.
    """
    order = list(paths)
    random.Random(SEED).shuffle(order)
    held = min(holdout, max(1, len(order) // 10)) if len(order) > 1 else 0
    return order[held : held + count], order[:held]


def load(folder: str | Path, count: int = 200, holdout: int = 16, progress=None) -> CalibrationSet:
    """Find, split and read the calibration images of `folder`.

    Args:
        folder: Folder searched recursively for images.
        count: How many images calibrate (fewer if the folder has fewer).
        holdout: How many images to keep out of calibration for the fidelity check.
        progress: Optional callable(advance: int) called once per file read.

    Returns:
        The chosen paths and their frames. Unreadable files are skipped and listed.

    Raises:
        EdgesegError: a missing or empty folder, or no readable image at all.
    """
    if count < 1:
        raise ParameterError(f"{{num_calibration}} {count} must be at least 1", "num_calibration")
    calibration, held = split(find_images(folder), count, holdout)
    frames: dict[Path, np.ndarray] = {}
    skipped: list[Path] = []
    for path in calibration + held:
        frame = read_bgr(path)
        if frame is None:
            skipped.append(path)
        else:
            frames[path] = frame
        if progress is not None:
            progress(1)
    calibration = [p for p in calibration if p in frames]
    if not calibration:
        raise EdgesegError(f"none of the {len(skipped)} image files in {folder} could be read")
    return CalibrationSet(calibration, [p for p in held if p in frames], frames, skipped, Path(folder))


def read_bgr(path: Path) -> np.ndarray | None:
    """Read an image file as a (H, W, 3) uint8 BGR frame, or None if it cannot be read."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else np.zeros(0, np.uint8)
    frame = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return frame if frame is not None and frame.ndim == 3 else None


def representative_dataset(frames: list[np.ndarray], size: tuple[int, int], normalization: Normalization):
    """A TFLiteConverter representative dataset: each frame as the float model sees it at run time.

    Yields:
        [array of shape (1, H, W, 3), float32], one per frame.
    """

    def generate():
        for frame in frames:
            yield [prepare_input(frame, size, normalization, np.float32)]

    return generate
