"""Acceptance benchmark of `edgeseg convert` on this machine (issue: int8 that proves itself).

For `deeplabv3plus_mnv2` at 513x513 and 257x257 with default options it measures, in one run:
- whether every op is int8 (`--strict-int8`) and the graph is one XNNPACK partition;
- size of the int8 model against float32;
- invoke latency int8 / float32 of the DeepLab model and of its MobileNetV2 backbone alone
  (keras.applications.MobileNetV2, include_top=False, converted the same way), interleaved
  so that both ratios see the same machine state; the DeepLab ratio should be no worse than
  1.05 x the backbone's;
- end-to-end latency through the runtime (640x480 BGR frame in, label map out);
- conversion time of the 513x513 model with 200 calibration images.

Usage (CamVid train images as calibration when ../shared is present, else calibration_data/):

    python benchmarks/convert_int8.py [--threads 2] [--runs 30] [--out benchmarks/results/convert_int8.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import edgeseg  # noqa: E402
from converters.tflite import convert  # noqa: E402
from converters import calibration  # noqa: E402
from edgeseg.model import build_model  # noqa: E402
from edgeseg.presets import get_config  # noqa: E402
from runtime.backend import load_interpreter  # noqa: E402
from runtime.bench import benchmark  # noqa: E402
from runtime.processing import Normalization  # noqa: E402

SHARED = REPO.parent / "shared"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_no_top_imagenet_q8.weights.h5"
CAMVID_TRAIN = SHARED / "data" / "camvid" / "train"


def invoke_ms(path: Path, threads: int) -> float:
    """One timed invoke of an allocated, warmed-up interpreter (random input)."""
    interpreter, _ = load_interpreter(path, threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    info = np.iinfo(detail["dtype"]) if detail["dtype"] != np.float32 else None
    data = (np.random.default_rng(0).integers(info.min, info.max + 1, detail["shape"]).astype(detail["dtype"])
            if info else np.random.default_rng(0).uniform(-1, 1, detail["shape"]).astype(np.float32))
    interpreter.set_tensor(detail["index"], data)
    for _ in range(3):
        interpreter.invoke()
    return lambda: _timed(interpreter)


def _timed(interpreter) -> float:
    start = time.perf_counter()
    interpreter.invoke()
    return (time.perf_counter() - start) * 1e3


def interleaved_medians(paths: dict[str, Path], threads: int, runs: int) -> dict[str, float]:
    """Median invoke time per model, the models timed in turn so drift hits all alike."""
    timers = {label: invoke_ms(path, threads) for label, path in paths.items()}
    samples = {label: [] for label in paths}
    for _ in range(runs):
        for label, timer in timers.items():
            samples[label].append(timer())
    return {label: round(statistics.median(values), 2) for label, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "convert_int8.json")
    args = parser.parse_args()
    folder = CAMVID_TRAIN if CAMVID_TRAIN.is_dir() else REPO / "calibration_data"
    weights = WEIGHTS if WEIGHTS.is_file() else None
    results = {"threads": args.threads, "calibration": str(folder), "sizes": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        paths = {}
        for size in ((513, 513), (257, 257)):
            name = f"deeplabv3plus_mnv2_{size[0]}"
            model = build_model(get_config(input_size=size), backbone_weights=weights)
            start = time.perf_counter()
            report = edgeseg.convert(model, scratch / f"{name}.tflite", calibration=folder, strict_int8=True,
                                     threads=args.threads)  # fmt: skip
            seconds = time.perf_counter() - start
            end_to_end = benchmark(scratch / f"{name}.tflite", args.threads, runs=args.runs)
            results["sizes"][name] = {
                "strict_int8": "passed",
                "delegate_partitions": report["ops"]["delegate_partitions"],
                "outside_delegate": [op["op"] for op in report["ops"]["outside_delegate"]],
                "size_mb": round(report["size_bytes"]["converted"] / 1e6, 3),
                "float32_size_mb": round(report["size_bytes"]["float32"] / 1e6, 3),
                "size_ratio": round(report["size_ratio"], 4),
                "convert_seconds_with_report": round(seconds, 1),
                "calibration_images": report["calibration"]["images"],
                "end_to_end_640x480_ms": end_to_end["total_ms"],
                "pre_ms": end_to_end["pre_ms"], "invoke_ms": end_to_end["invoke_ms"], "post_ms": end_to_end["post_ms"],
            }  # fmt: skip
            print(name, json.dumps(results["sizes"][name]), flush=True)
            if size == (513, 513):
                paths["deeplab_int8"] = scratch / f"{name}.tflite"
                paths["deeplab_float32"] = scratch / "deeplab_float32.tflite"
                paths["deeplab_float32"].write_bytes(convert(model, "float32"))
                inputs = keras.Input((*size, 3), batch_size=1)
                backbone = keras.Model(inputs, keras.applications.MobileNetV2(
                    input_tensor=inputs, include_top=False, weights=str(weights) if weights else None).output)
                frames = [calibration.read_bgr(p) for p in calibration.find_images(folder)[:200]]
                representative = calibration.representative_dataset(frames, size, Normalization())
                paths["backbone_int8"] = scratch / "backbone_int8.tflite"
                paths["backbone_int8"].write_bytes(convert(backbone, "int8", "uint8", representative))
                paths["backbone_float32"] = scratch / "backbone_float32.tflite"
                paths["backbone_float32"].write_bytes(convert(backbone, "float32"))
        medians = interleaved_medians(paths, args.threads, args.runs)
    deeplab_ratio = medians["deeplab_int8"] / medians["deeplab_float32"]
    backbone_ratio = medians["backbone_int8"] / medians["backbone_float32"]
    results["invoke_ms_513"] = medians
    results["int8_over_float32"] = {"deeplab": round(deeplab_ratio, 3), "backbone": round(backbone_ratio, 3),
                                    "deeplab_over_backbone": round(deeplab_ratio / backbone_ratio, 3)}  # fmt: skip
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
