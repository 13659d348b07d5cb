"""`edgeseg run --video` sustained frame rate against 1 / invoke latency (issue 4 acceptance).

Writes a 640x480 mp4 (CamVid frames, upscaled and looped), runs `edgeseg run` on it in a
fresh process (no output, then --output out.mp4) and compares its FPS with 1 / the median
invoke latency measured by `runtime.bench` at the same thread count just before and after.
Target: >= 0.9. Meaningless on a loaded machine: check the load average first.

    python benchmarks/runtime_video_fps.py [--model MODEL.tflite] [--threads 2] [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from runtime_models import WORK, frames_640x480, make_video, model_argument, resolve_model

from runtime.bench import benchmark


def run(model, video, threads: int, *extra: str) -> dict:
    command = [sys.executable, "-m", "edgeseg", "run", str(model), "--video", str(video), "--no-display",
               "--threads", str(threads), "--json", *extra]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_argument(parser)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    model = resolve_model(args)
    video = make_video(args.frames)
    frame = frames_640x480(1)[0]
    out = WORK / "fps_out.mp4"
    for label, extra in (("no output", ()), ("--output out.mp4", ("--output", str(out)))):
        # Invoke alone is timed just before and after each run, and averaged: on a shared
        # machine the background load drifts.
        before = benchmark(model, args.threads, runs=60, warmup=10, frame_bgr=frame)["invoke_ms"]["p50"]
        summary = run(model, video, args.threads, *extra)
        after = benchmark(model, args.threads, runs=60, warmup=10, frame_bgr=frame)["invoke_ms"]["p50"]
        invoke = (before + after) / 2
        ratio = summary["fps"] * invoke / 1000.0
        print(f"{label:>18}: {summary['frames']} frames, {summary['fps']:.1f} FPS = {ratio:.2f} x (1 / invoke) "
              f"(target >= 0.9: {'PASS' if ratio >= 0.9 else 'FAIL'}); invoke alone p50 {before:.2f} / {after:.2f} "
              f"ms before / after, in the run {summary['invoke_ms']['p50']:.2f} ms; "
              f"pre {summary['pre_ms']['p50']:.2f}, post {summary['post_ms']['p50']:.2f} ms ({args.threads} threads)")
    out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
