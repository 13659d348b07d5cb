"""What `edgeseg convert` proves about its output: ops, sizes, latency, fidelity, coverage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from converters.calibration import read_bgr
from edgeseg.datasets import DatasetInfo
from edgeseg.evaluation import LoadedModel, score
from edgeseg.metrics import json_number
from runtime.backend import load_interpreter
from runtime.errors import EdgesegError
from runtime.bench import benchmark
from runtime.inspect import DELEGATE_OP, list_ops, summarize_ops
from runtime.segmenter import Segmenter

QUANTIZED = {"int8", "uint8", "int32", "int16"}  # int32: biases and arg-max indices


def op_report(path: Path, num_threads: int | None = None) -> dict:
    """Ops by type with operand dtypes, the float and (de)quantize ops inside the graph, and
    what XNNPACK left outside its partitions.

    Returns:
        {"ops": [{"op", "inputs", "outputs", "count"}], "float_ops": [names],
        "quantize_ops": [names inside the graph], "boundary_ops": [input QUANTIZE /
        output DEQUANTIZE], "delegate_partitions": int, "outside_delegate": [{"op", "name"}]}.
    """
    interpreter, _ = load_interpreter(path, num_threads)
    interpreter.allocate_tensors()
    ops = list_ops(interpreter)
    graph_inputs = {d["name"] for d in interpreter.get_input_details()}
    graph_outputs = {d["name"] for d in interpreter.get_output_details()}
    nodes = [op for op in ops if op["op"] != DELEGATE_OP]
    float_ops, quantize_ops, boundary_ops = [], [], []
    for op in nodes:
        name = _op_name(op)
        if op["op"] in ("QUANTIZE", "DEQUANTIZE"):
            at_boundary = set(op["input_names"]) & graph_inputs or set(op["output_names"]) & graph_outputs
            (boundary_ops if at_boundary else quantize_ops).append(name)
        elif not set(op["inputs"] + op["outputs"]) <= QUANTIZED:
            float_ops.append(name)
    outside = [{"op": op["op"], "name": _op_name(op)} for op in nodes if not op["delegated"]]
    return {
        "ops": summarize_ops(ops),
        "float_ops": float_ops,
        "quantize_ops": quantize_ops,
        "boundary_ops": boundary_ops,
        "delegate_partitions": sum(op["op"] == DELEGATE_OP for op in ops),
        "outside_delegate": outside,
    }


def _op_name(op: dict) -> str:
    return f"{op['op']} -> {op['output_names'][0] if op['output_names'] else '?'}"


def latency(paths: dict[str, Path], num_threads: int, runs: int = 20) -> dict:
    """Median invoke time of each model through the runtime, same threads, one after another.

    Returns:
        {label: {"invoke_ms": median, "total_ms": median end to end on a 640x480 frame}}.
    """
    results = {}
    for label, path in paths.items():
        timing = benchmark(path, num_threads, runs=runs, warmup=3)
        results[label] = {"invoke_ms": timing["invoke_ms"]["p50"], "total_ms": timing["total_ms"]["p50"]}
    return results


def fidelity_on_masks(float_path: Path, converted_path: Path, info: DatasetInfo, classes: list[str],
                      ignore_index: int, num_threads: int | None = None, progress=None) -> dict:  # fmt: skip
    """mIoU and per-class IoU of the float and converted models on labelled images.

    Scored by `edgeseg.evaluation.score`, as `edgeseg eval` and training's validation score.

    Args:
        info: The labelled images, checked by `edgeseg.datasets.scan_dataset`.
        classes: The class names.
        ignore_index: Mask value left out.
        progress: Called once per image and model.

    Returns:
        {"images", "float_miou", "converted_miou", "miou_drop", "per_class": [{"class",
        "float_iou", "converted_iou", "drop"}]}: IoUs in [0, 1]; null where a class is in
        neither the masks nor the predictions (and a mean over no class).
    """
    metrics = {}
    for label, path in (("float", float_path), ("converted", converted_path)):
        model = LoadedModel(Path(path), "tflite", Segmenter(path, num_threads=num_threads), len(classes))
        metrics[label] = score(model, info, len(classes), ignore_index, progress).metrics
    per_class = [
        {"class": name, "float_iou": json_number(f), "converted_iou": json_number(c), "drop": json_number(f - c)}
        for name, f, c in zip(classes, metrics["float"].per_class_iou, metrics["converted"].per_class_iou)
    ]  # fmt: skip
    float_miou, converted_miou = metrics["float"].miou, metrics["converted"].miou
    return {"images": len(info), "float_miou": json_number(float_miou), "converted_miou": json_number(converted_miou),
            "miou_drop": json_number(float_miou - converted_miou), "per_class": per_class}  # fmt: skip


def agreement(float_path: Path, converted_path: Path, frames: list[np.ndarray],
              num_threads: int | None = None) -> dict:  # fmt: skip
    """Share of pixels where the float and converted models give the same class.

    Returns:
        {"images", "pixel_agreement" (mean over images, in [0, 1]), "worst_image"}.
    """
    float_model = Segmenter(float_path, num_threads=num_threads)
    converted = Segmenter(converted_path, num_threads=num_threads)
    scores = [float(np.mean(float_model.segment(f) == converted.segment(f))) for f in frames]
    return {"images": len(frames), "pixel_agreement": float(np.mean(scores)) if scores else None,
            "worst_image": float(min(scores)) if scores else None}  # fmt: skip


def coverage(float_path: Path, frames: list[np.ndarray], classes: list[str],
             num_threads: int | None = None) -> dict:  # fmt: skip
    """Which classes the float model predicts anywhere on the calibration images.

    A class it never predicts there has no activations to calibrate on, so it quantizes badly.

    Returns:
        {"images", "pixels_per_class": [share of pixels], "missing": [class names]}.
    """
    segmenter = Segmenter(float_path, num_threads=num_threads)
    counts = np.zeros(max(len(classes), 256), np.int64)
    for frame in frames:
        counts += np.bincount(segmenter.segment(frame).ravel(), minlength=counts.size)
    shares = counts[: len(classes)] / max(1, counts.sum())
    return {"images": len(frames), "pixels_per_class": [float(s) for s in shares],
            "missing": [name for name, count in zip(classes, counts) if count == 0]}  # fmt: skip



class BackgroundCoverage:
    """`coverage` of the images at `paths`, computed in a child process on one thread.

    TFLite's calibrator runs on one core and holds the GIL while it does, so a thread would
    wait for it; a process uses the idle core. `result()` waits for the answer; `stop()` ends
    the child if it is still running (on Ctrl-C or a failed conversion).
    """

    def __init__(self, float_path: Path, paths: list[Path], classes: list[str]):
        request = json.dumps({"model": str(float_path), "images": [str(p) for p in paths], "classes": classes})
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._child = subprocess.Popen([sys.executable, "-m", "converters.report", request], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       start_new_session=True)  # fmt: skip

    def result(self) -> dict:
        out, err = self._child.communicate()
        if self._child.returncode != 0:
            last = (err.strip().splitlines() or ["no message"])[-1]
            raise EdgesegError(f"the class-coverage check failed: {last}")
        return json.loads(out)

    def stop(self) -> None:
        if self._child.poll() is None:
            self._child.kill()
            self._child.wait()


if __name__ == "__main__":  # the child of BackgroundCoverage
    job = json.loads(sys.argv[1])
    frames = [read_bgr(Path(path)) for path in job["images"]]
    print(json.dumps(coverage(Path(job["model"]), frames, job["classes"], 1)))
