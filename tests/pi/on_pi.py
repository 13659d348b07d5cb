"""Probes that run inside the emulated Raspberry Pi (and, for reference, on x86).

Run by `tests/pi/test_pi.py` with the emulated arm64 Python, which sees only the installed
edgeseg wheel and its base dependencies; the same script runs on x86 to give the reference.
It uses only what a base install has (numpy, OpenCV, the runtime) and prints one JSON object.

    python on_pi.py environment
    python on_pi.py segment MODEL SOURCE OUT.npz [--threads N]    (SOURCE: DIR, video or .npz)

`environment` describes the interpreter, the installed packages and what `import runtime`
loads. `segment` runs `runtime.Segmenter` on every frame of SOURCE (a folder of images in
name order, a video file, or the frames saved by an earlier `segment`) and saves, per frame,
the frame, the model input, the raw output tensor and the frame-sized label map, so that both
sides can be compared stage by stage.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import sys
from pathlib import Path

# Packages a base install must not bring (TensorFlow, Keras) or that the runtime must not load.
HEAVY_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tf-nightly")
FORBIDDEN_MODULES = ("tensorflow", "keras", "edgeseg", "converters")
REPORTED_DISTRIBUTIONS = ("edgeseg", "numpy", "opencv-python-headless", "opencv-python", "ai-edge-litert",
                          "tflite-runtime", "typer", "rich")  # fmt: skip


def environment() -> dict:
    """The interpreter, the relevant installed distributions, and what `import runtime` loads."""
    distributions = {dist.metadata["Name"].lower(): dist.version for dist in importlib.metadata.distributions()}
    import runtime  # noqa: PLC0415 - what it drags in is the point
    from runtime import Segmenter  # noqa: F401, PLC0415
    from runtime.backend import installed_backends  # noqa: PLC0415

    loaded = sorted({name.split(".")[0] for name in sys.modules} & set(FORBIDDEN_MODULES))
    import cv2  # noqa: PLC0415
    import numpy  # noqa: PLC0415

    from runtime.display import cv2_has_gui  # noqa: PLC0415

    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "runtime_file": runtime.__file__,
        "forbidden_modules_loaded": loaded,
        "heavy_distributions": sorted(name for name in HEAVY_DISTRIBUTIONS if name in distributions),
        "tensorflow_importable": importlib.util.find_spec("tensorflow") is not None,
        "backends": installed_backends(),
        "versions": {name: distributions.get(name) for name in REPORTED_DISTRIBUTIONS},
        "numpy": numpy.__version__,
        "cv2": cv2.__version__,
        "cv2_gui": cv2_has_gui(),
    }


def read_frames(source: Path):
    """(name, BGR frame) pairs: the images of a folder in name order, every frame of a video, or
    the frames saved in a `segment` result (.npz), e.g. those another machine decoded."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    if source.suffix == ".npz":
        saved = np.load(source)
        yield from zip(saved["names"].tolist(), saved["frames"], strict=True)
        return
    if source.is_dir():
        for path in sorted(source.glob("*.png")):
            yield path.stem, cv2.imread(str(path), cv2.IMREAD_COLOR)
        return
    capture = cv2.VideoCapture(str(source))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        yield f"{index:06d}", frame  # the names `edgeseg run --video` gives its frames
        index += 1
    capture.release()


def segment(model: Path, source: Path, out: Path, threads: int | None) -> dict:
    """Run the model on every frame of `source`; save inputs, raw outputs and label maps to `out`."""
    import numpy as np  # noqa: PLC0415

    from runtime import Segmenter  # noqa: PLC0415
    from runtime.console import held_stderr  # noqa: PLC0415

    with held_stderr():  # the interpreter announces XNNPACK on stderr
        segmenter = Segmenter(model, num_threads=threads)
    names, frames, inputs, raw, labels = [], [], [], [], []
    for name, frame in read_frames(source):
        model_input = segmenter.preprocess(frame)
        output = segmenter.invoke(model_input)
        names.append(name)
        frames.append(frame)
        inputs.append(model_input)
        raw.append(output)
        labels.append(segmenter.postprocess(output, frame.shape[:2]))
    np.savez(out, names=np.array(names), frames=np.stack(frames), inputs=np.stack(inputs), raw=np.stack(raw),
             labels=np.stack(labels))  # fmt: skip
    return {"backend": segmenter.backend, "frames": len(names), "machine": platform.machine(),
            "output": segmenter.spec.output.describe()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("environment")
    run = commands.add_parser("segment")
    run.add_argument("model", type=Path)
    run.add_argument("source", type=Path)
    run.add_argument("out", type=Path)
    run.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.command == "environment":
        result = environment()
    else:
        result = segment(args.model, args.source, args.out, args.threads)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
