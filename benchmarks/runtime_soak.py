"""Resident memory over a 2,000-frame run (issue 4 acceptance: growth <= 5 MB after warm-up).

Runs the video pipeline in this process on a 640x480 file with an mp4 output (so capture,
inference, drawing and encoding all take part) and samples RSS from /proc (Linux) every
100 frames. Growth = last sample - sample after the warm-up frames.

    python benchmarks/runtime_soak.py [--model MODEL.tflite] [--threads 2] [--frames 2000] [--warmup 200]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from runtime_models import WORK, make_video, model_argument, resolve_model

from runtime.segmenter import Segmenter
from runtime.sinks import VideoFileSink
from runtime.sources import VideoFileSource
from runtime.video import Pipeline


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_argument(parser)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    model = resolve_model(args)
    video = make_video(args.frames)
    samples: dict[int, float] = {}

    def sample(frames: int) -> None:
        if frames == args.warmup or frames % 100 == 0:
            samples[frames] = round(rss_mb(), 2)

    segmenter = Segmenter(model, num_threads=args.threads)
    source = VideoFileSource(video)
    sink = VideoFileSink(WORK / "soak_out.mp4", source.fps)
    summary = Pipeline(segmenter, source, [sink], on_frame=sample).run()
    sink.path.unlink()  # tens of MB, only written to take part in the run
    last = max(samples)
    growth = samples[last] - samples[args.warmup]
    peak = max(value for frames, value in samples.items() if frames >= args.warmup) - samples[args.warmup]
    print(json.dumps({"summary": summary, "rss_mb": samples}, indent=1))
    print(f"{summary['frames']} frames at {summary['fps']:.1f} FPS; RSS {samples[args.warmup]:.1f} MB after "
          f"{args.warmup} frames, {samples[last]:.1f} MB after {last}: growth {growth:+.2f} MB, peak {peak:+.2f} MB "
          f"(target <= 5 MB): {'PASS' if growth <= 5.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
