"""`edgeseg run` end to end through the CLI: video, image folders, streams, bad input."""

from __future__ import annotations

import http.server
import json
import platform
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DEFAULT_BACKEND, assert_one_line_error, camvid_pairs
from typer.testing import CliRunner

from edgeseg.cli import app
from runtime import Segmenter

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["run", *[str(a) for a in args]])


def decoded_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_video_to_mp4(tiny_models, camvid_clip, tmp_path):
    out = tmp_path / "out.mp4"
    result = invoke(tiny_models["int8_meta"], "--video", camvid_clip, "--output", out, "--no-display", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames"] == 20 and summary["dropped"] == 0 and summary["stop"] == "end"
    assert summary["backend"] == DEFAULT_BACKEND and summary["invoke_ms"]["p50"] > 0
    frames = decoded_frames(out)
    assert len(frames) == 20 and frames[0].shape == (360, 480, 3)
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_video_to_folder_side_by_side_with_exact_label_maps(tiny_models, camvid_clip, tmp_path):
    out = tmp_path / "frames"
    result = invoke(tiny_models["int8_meta"], "--video", camvid_clip, "--output", f"{out}/", "--no-display",
                    "--mode", "side-by-side", "--threads", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "20 frames" in result.stdout and "inference" in result.stdout
    overlays, label_maps = sorted(out.glob("*_overlay.png")), sorted(out.glob("*_labels.png"))
    assert len(overlays) == len(label_maps) == 20
    assert cv2.imread(str(overlays[0])).shape == (360, 960, 3)
    # The label maps are exactly what the Segmenter gives for the decoded frames.
    segmenter = Segmenter(tiny_models["int8_meta"], num_threads=1)
    for frame, path in zip(decoded_frames(camvid_clip), label_maps, strict=False):
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), segmenter.segment(frame))


def test_images_with_max_frames_and_mask_mode(tiny_models, camvid, tmp_path):
    out = tmp_path / "out"
    result = invoke(tiny_models["int8_labels"], "--images", camvid / "val", "--output", f"{out}/", "--no-display",
                    "--max-frames", "3", "--mode", "mask", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["frames"] == 3 and summary["stop"] == "max-frames"
    stems = [path.stem for path, _ in camvid_pairs("val", 3)]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}_{k}.png" for s in stems for k in ("labels", "overlay"))


def test_headless_run_without_no_display_notes_it(tiny_models, camvid_clip, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = invoke(tiny_models["int8"], "--video", camvid_clip, "--max-frames", "2")
    assert result.exit_code == 0, result.output
    assert "no display found" in result.stderr


# === Bad input: one line, exit code 1, no traceback ===


def test_missing_model(camvid_clip, tmp_path):
    assert_one_line_error(invoke(tmp_path / "nope.tflite", "--video", camvid_clip), "model file not found")


def test_not_a_tflite_model(camvid_clip, tmp_path):
    fake = tmp_path / "model.tflite"
    fake.write_text("<html>a download that went wrong</html>")
    assert_one_line_error(invoke(fake, "--video", camvid_clip), "not a TFLite model")


def test_not_a_segmentation_model(tiny_models, camvid_clip):
    assert_one_line_error(invoke(tiny_models["classifier"], "--video", camvid_clip), "not a segmentation model",
                          "(1, 1000)")  # fmt: skip


@pytest.mark.skipif(platform.system() != "Linux" or Path("/dev/video7").exists(), reason="needs no /dev/video7")
def test_absent_camera_is_named(tiny_models):
    assert_one_line_error(invoke(tiny_models["int8"], "--camera", "7", "--no-display"), "camera 7", "/dev/video7")


def test_bad_camera_value(tiny_models):
    assert_one_line_error(invoke(tiny_models["int8"], "--camera", "front"), "picamera2")


def test_unreadable_and_missing_video(tiny_models, tmp_path):
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    assert_one_line_error(invoke(tiny_models["int8"], "--video", junk, "--no-display"), "cannot read video")
    assert_one_line_error(invoke(tiny_models["int8"], "--video", tmp_path / "none.mp4"), "video file not found")


def test_unwritable_output(tiny_models, camvid_clip, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    model = tiny_models["int8"]
    assert_one_line_error(invoke(model, "--video", camvid_clip, "--output", blocker / "out.mp4"), "does not exist")
    assert_one_line_error(invoke(model, "--video", camvid_clip, "--output", f"{blocker}/frames/"), "cannot be created")
    assert_one_line_error(invoke(model, "--video", camvid_clip, "--output", tmp_path / "out.gif"),
                          "expected a video file")  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    # A folder that permission bits call writable for root but that takes no file (/proc).
    if Path("/proc/self").is_dir():
        for output in ("/proc/out.mp4", "/proc/frames/"):
            assert_one_line_error(invoke(model, "--video", camvid_clip, "--output", output), "cannot write in /proc")


def test_sources_must_be_exactly_one(tiny_models, camvid_clip, tmp_path):
    assert_one_line_error(invoke(tiny_models["int8"]), "exactly one source", "none")
    assert_one_line_error(invoke(tiny_models["int8"], "--video", camvid_clip, "--images", tmp_path),
                          "--video and --images")  # fmt: skip


class _OneShotMjpeg(http.server.BaseHTTPRequestHandler):
    """Serves `frames` once as an MJPEG stream, then refuses: a camera that goes away."""

    frames: list[bytes] = []
    requests = 0
    stall = threading.Event()  # when set, the first response hangs after its frames (never closes)
    release = threading.Event()

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).requests += 1
        if type(self).requests > 1:
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for jpeg in self.frames:
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
            self.wfile.write(jpeg + b"\r\n")
            self.wfile.flush()
            time.sleep(0.03)
        if self.stall.is_set():
            self.release.wait(30)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("stall", [False, True], ids=["closes", "stalls"])
def test_stream_that_drops_reconnects_then_exits_cleanly(tiny_models, camvid, tmp_path, monkeypatch, stall):
    monkeypatch.setattr("runtime.sources.RECONNECT_DELAY_S", 0.05)
    monkeypatch.setattr("runtime.sources.STREAM_TIMEOUT_MS", 1000)
    _OneShotMjpeg.frames = [cv2.imencode(".jpg", cv2.imread(str(path)))[1].tobytes()
                            for path, _ in camvid_pairs("val", 10)]  # fmt: skip
    _OneShotMjpeg.requests = 0
    _OneShotMjpeg.release.clear()
    (_OneShotMjpeg.stall.set if stall else _OneShotMjpeg.stall.clear)()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneShotMjpeg)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "stream.mp4"
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/live.mjpg"
        result = invoke(tiny_models["int8"], "--video", url, "--output", out, "--no-display", "--json")
    finally:
        _OneShotMjpeg.release.set()
        server.shutdown()
    assert_one_line_error(result, "dropped", "5 reconnect attempts")
    summary = json.loads(result.stdout)
    assert summary["stop"] == "error" and summary["frames"] >= 1
    assert summary["frames"] + summary["dropped"] == 10
    assert _OneShotMjpeg.requests == 1 + 5
    assert len(decoded_frames(out)) == summary["frames"]  # what came before the drop is kept, playable
