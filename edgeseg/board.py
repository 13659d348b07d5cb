"""TensorBoard event files of a run, in `OUT/tensorboard/` (watch with `tensorboard --logdir OUT`).

Written with `tf.summary.write` in TensorBoard's own record layout (the scalars and images
plugins), which TensorFlow has built in: `tf.summary.scalar` and `tf.summary.image` are
implemented by the `tensorboard` package, which is needed only to view the files. Every step adds the training loss and learning rate; every epoch its
history row; every validation the mIoU, each class's IoU and a few validation images with
the model's labels drawn over them.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from edgeseg.classes import read_classes_json
from edgeseg.datasets import DatasetInfo, read_image
from runtime.drawing import blend

FOLDER = "tensorboard"
OVERLAY_IMAGES = 3
_METADATA = tf.compat.v1.SummaryMetadata
# What TensorBoard's scalars and images plugins write (data classes 1: scalar, 3: blob sequence).
_SCALAR = _METADATA(plugin_data=_METADATA.PluginData(plugin_name="scalars"), data_class=1)
_IMAGE = _METADATA(plugin_data=_METADATA.PluginData(plugin_name="images"), data_class=3)


def _scalar(tag: str, value: float) -> None:
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=_SCALAR)


def _image(tag: str, rgb: np.ndarray) -> None:
    """One (H, W, 3) uint8 RGB image: the images plugin stores [width, height, PNG bytes]."""
    height, width = rgb.shape[:2]
    tf.summary.write(tag, tf.stack([str(width), str(height), tf.io.encode_png(rgb)]), metadata=_IMAGE)


class Board:
    """The TensorBoard writer of one run.

    Args:
        out_dir: The run folder, holding classes.json (names and colours of the classes).
        num_classes: C.
    """

    def __init__(self, out_dir: Path, num_classes: int):
        self.writer = tf.summary.create_file_writer(str(out_dir / FOLDER))
        classes = read_classes_json(out_dir, num_classes) or {}
        self.names = classes.get("classes") or [f"class {index}" for index in range(num_classes)]
        # (C + 1, 3) BGR, the last row for labels outside the classes.
        colors = [color[::-1] for color in classes.get("colors") or [[128, 128, 128]] * num_classes]
        self.palette_bgr = np.array([*colors, [0, 0, 0]], np.uint8)

    def step(self, step: int, loss: float, lr: float) -> None:
        """The loss and learning rate of optimizer step `step` (1-based)."""
        with self.writer.as_default(step=step):
            _scalar("step/loss", loss)
            _scalar("step/learning_rate", lr)

    def epoch(self, row: dict, step: int) -> None:
        """The scores of a history row (validation ones when validation ran)."""
        with self.writer.as_default(step=step):
            for key in ("loss", "train_accuracy", "lr", "val_miou", "val_pixel_accuracy"):
                if math.isfinite(row[key]):
                    _scalar(f"epoch/{key}", row[key])
        self.writer.flush()

    def validation(self, step: int, per_class_iou: np.ndarray, segmenter, val: DatasetInfo) -> None:
        """Each class's IoU, and the first `OVERLAY_IMAGES` validation images with their labels.

        Args:
            step: The optimizer step.
            per_class_iou: (C,) float, NaN for classes neither present nor predicted.
            segmenter: Has `segment(frame_bgr) -> (H, W) uint8` (the validated model).
            val: The validation set.
        """
        with self.writer.as_default(step=step):
            for name, iou in zip(self.names, per_class_iou):
                if math.isfinite(iou):
                    _scalar(f"val_iou/{name}", float(iou))
            for image_path in val.images[:OVERLAY_IMAGES]:
                frame = read_image(image_path)
                labels = np.minimum(segmenter.segment(frame), len(self.palette_bgr) - 1)
                overlay = blend(frame, self.palette_bgr[labels])
                _image(f"val_overlay/{Path(image_path).stem}", cv2.cvtColor(overlay, cv2.COLOR_BGR2RGB))
        self.writer.flush()
