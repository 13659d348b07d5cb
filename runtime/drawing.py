"""Drawing the result: colour overlays, display modes, a legend of the classes present, status text.

All images are (H, W, 3) uint8 BGR; label maps are (H, W) uint8.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from runtime.text import printable

MODES = ("blend", "side-by-side", "mask")
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.45
_LINE = 18  # pixels per legend row
_MAX_LEGEND_ROWS = 12


def blend(frame_bgr: np.ndarray, colors_bgr: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """`(1 - alpha) * frame + alpha * colors`, rounded to uint8.

    Args:
        frame_bgr: (H, W, 3) uint8.
        colors_bgr: (H, W, 3) uint8, e.g. a colourised label map.
        alpha: 0 (frame only) to 1 (colours only).

    Returns:
        (H, W, 3) uint8.

    Raises:
        ValueError: differing shapes, non-uint8 images, or alpha outside [0, 1].
    """
    if frame_bgr.shape != colors_bgr.shape or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"expected two (H, W, 3) images of one size, got {frame_bgr.shape} and {colors_bgr.shape}")
    if frame_bgr.dtype != np.uint8 or colors_bgr.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {frame_bgr.dtype} and {colors_bgr.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    return cv2.addWeighted(frame_bgr, 1.0 - alpha, colors_bgr, alpha, 0.0)


def compose(frame_bgr: np.ndarray, colors_bgr: np.ndarray, mode: str = "blend", alpha: float = 0.5) -> np.ndarray:
    """The picture shown or saved for one frame.

    Args:
        frame_bgr: (H, W, 3) uint8.
        colors_bgr: (H, W, 3) uint8 colourised labels.
        mode: "blend" (colours over the frame), "side-by-side" (frame | colours, (H, 2W, 3))
            or "mask" (colours only).
        alpha: colour weight for "blend".

    Raises:
        ValueError: an unknown mode, or images as `blend` refuses them.
    """
    if mode == "blend":
        return blend(frame_bgr, colors_bgr, alpha)
    if mode == "side-by-side":
        if frame_bgr.shape != colors_bgr.shape:
            raise ValueError(f"frame {frame_bgr.shape} and colours {colors_bgr.shape} differ in size")
        return np.hstack([frame_bgr, colors_bgr])
    if mode == "mask":
        return colors_bgr.copy()
    raise ValueError(f"unknown mode {mode!r} — choose one of: {', '.join(MODES)}")


def classes_present(labels: np.ndarray, min_fraction: float = 0.001) -> list[int]:
    """Class ids covering at least `min_fraction` of the label map, largest first.

    The threshold keeps a few stray pixels from filling the legend.
    """
    counts = np.bincount(labels.ravel(), minlength=256)
    order = np.argsort(-counts, kind="stable")
    threshold = max(1, int(min_fraction * labels.size))
    return [int(index) for index in order if counts[index] >= threshold]


def _ascii(text: str) -> str:
    # OpenCV's Hershey fonts draw ASCII only.
    return text.encode("ascii", "replace").decode("ascii")


def draw_legend(image: np.ndarray, class_ids: Sequence[int], names: Sequence[str], palette_bgr: np.ndarray) -> None:
    """Draw a colour swatch and name per class at the top left of `image`, in place.

    Args:
        image: (H, W, 3) uint8 BGR, modified.
        class_ids: classes to list, in order (at most 12 are drawn).
        names: class names, index = class id (ids beyond it are shown as "class N").
        palette_bgr: (256, 3) uint8 colours.
    """
    rows = list(class_ids)[:_MAX_LEGEND_ROWS]
    if not rows:
        return
    # Names come from the model file: control characters are shown escaped, long ones cut.
    labels = [_ascii(printable(names[i], limit=40)) if i < len(names) else f"class {i}" for i in rows]
    width = 24 + max(cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] for text in labels)
    height = 6 + _LINE * len(rows)
    width, height = min(width, image.shape[1]), min(height, image.shape[0])
    # A dark translucent panel keeps the names readable on any scene.
    panel = image[:height, :width]
    panel[:] = (panel.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for row, (class_id, text) in enumerate(zip(rows, labels, strict=False)):
        top = 4 + row * _LINE
        color = tuple(int(c) for c in palette_bgr[class_id])
        cv2.rectangle(image, (4, top), (16, top + 12), color, thickness=-1)
        cv2.putText(image, text, (22, top + 11), _FONT, _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)


def draw_status(image: np.ndarray, text: str) -> None:
    """Write one line of status (FPS, latency) at the bottom left of `image`, in place."""
    text = _ascii(text)
    (width, height), baseline = cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)
    bottom = image.shape[0] - 4
    cv2.rectangle(image, (0, bottom - height - baseline - 4), (width + 8, image.shape[0]), (0, 0, 0), thickness=-1)
    cv2.putText(image, text, (4, bottom - baseline), _FONT, _FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
