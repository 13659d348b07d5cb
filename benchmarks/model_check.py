"""What the trial load in a child process (`runtime.probe`) adds to loading a model.

    python benchmarks/model_check.py MODEL.tflite [MODEL.tflite ...] [--repeats 5] [--threads 2]

Per model, medians over `--repeats` rounds, each with an empty model-check cache:
- "first": `check_model_in_child` when the verdict is not known yet (a child Python starts,
  imports the interpreter, loads, allocates and runs the model once);
- "cached": the same call once the verdict is remembered (the file is read through SHA-256);
- "load": `Segmenter(MODEL)` itself without the check, for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime import Segmenter  # noqa: E402
from runtime.backend import find_backend  # noqa: E402
from runtime.console import held_stderr  # noqa: E402
from runtime.probe import check_model_in_child  # noqa: E402


def _ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def measure(model: Path, repeats: int, threads: int) -> dict:
    """{"model", "size_mb", "first_ms", "cached_ms", "load_ms"} (medians)."""
    backend = find_backend().name
    first, cached, load = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            os.environ["XDG_CACHE_HOME"] = cache
            first.append(_ms(lambda: check_model_in_child(model, backend, None, threads)))
            cached.append(_ms(lambda: check_model_in_child(model, backend, None, threads)))
            # The verdict is known now, so this is the load alone (plus the cached check, subtracted).
            with held_stderr():
                load.append(_ms(lambda: Segmenter(model, num_threads=threads)) - cached[-1])
    return {
        "model": model.name,
        "size_mb": round(model.stat().st_size / 1e6, 2),
        "first_ms": round(statistics.median(first), 1),
        "cached_ms": round(statistics.median(cached), 2),
        "load_ms": round(statistics.median(load), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("| model | size | trial load, first time | cached verdict | the load itself |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for model in args.models:
        row = measure(model, args.repeats, args.threads)
        print(f"| {row['model']} | {row['size_mb']} MB | {row['first_ms']} ms | {row['cached_ms']} ms "
              f"| {row['load_ms']} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
