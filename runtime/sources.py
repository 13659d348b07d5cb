"""Where frames come from: cameras (V4L2 index or device, Picamera2), video files, streams, image folders.

Every source yields `Frame`s of (H, W, 3) uint8 BGR and says whether it is live (a camera or
stream, whose stale frames may be dropped) or a file (every frame processed, in order).
Opening failures raise `EdgesegError` with one line that names the source.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from runtime.errors import EdgesegError
from runtime.images import IMAGE_SUFFIXES, image_files

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
RECONNECT_ATTEMPTS = 5
RECONNECT_DELAY_S = 1.0
STREAM_TIMEOUT_MS = 10_000  # opening a stream, or waiting for its next frame
# A camera may return a few empty reads while it starts or adjusts exposure.
CAMERA_READ_RETRIES = 10
DEFAULT_FPS = 30.0
IMAGES_FPS = 10.0  # frame rate of a video written from an image folder


@dataclass
class Frame:
    """One captured frame: `image` (H, W, 3) uint8 BGR, its position and a name for output files."""

    image: np.ndarray
    index: int
    name: str


class Source(Protocol):
    live: bool
    fps: float
    description: str
    skipped: int

    def read(self) -> Frame | None: ...  # None at the end of the input

    def cancel(self) -> None: ...  # from another thread: stop waiting, end soon

    def close(self) -> None: ...


# FFmpeg prints its own diagnostics ("moov atom not found", "Stream ends prematurely") to
# stderr; the runtime reports failures itself, in one line. OpenCV reads this variable when its
# FFmpeg backend first starts, hence at import; set it beforehand to see FFmpeg's messages.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    # OpenCV's own warnings ("can't open camera by index") would add lines to a one-line error.
    # OpenCV 5 has the log level in cv2.utils.logging, 4.x at the top level (0: silent in both).
    logging = getattr(getattr(cv2, "utils", None), "logging", cv2)
    previous = logging.getLogLevel()
    logging.setLogLevel(0)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def redact(url: str) -> str:
    """`url` without a password, for messages (rtsp://user:secret@host -> rtsp://user:***@host)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_stream_url(value: str) -> bool:
    return urlsplit(value).scheme.lower() in STREAM_SCHEMES


class _CaptureSource:
    """Shared reading logic for sources backed by `cv2.VideoCapture`."""

    live = False
    skipped = 0

    def __init__(self, capture: cv2.VideoCapture, description: str):
        self._capture = capture
        self.description = description
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 1.0 <= fps <= 240.0 else DEFAULT_FPS
        self._index = 0
        self._cancelled = threading.Event()

    def _grab(self) -> np.ndarray | None:
        ok, image = self._capture.read()
        return _as_bgr(image) if ok and image is not None and image.size else None

    def _frame(self, image: np.ndarray) -> Frame:
        frame = Frame(image, self._index, f"{self._index:06d}")
        self._index += 1
        return frame

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        self._capture.release()


class VideoFileSource(_CaptureSource):
    """A video file: every frame, in order; the end of the file ends the run."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.exists():
            raise EdgesegError(f"video file not found: {path}")
        if not path.is_file():
            raise EdgesegError(f"video path is not a file: {path}")
        with _quiet_opencv():
            # One decoding thread: FFmpeg's default of one per core competes with the
            # interpreter's threads for the same cores and slows inference more than it gains.
            capture = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
        super().__init__(capture, str(path))
        self._first = self._grab() if capture.isOpened() else None
        if self._first is None:
            capture.release()
            raise EdgesegError(f"cannot read video {path}: not a video, or in a format this OpenCV build cannot decode")
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and count > 0 else None

    def read(self) -> Frame | None:
        if self._first is not None:
            image, self._first = self._first, None
            return self._frame(image)
        if self._cancelled.is_set():
            return None
        image = self._grab()
        return None if image is None else self._frame(image)


class StreamSource(_CaptureSource):
    """A network stream (RTSP, HTTP, ...): live; reconnects a bounded number of times when it drops."""

    live = True

    def __init__(self, url: str):
        self.url = url
        capture = self._open()
        super().__init__(capture, redact(url))
        if not capture.isOpened():
            raise EdgesegError(f"cannot open stream {redact(url)}: unreachable, or not a video stream")
        self.reconnects = 0

    def _open(self) -> cv2.VideoCapture:
        # Bounded waits (OpenCV >= 4.6): a stream that stalls without closing counts as dropped.
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]  # fmt: skip
        with _quiet_opencv():
            return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, timeouts)

    def read(self) -> Frame | None:
        attempts = 0
        while not self._cancelled.is_set():
            image = self._grab()
            if image is not None:
                return self._frame(image)
            if attempts == RECONNECT_ATTEMPTS:
                raise EdgesegError(
                    f"stream {self.description} dropped and did not come back after {attempts} reconnect attempts"
                )
            attempts += 1
            self.reconnects += 1
            self._capture.release()
            if self._cancelled.wait(RECONNECT_DELAY_S):
                break
            self._capture = self._open()
        return None


class CameraSource(_CaptureSource):
    """A V4L2 / system camera by index (0, 1, ...) or device path (/dev/video0): live."""

    live = True

    def __init__(self, device: int | str):
        name = f"camera {device}"
        if isinstance(device, int) and platform.system() == "Linux":
            node = Path(f"/dev/video{device}")
            if not node.exists():
                present = sorted(str(p) for p in Path("/dev").glob("video*"))
                raise EdgesegError(
                    f"{name} not found: {node} does not exist (cameras present: {', '.join(present) or 'none'})"
                )
        elif isinstance(device, str) and not Path(device).exists():
            raise EdgesegError(f"{name} not found: no such device")
        with _quiet_opencv():
            capture = cv2.VideoCapture(device)
        super().__init__(capture, name)
        if not capture.isOpened():
            raise EdgesegError(f"{name} could not be opened: in use by another program, or not a capture device")
        # Keep the driver's queue short: the newest frame is the one worth segmenting.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)

    def read(self) -> Frame | None:
        for _ in range(CAMERA_READ_RETRIES):
            if self._cancelled.is_set():
                return None
            image = self._grab()
            if image is not None:
                return self._frame(image)
        raise EdgesegError(f"{self.description} stopped delivering frames (unplugged, or used by another program?)")


class PicameraSource:
    """The Raspberry Pi camera through Picamera2 (libcamera): live, 640x480 BGR frames."""

    live = True
    skipped = 0

    def __init__(self, size: tuple[int, int] = (640, 480), fps: float = DEFAULT_FPS):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise EdgesegError(
                "Picamera2 is not installed — on Raspberry Pi OS: sudo apt install python3-picamera2 "
                "(and create the venv with --system-site-packages), or use --camera 0 for a V4L2 camera"
            ) from None
        except ValueError as error:
            # apt's Picamera2 imports simplejpeg, compiled against the system's numpy (1.24 on
            # bookworm); a pip numpy 2 in the venv fails that import ("numpy.dtype size changed").
            raise EdgesegError(
                f"Picamera2 cannot be imported with numpy {np.__version__} ({error}) — use the system's numpy "
                "in this venv: pip install \"numpy==$(python3 -c 'import numpy; print(numpy.__version__)')\""
            ) from None
        try:
            self._camera = Picamera2()
            # libcamera's "RGB888" is stored B, G, R: OpenCV's BGR order.
            config = self._camera.create_video_configuration(
                main={"size": size, "format": "RGB888"}, controls={"FrameRate": fps}
            )
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, IndexError, OSError) as error:
            raise EdgesegError(f"the Picamera2 camera could not be started: {error}") from None
        self.fps = fps
        self.description = "picamera2"
        self._index = 0
        self._cancelled = threading.Event()

    def read(self) -> Frame | None:
        if self._cancelled.is_set():
            return None
        image = np.ascontiguousarray(self._camera.capture_array()[:, :, :3])
        frame = Frame(image, self._index, f"{self._index:06d}")
        self._index += 1
        return frame

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        self._camera.stop()
        self._camera.close()


class ImageFolderSource:
    """The images of a folder (not recursive), in name order; unreadable files are skipped and counted."""

    live = False
    fps = IMAGES_FPS

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not folder.is_dir():
            raise EdgesegError(f"image folder not found: {folder}")
        self._paths = image_files(folder)
        if not self._paths:
            raise EdgesegError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        self.description = str(folder)
        self.frame_count = len(self._paths)
        self.skipped = 0
        self._position = 0
        self._index = 0
        self._cancelled = threading.Event()

    def read(self) -> Frame | None:
        while self._position < len(self._paths) and not self._cancelled.is_set():
            path = self._paths[self._position]
            self._position += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self.skipped += 1
                continue
            frame = Frame(image, self._index, path.stem)
            self._index += 1
            return frame
        return None

    def cancel(self) -> None:
        self._cancelled.set()

    def close(self) -> None:
        pass


def parse_camera(value: str) -> int | str:
    """`--camera` value: an index ("0"), a device path ("/dev/video2") or "picamera2".

    Raises:
        EdgesegError: anything else.
    """
    value = value.strip()
    if value.isdigit():
        return int(value)
    if value.lower() == "picamera2" or value.startswith("/dev/"):
        return value.lower() if value.lower() == "picamera2" else value
    raise EdgesegError(f"--camera {value!r}: expected an index (0, 1, ...), a device path (/dev/video0) or picamera2")


def check_one_source(camera: str | None, video: str | None, images: str | Path | None) -> None:
    """Raise `EdgesegError` unless exactly one of the three sources is given."""
    given = [name for name, value in (("--camera", camera), ("--video", video), ("--images", images)) if value]
    if len(given) != 1:
        raise EdgesegError(
            f"give exactly one source: --camera, --video or --images (got {' and '.join(given) or 'none'})"
        )


def open_source(camera: str | None = None, video: str | None = None, images: str | Path | None = None) -> Source:
    """Open the one source given.

    Args:
        camera: "0", "/dev/video0" or "picamera2".
        video: a video file path, or an rtsp/http(s)/... stream URL.
        images: a folder of images.

    Raises:
        EdgesegError: none or several sources given, or a source that cannot be opened.
    """
    check_one_source(camera, video, images)
    if camera:
        device = parse_camera(camera)
        return PicameraSource() if device == "picamera2" else CameraSource(device)
    if video:
        return StreamSource(video) if is_stream_url(video) else VideoFileSource(video)
    return ImageFolderSource(images)
