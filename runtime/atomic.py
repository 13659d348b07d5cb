"""Atomic output files: a temporary file beside the destination, renamed into place on success.

An interrupted or failed run leaves neither a partial file nor a damaged earlier one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from runtime.errors import TERMINATED, EdgesegError, Terminated


def check_output(path: str | Path, suffixes: tuple[str, ...] = ()) -> Path:
    """Check, before any work is done, that `path` can be written.

    A file is created and removed in its folder, as the output will be: permission bits do
    not stop root, while a read-only mount or a folder such as /proc still does.

    Args:
        path: Destination file.
        suffixes: Accepted file name endings (e.g. (".keras",)); empty accepts any.

    Raises:
        EdgesegError: wrong suffix, a missing or unwritable folder, or a folder at `path`.
    """
    path = Path(path)
    if suffixes and not path.name.endswith(suffixes):
        raise EdgesegError(f"output {path} must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise EdgesegError(f"output {path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise EdgesegError(f"output folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EdgesegError(f"output folder {folder} is not writable")
    _try_writing(folder, directory=False)
    return path


def check_output_folder(folder: str | Path) -> Path:
    """Check, before any work is done, that `folder` exists as a writable folder or can be made.

    A file (or, for a folder still to be made, a folder) is created and removed where the
    output will go, as in `check_output`. Nothing is left: a run that fails later leaves no
    empty folder behind.

    Raises:
        EdgesegError: a file in the way, or a folder (or the nearest existing parent) that is
            not writable.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise EdgesegError(f"output folder {folder} cannot be created: {existing} is a file in the way")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == folder else f"cannot be created: {existing} is not writable"
        raise EdgesegError(f"output folder {folder} {what}")
    _try_writing(existing, directory=existing != folder)
    return folder


def _try_writing(folder: Path, directory: bool) -> None:
    """Create and remove a file (or folder) in `folder`: what the output will do."""
    try:
        if directory:
            os.rmdir(tempfile.mkdtemp(prefix=".edgeseg-check-", dir=folder))
        else:
            handle, probe = tempfile.mkstemp(prefix=".edgeseg-check-", dir=folder)
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        raise EdgesegError(f"cannot write in {folder}: {error.strerror or type(error).__name__}") from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the destination's folder; rename it to `path` on success.

    The temporary file keeps the destination's suffix (some writers choose the format from
    it). On any exception, Ctrl-C included, it is deleted and `path` is left as it was. So it
    is after a SIGTERM whose exception a library swallowed: the signal was noted, and a run
    that was asked to stop does not replace a good output with one it finished regardless.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".weights.h5") else path.suffix
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temp)
        if TERMINATED:
            raise Terminated(TERMINATED[0])
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return Path(path)
