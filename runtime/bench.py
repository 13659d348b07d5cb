"""Latency of a model through the whole runtime path, on a real-sized frame.

Pre-processing, invoke, post-processing and end to end (`Segmenter.segment`, a 640x480 BGR
frame in, a 640x480 label map out), as p50/p95 over repeated runs after a warm-up.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.segmenter import Segmenter
from runtime.video import percentiles

FRAME_SIZE = (480, 640)  # (height, width): a VGA camera frame


def synthetic_frame(size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """A deterministic street-scene-like test frame: sky and road gradients, blocks, noise.

    Returns:
        (height, width, 3) uint8 BGR.
    """
    height, width = size
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky, road = np.array([235, 200, 160], np.float32), np.array([110, 105, 100], np.float32)
    frame = (sky * (1 - rows) + road * rows) * np.ones((1, width, 1), np.float32)
    for _ in range(12):
        top, left = int(rng.integers(0, height - 40)), int(rng.integers(0, width - 40))
        bottom, right = top + int(rng.integers(20, height // 3)), left + int(rng.integers(20, width // 4))
        frame[top:bottom, left:right] = rng.integers(0, 256, 3)
    frame += rng.normal(0.0, 6.0, frame.shape).astype(np.float32)
    return cv2.GaussianBlur(np.clip(frame, 0, 255).astype(np.uint8), (3, 3), 0)


def benchmark(
    model_path: str | Path,
    num_threads: int,
    runs: int = 50,
    warmup: int = 5,
    frame_bgr: np.ndarray | None = None,
    backend: str | None = None,
    delegate: str | None = None,
) -> dict[str, Any]:
    """Time one model at one thread count.

    Args:
        model_path: a .tflite segmentation model.
        num_threads: interpreter threads.
        runs: timed frames.
        warmup: untimed frames first (XNNPACK packs weights on the first invoke).
        frame_bgr: (H, W, 3) uint8 BGR; a 640x480 `synthetic_frame` by default.
        backend: force an interpreter backend.
        delegate: see `runtime.backend.load_interpreter`.

    Returns:
        {"model", "backend", "threads", "input", "output", "frame": [H, W], "runs",
        "pre_ms", "invoke_ms", "post_ms", "total_ms" (each {"p50", "p95"}), "fps" (1000 /
        total p50)}.

    Raises:
        EdgesegError: the model cannot be loaded or is not a segmentation model.
    """
    frame = synthetic_frame() if frame_bgr is None else frame_bgr
    segmenter = Segmenter(model_path, num_threads=num_threads, backend=backend, delegate=delegate)
    for _ in range(warmup):
        segmenter.segment(frame)
    pre, invoke, post, total = [], [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        segmenter.segment(frame)
        total.append((time.perf_counter() - start) * 1e3)
        timing = segmenter.last_timing
        pre.append(timing.pre_ms)
        invoke.append(timing.invoke_ms)
        post.append(timing.post_ms)
    total_ms = percentiles(total)
    return {
        "model": str(model_path),
        "backend": segmenter.backend,
        "threads": segmenter.num_threads,
        "input": segmenter.spec.input.describe(),
        "output": segmenter.spec.output.describe(),
        "frame": list(frame.shape[:2]),
        "runs": runs,
        "pre_ms": percentiles(pre),
        "invoke_ms": percentiles(invoke),
        "post_ms": percentiles(post),
        "total_ms": total_ms,
        "fps": round(1000.0 / total_ms["p50"], 1) if total_ms["p50"] > 0 else 0.0,
    }
