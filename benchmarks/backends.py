"""LiteRT (ai-edge-litert) and tflite-runtime side by side on an edgeseg int8 model.

Runs `edgeseg bench MODEL --backend ai_edge_litert,tflite_runtime` (the command the README
shows) and prints a Markdown table: p50 of invoke and end to end per backend and thread count,
and the ratio tflite_runtime / LiteRT. Also reports how often the two backends give the same
label on CamVid frames, since their int8 kernels round differently.

Run it with a Python that has both backends, i.e. a venv with `pip install -e '.[tflite-runtime]'`
(.ci/tflite_runtime.sh makes one: .ci/venv-tflite-runtime):

    .ci/venv-tflite-runtime/bin/python benchmarks/backends.py [--model M.tflite] [--threads 1,2,4] [--runs 30]

Without --model, the default preset (deeplabv3plus_mnv2, 513x513, 21 classes) is converted
once with `edgeseg convert` and the local ImageNet backbone weights of ../shared, by
--convert-python (default: .venv/bin/python; it needs TensorFlow, which this venv lacks).
Not a test; timings on a shared machine are provisional.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CAMVID_VAL = REPO.parent / "shared" / "data" / "camvid" / "val"
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2_1.0_no_top_imagenet_q8.weights.h5"
WORK = Path(os.environ.get("EDGESEG_BENCH_DIR", "/tmp/edgeseg-bench"))
BACKENDS = ("ai_edge_litert", "tflite_runtime")


def default_model(convert_python: str) -> Path:
    """The default preset as `edgeseg convert` makes it (made once, in the work folder)."""
    path = WORK / "deeplabv3plus_mnv2_513_imagenet_int8.tflite"
    if path.exists():
        return path
    weights = str(WEIGHTS) if WEIGHTS.is_file() else "imagenet"
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run([convert_python, "-m", "edgeseg", "convert", "--backbone-weights", weights,
                    "--num-calibration", "64", "--out", str(path)], check=True, cwd=REPO)  # fmt: skip
    return path


def bench(model: Path, threads: str, runs: int) -> list[dict]:
    """`edgeseg bench` of both backends, parsed from its --json output."""
    command = [sys.executable, "-m", "edgeseg", "bench", str(model), "--backend", ",".join(BACKENDS),
               "--threads", threads, "--runs", str(runs), "--json"]  # fmt: skip
    result = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(result.stdout)


def agreement(model: Path, frames: int) -> float | None:
    """Fraction of pixels given the same label by both backends, over CamVid validation frames."""
    from runtime import Segmenter  # noqa: PLC0415
    from runtime.console import held_stderr  # noqa: PLC0415

    paths = sorted(CAMVID_VAL.glob("*.png"))[::12][:frames]
    if not paths:
        return None
    with held_stderr():
        segmenters = [Segmenter(model, backend=name) for name in BACKENDS]
    same = total = 0
    for path in paths:
        frame = cv2.imread(str(path))
        first, second = (segmenter.segment(frame) for segmenter in segmenters)
        same += int(np.count_nonzero(first == second))
        total += first.size
    return same / total


def table(results: list[dict]) -> str:
    """Markdown: one row per thread count, both backends' p50 and the ratio."""
    rows = {(row["backend"], row["threads"]): row for row in results}
    counts = sorted({row["threads"] for row in results})
    columns = ("threads", "LiteRT invoke", "tflite-runtime invoke", "ratio", "LiteRT end to end",
               "tflite-runtime end to end")  # fmt: skip
    lines = [f"| {' | '.join(columns)} |", "|" + " ---: |" * len(columns)]
    for count in counts:
        litert, tflite = rows[(BACKENDS[0], count)], rows[(BACKENDS[1], count)]
        invoke = [row["invoke_ms"]["p50"] for row in (litert, tflite)]
        total = [row["total_ms"]["p50"] for row in (litert, tflite)]
        lines.append(f"| {count} | {invoke[0]:.1f} ms | {invoke[1]:.1f} ms | {invoke[1] / invoke[0]:.1f}x "
                     f"| {total[0]:.1f} ms | {total[1]:.1f} ms |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an int8 .tflite model (default: the converted default preset)")
    parser.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2,4")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--agreement-frames", type=int, default=8)
    parser.add_argument("--convert-python", default=str(REPO / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    model = args.model or default_model(args.convert_python)
    results = bench(model, args.threads, args.runs)
    print(json.dumps(results, indent=1))
    first = results[0]
    print(f"\n{model.name}: {first['input']} -> {first['output']}, {first['frame'][1]}x{first['frame'][0]} frame, "
          f"p50 of {args.runs} runs\n")  # fmt: skip
    print(table(results))
    same = agreement(model, args.agreement_frames)
    if same is not None:
        print(f"\nsame label from both backends on {same:.2%} of the pixels of {args.agreement_frames} CamVid frames")


if __name__ == "__main__":
    main()
