"""Where results go: a video file, or a folder of per-frame overlay and label-map PNGs.

Every file is written atomically: a video goes to a temporary file beside the destination and
is renamed into place when the run ends (end of input, q/ESC, Ctrl-C or an error alike), so
the destination only ever holds a finalised, playable video.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from runtime.atomic import check_output, write_bytes
from runtime.errors import EdgesegError

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class Sink(Protocol):
    description: str
    written: int

    def write(self, name: str, picture: np.ndarray, labels: np.ndarray) -> None: ...

    def close(self) -> None: ...


def is_folder_output(path: str) -> bool:
    """`--output` names a folder when it ends with a separator, is a folder, or has no suffix."""
    return path.endswith(("/", os.sep)) or Path(path).is_dir() or not Path(path).suffix


class VideoFileSink:
    """An .mp4 (MPEG-4 Part 2) or .avi (MJPEG) file at a fixed frame rate; size set by the first frame."""

    def __init__(self, path: str | Path, fps: float):
        self.path = check_output(path, tuple(VIDEO_CODECS))
        self.fps = fps
        self.description = str(self.path)
        self.written = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        # The temporary name keeps the suffix: OpenCV picks the container from it.
        handle, temp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=f".part{self.path.suffix}", dir=self.path.parent
        )
        os.close(handle)
        self._temp = Path(temp)

    def write(self, name: str, picture: np.ndarray, labels: np.ndarray) -> None:
        if self._writer is None:
            self._size = (picture.shape[1], picture.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self._temp), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise EdgesegError(
                    f"cannot write video {self.path}: this OpenCV build has no {self.path.suffix} encoder"
                )
        if (picture.shape[1], picture.shape[0]) != self._size:
            # Images of a folder may differ in size; a video cannot.
            picture = cv2.resize(picture, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(picture)
        self.written += 1

    def close(self) -> None:
        """Finalise: release the writer and move the video into place (nothing if no frame came)."""
        if self._writer is not None:
            self._writer.release()
        if self.written:
            os.chmod(self._temp, 0o644)
            os.replace(self._temp, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                self._temp.unlink()


class FolderSink:
    """Per frame, NAME_overlay.png (what is shown) and NAME_labels.png (class index per pixel, uint8)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise EdgesegError(f"output folder {folder} cannot be created: a file is in the way") from None
        except OSError as error:
            raise EdgesegError(f"output folder {folder} cannot be created: {error.strerror}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise EdgesegError(f"output folder {folder} is not writable")
        self.folder = folder
        self.description = f"{folder}{os.sep}"
        self.written = 0

    def write(self, name: str, picture: np.ndarray, labels: np.ndarray) -> None:
        for suffix, image in (("overlay", picture), ("labels", labels)):
            ok, encoded = cv2.imencode(".png", image)
            if not ok:
                raise EdgesegError(f"cannot encode {name}_{suffix}.png")
            try:
                write_bytes(self.folder / f"{name}_{suffix}.png", encoded.tobytes())
            except OSError as error:
                raise EdgesegError(f"cannot write to {self.folder}: {error.strerror}") from None
        self.written += 1

    def close(self) -> None:
        pass


def open_sink(output: str, fps: float) -> Sink:
    """A `FolderSink` for "DIR/" (or an existing folder), a `VideoFileSink` for .mp4/.avi.

    Raises:
        EdgesegError: another suffix, or a destination that cannot be written.
    """
    if is_folder_output(output):
        return FolderSink(output)
    if Path(output).suffix.lower() not in VIDEO_CODECS:
        raise EdgesegError(
            f"--output {output}: expected a video file ({', '.join(VIDEO_CODECS)}) or a folder ending in /"
        )
    return VideoFileSink(output, fps)
