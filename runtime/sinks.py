"""Where results go: a video file, or a folder of per-frame overlay and label-map PNGs.

Every file is written atomically: a video goes to a temporary file beside the destination and
is renamed into place when the run ends (end of input, q/ESC, Ctrl-C, SIGTERM or an error
alike), so the destination only ever holds a finalised, playable video. A run stopped before
the end of its input keeps the frames processed so far, but never in place of an earlier
file: that one stays, and the partial video goes beside it (`partial_path`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from runtime.atomic import check_output, check_output_folder, write_bytes
from runtime.errors import EdgesegError

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class Sink(Protocol):
    description: str  # where the result is (after `close`, where it went)
    written: int
    note: str | None  # after `close`: what the user should know about the result, if anything

    def write(self, name: str, picture: np.ndarray, labels: np.ndarray) -> None: ...

    def close(self, complete: bool = True) -> None: ...  # complete: False when the run stopped early


def partial_path(path: Path) -> Path:
    """A free name beside `path` for a partial result: out.partial.mp4, out.partial-2.mp4, ..."""
    stem, suffix = path.name[: -len(path.suffix)] if path.suffix else path.name, path.suffix
    candidate, number = path.with_name(f"{stem}.partial{suffix}"), 2
    while candidate.exists():
        candidate, number = path.with_name(f"{stem}.partial-{number}{suffix}"), number + 1
    return candidate


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
        self.note: str | None = None
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

    def close(self, complete: bool = True) -> None:
        """Finalise: release the writer and move the video into place (nothing if no frame came).

        Args:
            complete: False when the run stopped before the end of its input. The frames so
                far are still kept as a playable video, at the destination if nothing is
                there yet, else beside it (`partial_path`), leaving the earlier file as it
                was; `description` and `note` then say where it went.
        """
        try:
            if self._writer is not None:
                self._writer.release()
            if self.written:
                target = self.path if complete or not self.path.exists() else partial_path(self.path)
                os.chmod(self._temp, 0o644)
                os.replace(self._temp, target)
                self.description = str(target)
                if not complete:
                    self.note = f"the {self.written} frames processed so far are in {target}" + (
                        f" ({self.path} was left as it was)" if target != self.path else ""
                    )
        finally:  # nothing half-written is left behind, even if interrupted in here
            with contextlib.suppress(FileNotFoundError):
                self._temp.unlink()


class FolderSink:
    """Per frame, NAME_overlay.png (what is shown) and NAME_labels.png (class index per pixel, uint8)."""

    def __init__(self, folder: str | Path):
        # Checked now, created with the first frame: a run that fails first leaves no folder.
        self.folder = check_output_folder(folder)
        self.description = f"{self.folder}{os.sep}"
        self.written = 0
        self.note: str | None = None

    def write(self, name: str, picture: np.ndarray, labels: np.ndarray) -> None:
        if not self.written:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise EdgesegError(f"output folder {self.folder} cannot be created: {error.strerror}") from None
        for suffix, image in (("overlay", picture), ("labels", labels)):
            ok, encoded = cv2.imencode(".png", image)
            if not ok:
                raise EdgesegError(f"cannot encode {name}_{suffix}.png")
            try:
                write_bytes(self.folder / f"{name}_{suffix}.png", encoded.tobytes())
            except OSError as error:
                raise EdgesegError(f"cannot write to {self.folder}: {error.strerror}") from None
        self.written += 1

    def close(self, complete: bool = True) -> None:
        """Nothing to finalise: every frame's files were complete when written."""


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
