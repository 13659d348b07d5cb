"""The same Pascal VOC weights, two graphs: Google's quantized DeepLabV3 vs edgeseg's int8 conversion.

Google's `deeplabv3_mnv2_pascal_quant.tflite` (depth 1.0, uint8, 513x513) resizes its 21 logit
channels to 513x513 and arg-maxes them inside the graph. edgeseg's model is the same network
with the same weights (imported by `edgeseg.pretrained.importer`), converted by `edgeseg convert`
with its defaults: int8, uint8 input, int8 logits at stride 16, arg-max and a label-map resize in
the runtime. Both are run through `runtime.Segmenter` from a 640x480 BGR frame to a 640x480
label map, timed in turn (rounds alternate the two models, p50 of each round, median over
rounds), on the same threads.

Agreement: each model's 640x480 label maps against the float import's (the Keras model with the
imported weights), on the 88 photographs of calibration_data/ stretched to 640x480. The float
label map is computed with each model's own post-processing, so only the weights and their
quantization differ: Google's model against the float model's logits resized to 513x513
(bilinear, corners aligned) and arg-maxed; edgeseg's against the float logits arg-maxed at
stride 16. (edgeseg's int8 model was calibrated on 80 of these photographs.)

    python benchmarks/google_deeplab_speed.py [--model model.tflite] [--threads 2] [--rounds 5]
        [--out benchmarks/results/google_deeplab_speed.json]

Without `--model`, the edgeseg model is converted first (about two minutes). Needs TensorFlow
and ../shared/models/google-deeplab.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from converters.convert import convert  # noqa: E402
from edgeseg.layers import StaticResize  # noqa: E402
from edgeseg.model import build_model  # noqa: E402
from runtime import Segmenter  # noqa: E402
from runtime.bench import benchmark  # noqa: E402
from runtime.processing import prepare_input, resize_labels  # noqa: E402

GOOGLE = REPO.parent / "shared" / "models" / "google-deeplab" / "deeplabv3_mnv2_pascal_quant.tflite"
FRAME = (480, 640)


def frames() -> list[np.ndarray]:
    """The calibration photographs as 640x480 BGR camera frames."""
    paths = sorted((REPO / "calibration_data").glob("*.jpg"))
    return [cv2.resize(cv2.imread(str(p)), FRAME[::-1], interpolation=cv2.INTER_AREA) for p in paths]


def float_labels(images: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The float import's 640x480 label maps: Google's post-processing, and the runtime's."""
    model = build_model("deeplabv3_mnv2", weights="pascalvoc")
    upsample = StaticResize((513, 513))  # what `head_upsample` adds: corner-aligned, as Google's graph
    as_google, as_runtime = [], []
    for frame in images:
        logits = model.predict_on_batch(prepare_input(frame, (513, 513)))
        fine = np.argmax(upsample(logits)[0], axis=-1).astype(np.uint8)
        as_google.append(resize_labels(fine, FRAME))
        as_runtime.append(resize_labels(np.argmax(logits[0], axis=-1).astype(np.uint8), FRAME))
    return as_google, as_runtime


def agreement(model: Path, images: list[np.ndarray], references: list[np.ndarray], threads: int) -> float:
    segmenter = Segmenter(model, num_threads=threads)
    return float(np.mean([np.mean(segmenter.segment(f) == r) for f, r in zip(images, references)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="edgeseg's int8 model (default: convert it now)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "google_deeplab_speed.json")
    args = parser.parse_args()
    if not GOOGLE.is_file():
        sys.exit(f"error: {GOOGLE} does not exist")
    with tempfile.TemporaryDirectory() as scratch:
        ours = args.model
        if ours is None:
            ours = Path(scratch) / "pascalvoc_int8.tflite"
            convert(build_model("deeplabv3_mnv2", weights="pascalvoc"), ours)
        models = {"google": GOOGLE, "edgeseg": ours}
        images = frames()
        frame = images[0]
        timings = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, path in models.items():
                timings[name].append(benchmark(path, args.threads, runs=args.runs, warmup=3, frame_bgr=frame))
        as_google, as_runtime = float_labels(images)
        result = {"threads": args.threads, "rounds": args.rounds, "runs_per_round": args.runs, "frame": list(FRAME),
                  "load_average": os.getloadavg(), "models": {}}  # fmt: skip
        for name, path in models.items():
            rounds = timings[name]
            result["models"][name] = {
                "file": str(path), "bytes": path.stat().st_size,
                "input": rounds[0]["input"], "output": rounds[0]["output"],
                **{f"{part}_ms": statistics.median(r[f"{part}_ms"]["p50"] for r in rounds)
                   for part in ("pre", "invoke", "post", "total")},
                "agreement_with_float": agreement(path, images, as_google if name == "google" else as_runtime,
                                                  args.threads),
            }  # fmt: skip
        result["ratio"] = result["models"]["edgeseg"]["total_ms"] / result["models"]["google"]["total_ms"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| model | input -> output | pre | invoke | post | end to end (p50) | agreement with the float import |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, row in result["models"].items():
        print(f"| {name} | {row['input']} -> {row['output']} | {row['pre_ms']:.2f} ms | {row['invoke_ms']:.1f} ms | "
              f"{row['post_ms']:.2f} ms | {row['total_ms']:.1f} ms | {100 * row['agreement_with_float']:.2f}% |")
    print(f"edgeseg / Google end to end: {result['ratio']:.3f} ({args.threads} threads, load {result['load_average'][0]:.2f})")


if __name__ == "__main__":
    main()
