"""A run's history: `history.csv`, `curves.png`, and the one-line summary of an epoch."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np

from runtime.atomic import atomic_path

HISTORY_COLUMNS = ("epoch", "lr", "loss", "train_accuracy", "val_miou", "val_pixel_accuracy", "seconds")


def write_history(history: list[dict], path: Path) -> None:
    """history.csv, one row per epoch (empty cells where validation did not run)."""
    with atomic_path(path) as temp:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(HISTORY_COLUMNS)
            for row in history:
                writer.writerow(["" if isinstance(row[key], float) and math.isnan(row[key]) else
                                 (f"{row[key]:.6g}" if isinstance(row[key], float) else row[key])
                                 for key in HISTORY_COLUMNS])  # fmt: skip


def draw_curves(history: list[dict], path: Path) -> None:
    """curves.png: training loss (left), training accuracy and validation mIoU (right)."""
    width, height, margin = 900, 360, 50
    canvas = np.full((height, width, 3), 255, np.uint8)
    epochs = [row["epoch"] for row in history]
    panels = [
        ("training loss", [("loss", [row["loss"] for row in history], (200, 80, 0))]),
        ("accuracy", [("train accuracy", [row["train_accuracy"] for row in history], (0, 150, 0)),
                             ("val mIoU", [row["val_miou"] for row in history], (0, 0, 220))]),
    ]  # fmt: skip
    panel_width = width // 2
    font = cv2.FONT_HERSHEY_SIMPLEX
    for index, (title, series) in enumerate(panels):
        left, right = index * panel_width + margin, (index + 1) * panel_width - 20
        top, bottom = 40, height - margin
        values = [v for _, ys, _ in series for v in ys if math.isfinite(v)]
        low, high = (min(values), max(values)) if values and index == 0 else (0.0, 1.0)
        if high - low < 1e-9:
            low, high = low - 0.5, high + 0.5
        cv2.rectangle(canvas, (left, top), (right, bottom), (0, 0, 0), 1)
        cv2.putText(canvas, title, (left, 25), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        for fraction in (0.0, 0.5, 1.0):
            y = int(bottom - fraction * (bottom - top))
            cv2.putText(canvas, f"{low + fraction * (high - low):.3g}", (left - 45, y + 4), font, 0.35,
                        (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
        first, last = (epochs[0], epochs[-1]) if epochs else (0, 1)
        for epoch in sorted({first, last}):
            x = left if last == first else int(left + (epoch - first) / (last - first) * (right - left))
            cv2.putText(canvas, str(epoch), (x - 5, bottom + 16), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, "epoch", ((left + right) // 2 - 20, bottom + 34), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)

        def point(epoch, value):
            x = left if last == first else left + (epoch - first) / (last - first) * (right - left)
            return int(x), int(bottom - (value - low) / (high - low) * (bottom - top))

        for number, (name, ys, color) in enumerate(series):
            points = [point(e, v) for e, v in zip(epochs, ys) if math.isfinite(v)]
            for a, b in zip(points, points[1:]):
                cv2.line(canvas, a, b, color, 2, cv2.LINE_AA)
            for p in points:
                cv2.circle(canvas, p, 3, color, -1, cv2.LINE_AA)
            cv2.putText(canvas, name, (right - 130 * (len(series) - number), 25), font, 0.45, color, 1, cv2.LINE_AA)
    with atomic_path(path) as temp:
        cv2.imwrite(str(temp), canvas)


def epoch_line(row: dict, epochs: int, best: bool) -> str:
    """One epoch in words: loss, training accuracy, validation scores (when run), lr, time.

    Args:
        row: A history row.
        epochs: Total epochs of the run.
        best: Whether this epoch's model became best.keras by validation mIoU.
    """
    line = (f"epoch {row['epoch']}/{epochs}  loss {row['loss']:.4f}  "
            f"train acc {100 * row['train_accuracy']:.1f}%")  # fmt: skip
    validated = math.isfinite(row["val_miou"])
    if validated:
        line += f"  val mIoU {100 * row['val_miou']:.2f}%  val acc {100 * row['val_pixel_accuracy']:.1f}%"
    return line + f"  lr {row['lr']:.2e}  {row['seconds']:.0f} s" + ("  (best)" if best and validated else "")
