"""The Raspberry Pi path, on an emulated 64-bit Raspberry Pi OS (desktop and Lite).

The project wheel is built here, installed with its base dependencies (aarch64 wheels) into
the emulated Pi, and run there on an int8 model that `edgeseg convert` makes here; every
result is compared with the same model run on x86. Run by `.ci/pi.sh`, which sets
`EDGESEG_PI_EMULATOR` (the path of `../shared/tools/pi-emulator.sh`, set up); skipped otherwise.

Emulation (QEMU user mode) is ~20x slower than a Pi, so the work is small: a 97x129 model with
the real ImageNet backbone (random head), six CamVid frames and an eight-frame clip. The
desktop flavour runs as a Pi 4 (Cortex-A72), Lite as a Pi 5 (Cortex-A76): both CPUs are
covered without doubling the time.

How close is close enough: integer accumulation is exact on every ISA and XNNPACK's int8
kernels requantize with the same rounding on x86 and Arm, so the raw int8 logits should be
identical — and are, measured on both emulated CPUs. The bound allows one rounding step at
the output (a different kernel variant, e.g. dot-product on the A76): raw logits within 1
step, and a label may differ from x86's only where x86's two best logits are within that step
(a near-tie). More means the Pi no longer computes what x86 computes — as with tflite-runtime
2.14's built-in kernels, whose logits differ by up to 8 steps between the two ISAs — and then
a model checked on a PC is not the model running on the Pi: the test must say so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import CAMVID, camvid_pairs

from runtime.processing import resize_labels

EMULATOR = os.environ.get("EDGESEG_PI_EMULATOR")
pytestmark = pytest.mark.skipif(not EMULATOR, reason="emulated Raspberry Pi layer: run by .ci/pi.sh")

REPO = Path(__file__).resolve().parents[2]
ON_PI = Path(__file__).with_name("on_pi.py")
WEIGHTS = REPO.parent / "shared" / "weights" / "mobilenet_v2_1.0_no_top_imagenet_q8.weights.h5"
FLAVOURS = {
    "desktop": {"PI_EMU_LITE": "0", "PI_EMU_CPU": "cortex-a72"},
    "lite": {"PI_EMU_LITE": "1", "PI_EMU_CPU": "cortex-a76"},
}
MODEL_INPUT = "97x129"  # not square, so a swapped axis on one side shows up
FRAMES = 6
CLIP_FRAMES, CLIP_FPS = 8, 10.0
RAW_TOLERANCE = 1  # quantization steps, see the module docstring
MAX_DECODING_DIFFERENCE = 8  # grey levels between two MPEG-4 Part 2 decoders (IDCT mismatch)
MAX_COMPRESSION_ERROR = 8.0  # mean grey levels between a drawn frame and its mp4v encoding
STATUS_ROWS = 24  # the FPS/latency line at the bottom of each drawn frame differs between runs
TRAIN_EXTRA = "pip install 'edgeseg[train]'"
TIMEOUT = 900


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def _x86_env() -> dict[str, str]:
    # The repository's code, whichever way the venv has it installed.
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _json(result: subprocess.CompletedProcess):
    """The JSON document a successful command printed on stdout."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def _x86(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, *args], cwd, _x86_env())


class Pi:
    """One flavour of the emulated Pi, with the project wheel and its base dependencies installed."""

    def __init__(self, flavour: str, work: Path):
        self.flavour = flavour
        self.work = work
        env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.pop("PYTHONPATH", None)
        self.env = {**env, **FLAVOURS[flavour]}
        home = Path(self.env.get("PI_EMU_HOME", Path.home() / ".cache" / "pi-emulator"))
        self.site = home / ("site-lite" if self.env["PI_EMU_LITE"] == "1" else "site")  # as pi-emulator.sh has it

    def emulator(self, *args: str) -> subprocess.CompletedProcess:
        # The working folder is never the repository: `python -m` would import its sources.
        return _run([EMULATOR, *args], self.work, self.env)

    def install(self, wheel: Path) -> None:
        for step in (["reset-site"], ["pip-install", str(wheel)]):
            result = self.emulator(*step)
            assert result.returncode == 0, f"{step[0]} failed:\n{result.stdout}\n{result.stderr}"

    def python(self, *args: str) -> subprocess.CompletedProcess:
        return self.emulator("python", *args)

    def edgeseg(self, *args: str) -> subprocess.CompletedProcess:
        return self.python("-m", "edgeseg", *args)


# === What both sides work on ===


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    # Asked for by .ci/pi.sh, the layer fails rather than skips when it cannot run.
    if not CAMVID.is_dir():
        pytest.fail(f"CamVid data not found at {CAMVID}")
    return tmp_path_factory.mktemp("pi")


@pytest.fixture(scope="module")
def wheel(work) -> Path:
    """The project wheel (pure Python), built from a copy of the package sources."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("edgeseg", "runtime", "converters"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    result = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                   "-w", str(work / "dist"), str(source)], work, os.environ.copy())  # fmt: skip
    assert result.returncode == 0, result.stderr
    (built,) = (work / "dist").glob("edgeseg-*-py3-none-any.whl")
    return built


@pytest.fixture(scope="module")
def model(work) -> Path:
    """A small int8 model from `edgeseg convert`: the ImageNet MobileNetV2 backbone where present."""
    if importlib.util.find_spec("tensorflow") is None:  # found, not imported: its start-up is slow and chatty
        pytest.fail(f"{sys.executable} has no TensorFlow: the x86 side converts the model (pip install -e '.[train]')")
    weights = ["--backbone-weights", str(WEIGHTS)]
    if not WEIGHTS.is_file():
        weights = ["--alpha", "0.35", "--backbone-weights", "none"]
    path = work / "camvid_97x129_int8.tflite"
    # `edgeseg convert` with Keras's random generators seeded: the head is random, the model
    # the same on every run (a random one might label some frame with a single class).
    seeded_cli = "import keras; keras.utils.set_random_seed(0); from edgeseg.cli import main; main()"
    result = _x86("-c", seeded_cli, "convert", "--input-size", MODEL_INPUT, "--classes", "11", *weights,
                  "--num-calibration", "16", "--json", "--out", str(path), cwd=work)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def frames(work) -> Path:
    """Six CamVid validation frames, spread over the sequence."""
    folder = work / "frames"
    folder.mkdir()
    pairs = camvid_pairs("val")
    for image, _ in pairs[:: len(pairs) // FRAMES][:FRAMES]:
        shutil.copy2(image, folder / image.name)
    return folder


@pytest.fixture(scope="module")
def clip(work) -> Path:
    """An eight-frame 480x360 mp4 (MPEG-4 Part 2, 10 FPS) of consecutive CamVid frames."""
    path = work / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), CLIP_FPS, (480, 360))
    for image, _ in camvid_pairs("val", CLIP_FRAMES):
        writer.write(cv2.imread(str(image)))
    writer.release()
    return path


@pytest.fixture(scope="module")
def x86(work, model, frames, clip) -> dict[str, Path]:
    """The x86 reference: the Segmenter's stages on the frames and the clip, `edgeseg run --images`."""
    out = work / "x86"
    out.mkdir()
    for name, source in (("frames", frames), ("clip", clip)):
        _json(_x86(str(ON_PI), "segment", str(model), str(source), str(out / f"{name}.npz"), cwd=work))
    _json(_x86("-m", "edgeseg", "run", str(model), "--images", str(frames), "--output", f"{out / 'images'}{os.sep}",
               "--no-display", "--json", cwd=work))  # fmt: skip
    return {"frames": out / "frames.npz", "clip": out / "clip.npz", "images": out / "images"}


@pytest.fixture(scope="module", params=list(FLAVOURS))
def pi(request, work, wheel) -> Pi:
    flavour = request.param
    folder = work / flavour
    folder.mkdir()
    emulated = Pi(flavour, folder)
    emulated.install(wheel)
    return emulated


# === Comparisons ===


def assert_labels_match(pi_labels: np.ndarray, x86_labels: np.ndarray, x86_raw: np.ndarray, name: str) -> float:
    """Pi and x86 label maps agree except where x86's two best logits are within `RAW_TOLERANCE`.

    Args:
        pi_labels, x86_labels: (H, W) uint8 frame-sized label maps.
        x86_raw: (1, h, w, C) int8 logits of x86 for the same frame.
        name: the frame, for messages.

    Returns:
        The fraction of pixels that differ (measured: 0).
    """
    assert pi_labels.shape == x86_labels.shape, name
    ordered = np.sort(x86_raw[0].astype(np.int32), axis=-1)
    near_tie = (ordered[..., -1] - ordered[..., -2] <= RAW_TOLERANCE).astype(np.uint8)
    allowed = resize_labels(near_tie, x86_labels.shape).astype(bool)
    differ = pi_labels != x86_labels
    assert not (differ & ~allowed).any(), f"{name}: {int((differ & ~allowed).sum())} labels differ without a near-tie"
    return float(differ.mean())


def _read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def _video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps = capture.get(cv2.CAP_PROP_FPS)
    pictures = []
    while True:
        ok, picture = capture.read()
        if not ok:
            break
        pictures.append(picture)
    capture.release()
    return pictures, fps


# === On the emulated Pi ===


def test_base_install_is_tensorflow_free_and_imports_runtime(pi):
    env = _json(pi.python(str(ON_PI), "environment"))
    assert env["machine"] == "aarch64" and env["python"].startswith("3.11"), env
    assert Path(env["runtime_file"]).is_relative_to(pi.site), f"not the installed wheel: {env['runtime_file']}"
    assert env["heavy_distributions"] == [] and not env["tensorflow_importable"], env
    assert env["forbidden_modules_loaded"] == [], env
    assert env["backends"] == ["ai_edge_litert"], env
    # opencv-python-headless, not opencv-python: imports on Lite, which has no libGL/GLib.
    assert env["versions"]["opencv-python-headless"] and not env["versions"]["opencv-python"], env
    assert env["cv2_gui"] is False


def test_cli_offers_run_bench_info_and_names_the_train_extra(pi, work):
    result = pi.edgeseg("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "bench", "info"):
        assert f" {command} " in result.stdout, result.stdout
    dataset = work / "empty"
    dataset.mkdir(exist_ok=True)
    (work / "model.keras").touch()
    needs_tensorflow = {
        "build": ["build", "--out", "m.keras"],
        "convert": ["convert", "--out", "m.tflite"],
        "train": ["train", "--images", str(dataset), "--masks", str(dataset), "--out", "run"],
        "eval": ["eval", str(work / "model.keras"), "--images", str(dataset), "--masks", str(dataset)],
    }
    for command, args in needs_tensorflow.items():
        result = pi.edgeseg(*args)
        message = result.stderr.strip()
        assert result.returncode == 1, f"{command}: exit {result.returncode}\n{result.stderr}"
        assert message.startswith("error:") and "\n" not in message and TRAIN_EXTRA in message, f"{command}: {message}"
        assert "Traceback" not in result.stdout + result.stderr


def test_info_and_bench(pi, model):
    info = _json(pi.edgeseg("info", str(model), "--json"))
    assert "int8" in json.dumps(info)
    (row,) = _json(pi.edgeseg("bench", str(model), "--runs", "2", "--warmup", "1", "--threads", "4", "--json"))
    assert row["backend"] == "ai_edge_litert" and row["threads"] == 4 and row["invoke_ms"]["p50"] > 0


def test_segmenter_matches_x86_stage_by_stage(pi, model, frames, x86):
    summary = _json(pi.python(str(ON_PI), "segment", str(model), str(frames), str(pi.work / "frames.npz")))
    assert summary["machine"] == "aarch64" and summary["backend"] == "ai_edge_litert"
    arm, ref = np.load(pi.work / "frames.npz"), np.load(x86["frames"])
    assert list(arm["names"]) == list(ref["names"]) and len(ref["names"]) == FRAMES
    # Pre-processing (OpenCV's fixed-point resize, a lookup table) is exact on both ISAs.
    np.testing.assert_array_equal(arm["inputs"], ref["inputs"])
    raw_difference = np.abs(arm["raw"].astype(np.int32) - ref["raw"].astype(np.int32)).max()
    assert raw_difference <= RAW_TOLERANCE
    pairs = zip(arm["labels"], ref["labels"], ref["raw"], ref["names"], strict=True)
    differing = [assert_labels_match(labels, expected, raw, name) for labels, expected, raw, name in pairs]
    # A model that paints one class everywhere would make this comparison empty.
    classes = [len(np.unique(labels)) for labels in ref["labels"]]
    assert min(classes) >= 2 and len(np.unique(ref["labels"])) >= 4, classes
    print(
        f"{pi.flavour}: raw logits max |difference| {raw_difference}, labels differing {max(differing):.4%} "
        f"(classes per frame: {classes})"
    )


def test_run_images_writes_the_x86_label_maps(pi, model, frames, x86):
    output = pi.work / "images"
    summary = _json(pi.edgeseg("run", str(model), "--images", str(frames), "--output", f"{output}{os.sep}",
                               "--no-display", "--json"))  # fmt: skip
    assert summary["frames"] == FRAMES and summary["skipped"] == 0 and summary["backend"] == "ai_edge_litert"
    ref = np.load(x86["frames"])
    produced = sorted(path.name for path in output.iterdir())
    assert produced == sorted(f"{stem}_{kind}.png" for stem in ref["names"] for kind in ("labels", "overlay"))
    for stem, raw in zip(ref["names"], ref["raw"], strict=True):
        labels = _read_png(output / f"{stem}_labels.png")
        assert_labels_match(labels, _read_png(x86["images"] / f"{stem}_labels.png"), raw, stem)
        assert _read_png(output / f"{stem}_overlay.png").shape == (*labels.shape, 3)


def test_run_video_writes_every_frame_with_the_x86_label_maps(pi, model, clip, x86, work):
    # On the Pi: the clip as its OpenCV decodes it, then `edgeseg run` into a video and a folder.
    decoded = pi.work / "clip.npz"
    _json(pi.python(str(ON_PI), "segment", str(model), str(clip), str(decoded)))
    video, folder = pi.work / "video.mp4", pi.work / "video_frames"
    for output in (str(video), f"{folder}{os.sep}"):
        summary = _json(pi.edgeseg("run", str(model), "--video", str(clip), "--output", output, "--no-display",
                                   "--json"))  # fmt: skip
        assert summary["frames"] == CLIP_FRAMES and summary["dropped"] == 0, summary
    # MPEG-4 Part 2 leaves decoders' inverse DCT some freedom and FFmpeg picks one per ISA, so
    # the Pi decodes the clip a few grey levels differently (measured: at most 3) and x86's
    # reference is computed on the Pi's decoded frames.
    arm = np.load(decoded)
    decoding = np.abs(arm["frames"].astype(np.int16) - np.load(x86["clip"])["frames"])
    assert decoding.max() <= MAX_DECODING_DIFFERENCE and decoding.mean() < 1.0, (decoding.max(), decoding.mean())
    reference = pi.work / "clip_on_x86.npz"
    _json(_x86(str(ON_PI), "segment", str(model), str(decoded), str(reference), cwd=work))
    ref = np.load(reference)
    for stem, raw, expected in zip(ref["names"], ref["raw"], ref["labels"], strict=True):
        assert_labels_match(_read_png(folder / f"{stem}_labels.png"), expected, raw, f"clip frame {stem}")
    # The video: every frame, at the source's rate and size, in order, each showing what the
    # folder run drew for it (up to MPEG-4 compression, and bar the status line, whose timings
    # differ run to run). Consecutive frames look alike, so each must be nearest its own drawing.
    pictures, fps = _video(video)
    assert len(pictures) == CLIP_FRAMES and fps == CLIP_FPS
    drawings = [_read_png(folder / f"{stem}_overlay.png") for stem in ref["names"]]
    assert all(picture.shape == drawing.shape == (360, 480, 3) for picture, drawing in zip(pictures, drawings))
    distance = np.array([[np.abs(p[:-STATUS_ROWS].astype(np.int16) - d[:-STATUS_ROWS]).mean() for d in drawings]
                         for p in pictures])  # fmt: skip
    assert (distance.argmin(axis=1) == np.arange(CLIP_FRAMES)).all(), distance.round(1)
    assert distance.diagonal().max() < MAX_COMPRESSION_ERROR, distance.diagonal().round(2)
    print(
        f"{pi.flavour}: clip decoded with max |difference| {decoding.max()} grey levels from x86; video frames "
        f"{distance.diagonal().max():.2f} grey levels from their drawings (next nearest "
        f"{np.sort(distance, axis=1)[:, 1].min():.2f})"
    )
