"""Pre- plus post-processing against invoke, for an int8 513x513 model (issue 4 acceptance).

A 640x480 BGR frame in, a 640x480 label map out, through `runtime.Segmenter`.
Target: (pre + post) <= 10% of invoke, medians from one run.

    python benchmarks/runtime_latency.py [--model MODEL.tflite] [--threads 2] [--runs 100]
"""

from __future__ import annotations

import argparse
import json

from runtime_models import frames_640x480, model_argument, resolve_model

from runtime.bench import benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_argument(parser)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    model = resolve_model(args)
    result = benchmark(model, args.threads, runs=args.runs, warmup=10, frame_bgr=frames_640x480(1)[0])
    pre, invoke, post = (result[key]["p50"] for key in ("pre_ms", "invoke_ms", "post_ms"))
    ratio = (pre + post) / invoke
    print(json.dumps(result, indent=1))
    print(f"pre {pre:.2f} ms + post {post:.2f} ms = {pre + post:.2f} ms = {ratio:.1%} of invoke {invoke:.1f} ms "
          f"(target <= 10%): {'PASS' if ratio <= 0.10 else 'FAIL'}")


if __name__ == "__main__":
    main()
