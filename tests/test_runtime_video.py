"""The video pipeline's parts: queues, sources, sinks, drawing, window choice, stopping."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from runtime import display, drawing
from runtime.errors import EdgesegError
from runtime.segmenter import Timing
from runtime.sinks import FolderSink, VideoFileSink, open_sink
from runtime.sources import Frame, ImageFolderSource, VideoFileSource, parse_camera, redact
from runtime.video import BoundedQueue, LatestFrame, Pipeline, TimingLog


class FakeSegmenter:
    """Stands in for `Segmenter`: labels = brightness > 127, after `delay` seconds."""

    backend, num_threads = "fake", 1
    classes = ["dark", "bright"]

    def __init__(self, delay: float = 0.0, fail_at: int | None = None):
        self.delay, self.fail_at, self.calls = delay, fail_at, 0
        self.palette_bgr = np.zeros((256, 3), np.uint8)
        self.palette_bgr[1] = (255, 255, 255)

    def preprocess(self, frame):
        return frame

    def invoke(self, model_input):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("a bug")
        time.sleep(self.delay)
        return model_input

    def postprocess(self, output, frame_size):
        return (output[..., 1] > 127).astype(np.uint8)

    def colorize(self, labels):
        return self.palette_bgr[labels]


class FakeSource:
    """`count` frames numbered in their pixels, every `interval` seconds."""

    description, skipped = "fake", 0
    fps = 10.0

    def __init__(self, count: int, live: bool, interval: float = 0.0):
        self.count, self.live, self.interval = count, live, interval
        self.produced, self.closed = 0, False
        self._cancelled = threading.Event()

    def read(self):
        if self.produced == self.count or self._cancelled.is_set():
            return None
        time.sleep(self.interval)
        image = np.full((24, 32, 3), self.produced % 256, np.uint8)
        self.produced += 1
        return Frame(image, self.produced - 1, f"{self.produced - 1:06d}")

    def cancel(self):
        self._cancelled.set()

    def close(self, complete=True):
        self.closed = True


class RecordingSink:
    description = "recording"

    def __init__(self, interrupt_at: int | None = None):
        self.names, self.closed, self.interrupt_at = [], False, interrupt_at
        self.written = 0

    def write(self, name, picture, labels):
        if len(self.names) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.names.append(name)
        self.written += 1

    def close(self, complete=True):
        self.closed = True


def test_latest_frame_keeps_only_the_newest_and_counts_drops():
    slot = LatestFrame()
    for item in range(5):
        slot.put(item)
    assert slot.get(timeout=0.1) == 4 and slot.dropped == 4
    slot.put(5)
    slot.put(None)  # the end marker does not replace a waiting frame
    assert slot.get(timeout=0.1) == 5 and slot.get(timeout=0.1) is None


def test_bounded_queue_keeps_order_and_gives_up_on_stop():
    items = BoundedQueue(2)
    items.put(1)
    items.put(2)
    stop = threading.Event()
    stop.set()
    items.put(3, stop)  # full: returns instead of blocking forever
    assert [items.get(0.1), items.get(0.1)] == [1, 2]


def test_timing_log_percentiles():
    log = TimingLog(window=100)
    for value in range(1, 201):
        log.add(Timing(value, 2 * value, 0.5))
    summary = log.summary()
    assert summary["pre_ms"]["p50"] == pytest.approx(150.5)  # the latest 100 values only
    assert summary["invoke_ms"]["p95"] == pytest.approx(2 * 195.05)
    assert summary["post_ms"] == {"p50": 0.5, "p95": 0.5}


def test_file_source_processes_every_frame_in_order():
    sink = RecordingSink()
    source = FakeSource(30, live=False)
    summary = Pipeline(FakeSegmenter(delay=0.005), source, [sink]).run()
    assert summary["frames"] == 30 and summary["dropped"] == 0 and summary["stop"] == "end"
    assert sink.names == [f"{i:06d}" for i in range(30)]
    assert sink.closed and source.closed


def test_live_source_drops_stale_frames():
    sink = RecordingSink()
    source = FakeSource(60, live=True, interval=0.001)
    summary = Pipeline(FakeSegmenter(delay=0.03), source, [sink]).run()
    assert summary["dropped"] > 0
    assert summary["frames"] + summary["dropped"] == 60
    assert sink.names[-1] == f"{59:06d}"  # the newest frame is the one processed
    assert sink.names == sorted(sink.names)


def test_max_frames_quit_and_interrupt_stop_cleanly():
    summary = Pipeline(FakeSegmenter(), FakeSource(50, live=False), [], max_frames=7).run()
    assert summary["frames"] == 7 and summary["stop"] == "max-frames"

    class QuitAfterThree:
        shown, closed = 0, False

        def show(self, image):
            self.shown += 1
            return self.shown == 3

        def close(self):
            self.closed = True

    window = QuitAfterThree()
    summary = Pipeline(FakeSegmenter(), FakeSource(50, live=False), [], window).run()
    assert summary["frames"] == 3 and summary["stop"] == "quit" and window.closed

    sink = RecordingSink(interrupt_at=5)
    summary = Pipeline(FakeSegmenter(), FakeSource(50, live=False), [sink]).run()
    assert summary["stop"] == "interrupted" and len(sink.names) == 4 and sink.closed


def test_bugs_propagate_after_cleanup():
    sink, source = RecordingSink(), FakeSource(50, live=False)
    with pytest.raises(RuntimeError, match="a bug"):
        Pipeline(FakeSegmenter(fail_at=3), source, [sink]).run()
    assert sink.closed and source.closed


def test_interrupted_video_is_finalised_and_plays(tmp_path):
    path = tmp_path / "out.mp4"
    video = VideoFileSink(path, fps=10.0)
    summary = Pipeline(FakeSegmenter(), FakeSource(50, live=False), [video, RecordingSink(interrupt_at=6)]).run()
    assert summary["stop"] == "interrupted"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left
    assert _count_frames(path) == 6


def test_video_sink_without_frames_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"an earlier video")
    VideoFileSink(path, fps=10.0).close()
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"] and path.read_bytes() == b"an earlier video"


def test_folder_sink_writes_overlay_and_label_pngs(tmp_path):
    sink = open_sink(f"{tmp_path / 'frames'}/", fps=10.0)
    assert isinstance(sink, FolderSink)
    labels = np.array([[0, 3], [7, 1]], np.uint8)
    sink.write("000003", np.zeros((2, 2, 3), np.uint8), labels)
    written = cv2.imread(str(tmp_path / "frames" / "000003_labels.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(written, labels)
    assert (tmp_path / "frames" / "000003_overlay.png").is_file()


def test_sink_choice_and_bad_outputs(tmp_path):
    assert isinstance(open_sink(str(tmp_path / "x.avi"), 5.0), VideoFileSink)
    with pytest.raises(EdgesegError, match="expected a video file"):
        open_sink(str(tmp_path / "x.gif"), 5.0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EdgesegError, match="does not exist"):
        open_sink(str(blocker / "out.mp4"), 5.0)
    with pytest.raises(EdgesegError, match="cannot be created"):
        open_sink(f"{blocker}/frames/", 5.0)


def _count_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_image_folder_source_skips_unreadable_files(tmp_path):
    for name in ("b", "a"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "c.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    source = ImageFolderSource(tmp_path)
    names = []
    while (frame := source.read()) is not None:
        names.append(frame.name)
    assert names == ["a", "b"] and source.skipped == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgesegError, match="no images"):
        ImageFolderSource(tmp_path / "empty")
    with pytest.raises(EdgesegError, match="not found"):
        ImageFolderSource(tmp_path / "missing")


def test_video_file_source_errors(tmp_path):
    with pytest.raises(EdgesegError, match="not found"):
        VideoFileSource(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(EdgesegError, match="cannot read video"):
        VideoFileSource(junk)


def test_camera_values():
    assert parse_camera("0") == 0 and parse_camera("/dev/video2") == "/dev/video2"
    assert parse_camera("PiCamera2") == "picamera2"
    with pytest.raises(EdgesegError, match="picamera2"):
        parse_camera("front")
    assert redact("rtsp://admin:secret@10.0.0.2/live") == "rtsp://admin:***@10.0.0.2/live"
    assert redact("http://host/stream.mjpg") == "http://host/stream.mjpg"


def test_drawing_modes_and_legend():
    frame = np.full((40, 60, 3), 100, np.uint8)
    colors = np.full((40, 60, 3), 200, np.uint8)
    assert drawing.compose(frame, colors, "side-by-side").shape == (40, 120, 3)
    np.testing.assert_array_equal(drawing.compose(frame, colors, "mask"), colors)
    assert drawing.compose(frame, colors, "blend", 0.5)[0, 0, 0] == 150
    with pytest.raises(ValueError, match="choose one of"):
        drawing.compose(frame, colors, "sepia")
    labels = np.zeros((100, 100), np.uint8)
    labels[:30] = 4
    labels[0, 0] = 9  # one stray pixel is not "present"
    assert drawing.classes_present(labels) == [0, 4]
    picture = frame.copy()
    drawing.draw_legend(picture, [0, 4], ["road", "sky"], np.full((256, 3), 255, np.uint8))
    drawing.draw_status(picture, "12.0 FPS")
    assert not np.array_equal(picture, frame)


def test_window_choice(monkeypatch):
    monkeypatch.setattr(display.platform, "system", lambda: "Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display.open_window("test") is None  # headless: no window, no error
    monkeypatch.setenv("DISPLAY", ":0")

    class Stub:
        def __init__(self, title):
            self.title = title

    monkeypatch.setattr(display, "OpenCvWindow", Stub)
    monkeypatch.setattr(display, "TkWindow", Stub)
    monkeypatch.setattr(display, "cv2_has_gui", lambda: False)
    assert isinstance(display.open_window("test"), Stub)  # headless OpenCV: tkinter instead


@pytest.mark.parametrize(
    "info, expected",
    [("  GUI:          NONE\n", False),
     ("  GUI:          GTK3\n    GTK+: YES\n", True),
     ("  GUI: \n    GTK+:          YES (ver 3.24)\n  Media I/O:\n", True),
     ("  GUI: \n    GTK+:          NO\n  Media I/O: YES\n", False),
     ("no such section", False)],  # fmt: skip
)
def test_cv2_gui_detection(monkeypatch, info, expected):
    monkeypatch.setattr(display.cv2, "getBuildInformation", lambda: info)
    assert display.cv2_has_gui() is expected


@pytest.mark.usefixtures("x_display")
def test_tk_window_shows_frames_and_quits_on_q():
    pytest.importorskip("tkinter")
    window = display.TkWindow("edgeseg test")
    try:
        image = np.zeros((24, 32, 3), np.uint8)
        image[..., 2] = 255  # red, in BGR
        assert window.show(image) is False
        assert window._photo.get(5, 5) == (255, 0, 0)  # Tk photos are RGB
        window.root.focus_force()
        window.root.update()
        window.root.event_generate("<KeyPress-q>")
        assert window.show(image) is True
    finally:
        window.close()


class QuitAfter:
    """A window whose user presses q on the `count`-th picture."""

    def __init__(self, count: int):
        self.count, self.shown = count, 0

    def show(self, image):
        self.shown += 1
        return self.shown == self.count

    def close(self):
        pass


def test_quitting_a_file_source_keeps_the_frames_beside_an_earlier_video(tmp_path):
    # q stops like Ctrl-C and SIGTERM (those are sent to a real process in test_interruptions.py).
    path = tmp_path / "out.mp4"
    path.write_bytes(b"an earlier video")
    for number, partial in enumerate([tmp_path / "out.partial.mp4", tmp_path / "out.partial-2.mp4"], start=3):
        sink = VideoFileSink(path, fps=10.0)
        summary = Pipeline(FakeSegmenter(), FakeSource(50, live=False), [sink], QuitAfter(number)).run()
        assert summary["stop"] == "quit" and summary["partial"] and summary["frames"] == number
        assert summary["outputs"] == [str(partial)] and _count_frames(partial) == number
        assert summary["notes"] == [f"the {number} frames processed so far are in {partial} ({path} was left as it was)"]
    assert path.read_bytes() == b"an earlier video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "out.partial-2.mp4", "out.partial.mp4"]


def test_stopping_a_live_source_is_how_it_ends(tmp_path):
    # A camera has no end: its recording, stopped by Ctrl-C, is complete and goes where asked.
    path = tmp_path / "out.mp4"
    path.write_bytes(b"an earlier video")
    video = VideoFileSink(path, fps=10.0)
    source = FakeSource(50, live=True, interval=0.01)
    summary = Pipeline(FakeSegmenter(), source, [video, RecordingSink(interrupt_at=4)]).run()
    assert summary["stop"] == "interrupted" and not summary["partial"] and summary["notes"] == []
    assert _count_frames(path) == video.written == 4
