"""Streamed against cached training data on CamVid: steps per second and peak memory.

`edgeseg.train(..., cache=False)` reads and decodes every image from disk each epoch (the
path for datasets larger than memory); `cache=True` keeps the decoded frames in memory after
the first epoch. For each, a fresh process trains two epochs of the CamVid training set
(367 frames of 360x480, no validation) and reports the second epoch's steps per second, when
the cache is full, and the process's peak resident memory (ru_maxrss). It also times the
input pipeline alone (the same batches, no model) to show what streaming costs the data side.

    python benchmarks/streaming.py --out benchmarks/results/streaming.json

Defaults: deeplabv3plus_mnv2 at alpha 0.35 (random weights: speed only), 256x256 crops,
batch 8, so 45 steps an epoch.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAMVID = REPO.parent / "shared" / "data" / "camvid"


def _child(mode: str, kind: str, args) -> dict:
    """One measurement in this process: `kind` "train" or "pipeline", `mode` "cached" or "streamed"."""
    cache = mode == "cached"
    size = tuple(int(v) for v in args.input_size.split("x"))
    if kind == "pipeline":
        from edgeseg.datasets import scan_dataset
        from edgeseg.pipeline import TrainingData

        data = TrainingData(scan_dataset(CAMVID / "train", CAMVID / "trainannot", 11, 11), size, args.batch_size,
                            11, cache=cache)  # fmt: skip
        for _ in data.epoch(0):  # fills the cache
            pass
        started = time.perf_counter()
        steps = sum(1 for _ in data.epoch(1))
        rate = steps / (time.perf_counter() - started)
    else:
        import edgeseg
        from edgeseg.presets import get_config

        config = get_config(num_classes=11, input_size=size, backbone_alpha=args.alpha)
        with tempfile.TemporaryDirectory() as folder:
            result = edgeseg.train(config, CAMVID / "train", CAMVID / "trainannot", Path(folder) / "run",
                                   classes=CAMVID / "classes.txt", ignore_index=11, backbone_weights=None,
                                   batch_size=args.batch_size, epochs=2, cache=cache)  # fmt: skip
        steps = result.steps // 2
        rate = steps / result.history[1]["seconds"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"mode": mode, "kind": kind, "steps_per_second": round(rate, 3), "peak_rss_mb": round(peak_mb)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Write the results here as JSON.")
    parser.add_argument("--input-size", default="256x256")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=0.35)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child, args)))
        return
    if not CAMVID.is_dir():
        sys.exit(f"error: CamVid not found at {CAMVID}")
    passed = ["--input-size", args.input_size, "--batch-size", str(args.batch_size), "--alpha", str(args.alpha)]
    rows = []
    for kind in ("pipeline", "train"):
        for mode in ("cached", "streamed"):
            output = subprocess.run([sys.executable, __file__, "--child", mode, kind, *passed], check=True,
                                    capture_output=True, text=True).stdout  # fmt: skip
            rows.append(json.loads(output.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    report = {"input_size": args.input_size, "batch_size": args.batch_size, "alpha": args.alpha, "results": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
