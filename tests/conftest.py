"""Shared test fixtures: the CamVid sample data and small real TFLite models.

The models are tiny Keras networks with `edgeseg convert`'s input and output types, and
variants it never writes, converted with `tf.lite.TFLiteConverter` itself so that the runtime's
tests do not depend on the converter; built on first use, once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.metadata import embed_metadata
from runtime.processing import prepare_input

REPO = Path(__file__).resolve().parents[1]
CAMVID = REPO.parent / "shared" / "data" / "camvid"
CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist")  # fmt: skip
CAMVID_IGNORE = 11
# The backend the runtime picks when none is named: EDGESEG_BACKEND (.ci/tflite_runtime.sh sets
# tflite_runtime) or else LiteRT.
DEFAULT_BACKEND = os.environ.get("EDGESEG_BACKEND") or "ai_edge_litert"


def camvid_pairs(split: str = "val", count: int | None = None, sequence: str | None = None) -> list[tuple[Path, Path]]:
    """(frame, label map) paths of CamVid `split`, in name order, optionally of one sequence."""
    frames = sorted((CAMVID / split).glob(f"{sequence or ''}*.png"))[:count]
    return [(path, CAMVID / f"{split}annot" / path.name) for path in frames]


def write_palette_png(path: Path, indices: np.ndarray, palette, bit_depth: int = 8, interlace: bool = False) -> None:
    """Write (H, W) uint8 `indices` as an indexed PNG with `palette` [(R, G, B), ...], as VOC and
    CVAT store masks (OpenCV cannot write one). Adam7 interlacing is written as a real PNG
    encoder would (seven passes), to show the reader does not depend on the layout."""
    height, width = indices.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    def rows(image: np.ndarray) -> bytes:
        per_byte = 8 // bit_depth
        data = b""
        for row in image:
            padded = np.zeros(-(-len(row) // per_byte) * per_byte, np.uint8)
            padded[: len(row)] = row
            groups = padded.reshape(-1, per_byte).astype(np.uint16)
            packed = sum(groups[:, k] << (bit_depth * (per_byte - 1 - k)) for k in range(per_byte)).astype(np.uint8)
            data += b"\x00" + packed.tobytes()  # filter type 0 (None)
        return data

    if interlace:
        passes = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))
        raw = b"".join(rows(indices[y0::dy, x0::dx]) for y0, x0, dy, dx in passes if indices[y0::dy, x0::dx].size)
    else:
        raw = rows(indices)
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([bit_depth, 3, 0, 0, int(interlace)])
    body = b"".join(bytes(color) for color in palette)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"PLTE", body)
                           + chunk(b"tRNS", b"\xff" * len(palette)) + chunk(b"IDAT", zlib.compress(raw))
                           + chunk(b"IEND", b""))  # fmt: skip


def assert_one_line_error(result, *fragments: str) -> None:
    """A CLI result (typer.testing) failed with exit code 1 and one "error: ..." line on stderr."""
    assert result.exit_code == 1, result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture(scope="session")
def camvid() -> Path:
    """The CamVid folder of ../shared; tests using it skip where it is absent."""
    if not CAMVID.is_dir():
        pytest.skip(f"CamVid data not found at {CAMVID}")
    return CAMVID


@pytest.fixture
def x_display(monkeypatch):
    """An X display for window tests: the session's own, else a virtual one (Xvfb) started here.

    CI installs Xvfb (.ci/run), so window tests run there; they skip only on a machine with
    neither a display nor Xvfb.
    """
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        yield os.environ.get("DISPLAY") or os.environ["WAYLAND_DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("needs a display or Xvfb (apt-get install xvfb)")
    # -displayfd: Xvfb picks a free display number and writes it to the pipe once it accepts clients.
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                              pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    try:
        assert number, f"Xvfb did not start (exit code {server.poll()})"
        monkeypatch.setenv("DISPLAY", f":{number}")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


# === Tiny segmentation models ===

# (height, width) of the tiny models: not square, so a swapped axis shows up.
TINY_INPUT = (97, 129)


def _fit_color_head() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Weights (3, C) and bias (C,) of a per-pixel linear colour classifier.

    Fitted by least squares to CamVid training frames when they are present (a real, if weak,
    road-scene segmenter); otherwise a fixed red/green/blue/grey classifier.
    """
    pairs = camvid_pairs("train", 40) if CAMVID.is_dir() else []
    if not pairs:
        weights = np.array([[1.0, -0.5, -0.5, 0.0], [-0.5, 1.0, -0.5, 0.0], [-0.5, -0.5, 1.0, 0.0]])
        return weights.astype(np.float32), np.array([0, 0, 0, 0.3], np.float32), ("red", "green", "blue", "grey")
    features, targets = [], []
    for image_path, mask_path in pairs:
        rgb = prepare_input(cv2.imread(str(image_path)), (90, 120))[0].reshape(-1, 3)
        mask = cv2.resize(cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE), (120, 90),
                          interpolation=cv2.INTER_NEAREST).reshape(-1)  # fmt: skip
        keep = mask != CAMVID_IGNORE
        features.append(rgb[keep])
        targets.append(np.eye(len(CAMVID_CLASSES), dtype=np.float32)[mask[keep]])
    features = np.concatenate(features)
    design = np.concatenate([features, np.ones((len(features), 1), np.float32)], axis=1)
    solution = np.linalg.lstsq(design, np.concatenate(targets), rcond=None)[0]
    return solution[:3].astype(np.float32), solution[3].astype(np.float32), CAMVID_CLASSES


def _calibration_frames(count: int = 16) -> list[np.ndarray]:
    if CAMVID.is_dir():
        return [cv2.imread(str(path)) for path, _ in camvid_pairs("train", count)]
    from runtime.bench import synthetic_frame

    return [synthetic_frame(seed=seed) for seed in range(count)]


# Where `python tests/conftest.py DIR` saved the models, for test runs without TensorFlow
# (e.g. a tflite-runtime environment): the runtime tests then use these files.
PREBUILT = os.environ.get("EDGESEG_TEST_MODELS")
MODEL_NAMES = ("int8", "int8_meta", "int8_io", "int8_labels", "float32", "classifier", "grayscale")


class TinyModels:
    """Small .tflite files built on first access and kept for the session.

    All segmentation models share one head (`weights`, `bias`): two stride-2 3x3 average
    poolings (output stride 4: 97x129 -> 25x33) and a 1x1 convolution to class logits,
    so each one's label maps can be checked against a plain numpy computation.
    """

    def __init__(self, folder: Path):
        try:
            import tensorflow as tf
        except ImportError:
            if not PREBUILT:
                pytest.skip("needs TensorFlow to build test models (or EDGESEG_TEST_MODELS=DIR of prebuilt ones)")
            tf = None
        self.tf = tf
        self.folder = folder if tf else Path(PREBUILT)
        if tf:
            self.weights, self.bias, self.classes = _fit_color_head()
            self._frames = _calibration_frames()
        else:
            head = np.load(self.folder / "head.npz")
            self.weights, self.bias, self.classes = head["weights"], head["bias"], tuple(head["classes"])
        self._built: dict[str, Path] = {} if tf else {name: self.folder / f"{name}.tflite" for name in MODEL_NAMES}

    # --- Keras models ---

    def keras_segmenter(self, argmax: bool = False):
        keras = self.tf.keras
        inputs = keras.Input((*TINY_INPUT, 3), batch_size=1, name="image")
        x = keras.layers.AveragePooling2D(3, strides=2, padding="same", name="pool_1")(inputs)
        x = keras.layers.AveragePooling2D(3, strides=2, padding="same", name="pool_2")(x)
        head = keras.layers.Conv2D(len(self.classes), 1, name="logits")
        x = head(x)
        head.set_weights([self.weights[None, None], self.bias])
        if argmax:
            x = keras.layers.Lambda(lambda t: self.tf.math.argmax(t, axis=-1, output_type=self.tf.int32),
                                    name="labels")(x)  # fmt: skip
        return keras.Model(inputs, x)

    def _keras_classifier(self):
        keras = self.tf.keras
        inputs = keras.Input((64, 64, 3), batch_size=1)
        x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(1000)(x))

    def _keras_grayscale(self):
        keras = self.tf.keras
        inputs = keras.Input((65, 65, 1), batch_size=1)
        return keras.Model(inputs, keras.layers.Conv2D(4, 3, strides=4, padding="same")(inputs))

    # --- conversion ---

    def _convert(self, model, quantize: bool, io: str | None = None, output: str | None = None) -> bytes:
        tf = self.tf
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if quantize:
            size = tuple(model.input_shape[1:3])

            def representative():
                for frame in self._frames:
                    yield [prepare_input(frame, size)] if model.input_shape[3] == 3 else [
                        np.zeros((1, *size, 1), np.float32)
                    ]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = {"uint8": tf.uint8, "int8": tf.int8}[io]
            if output:
                converter.inference_output_type = {"uint8": tf.uint8, "int8": tf.int8}[output]
        return converter.convert()

    def _build(self, name: str) -> bytes:
        if name == "int8":  # what `edgeseg convert` makes by default: uint8 pixels in, int8 logits out
            return self._convert(self.keras_segmenter(), True, "uint8", "int8")
        if name == "int8_meta":
            return embed_metadata(self._path("int8").read_bytes(), self.metadata())
        if name == "int8_io":
            return self._convert(self.keras_segmenter(), True, "int8", "int8")
        if name == "int8_labels":
            return self._convert(self.keras_segmenter(argmax=True), True, "uint8")
        if name == "float32":
            return self._convert(self.keras_segmenter(), False)
        if name == "classifier":
            return self._convert(self._keras_classifier(), True, "uint8", "int8")
        if name == "grayscale":
            return self._convert(self._keras_grayscale(), False)
        raise KeyError(name)

    def metadata(self) -> dict:
        from runtime.palette import generated_color

        return {
            "classes": list(self.classes),
            "colors": [list(generated_color(i + 1)) for i in range(len(self.classes))],
            "input_size": list(TINY_INPUT),
            "normalization": {"mean": [127.5] * 3, "std": [127.5] * 3},
            "output_kind": "logits",
            "output_stride": 4,
            "ignore_index": CAMVID_IGNORE,
            "quantization": "int8",
            "io": "uint8",
        }

    def _path(self, name: str) -> Path:
        if name not in self._built:
            path = self.folder / f"{name}.tflite"
            path.write_bytes(self._build(name))
            self._built[name] = path
        return self._built[name]

    def __getitem__(self, name: str) -> Path:
        """Path of the model `name`, one of `MODEL_NAMES`."""
        return self._path(name)

    def reference_labels(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Label map of the float model for a frame, at the output's (25, 33) size.

        The Keras model; without TensorFlow, its float32 .tflite conversion (which matches it).
        """
        if self.tf is None:
            from runtime import Segmenter
            from runtime.processing import labels_from_output

            reference = Segmenter(self["float32"], num_threads=1)
            return labels_from_output(reference.invoke(reference.preprocess(frame_bgr)))
        if not hasattr(self, "_reference"):
            self._reference = self.keras_segmenter()
        logits = self._reference(prepare_input(frame_bgr, TINY_INPUT), training=False)
        return np.argmax(np.asarray(logits)[0], axis=-1).astype(np.uint8)

    def export(self, folder: Path) -> None:
        """Save every model and the head to `folder` (see `PREBUILT`)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in MODEL_NAMES:
            (folder / f"{name}.tflite").write_bytes(self[name].read_bytes())
        np.savez(folder / "head.npz", weights=self.weights, bias=self.bias, classes=np.array(self.classes))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    """Small real .tflite models (needs TensorFlow; tests using it skip without)."""
    return TinyModels(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def camvid_clip(camvid, tmp_path_factory) -> Path:
    """A 20-frame, 10 FPS mp4 (480x360) made from consecutive CamVid frames of one sequence."""
    path = tmp_path_factory.mktemp("clips") / "camvid_0001TP.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (480, 360))
    for frame_path, _ in camvid_pairs("train", 20, sequence="0001TP"):
        writer.write(cv2.imread(str(frame_path)))
    writer.release()
    return path


if __name__ == "__main__":
    # python tests/conftest.py DIR: build the test models here, for EDGESEG_TEST_MODELS=DIR elsewhere.
    with tempfile.TemporaryDirectory() as scratch:
        TinyModels(Path(scratch)).export(Path(sys.argv[1]))
