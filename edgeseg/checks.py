"""Checks that `build`, `train`, `convert` and `evaluate` make before any work: outputs that
can be written and thread counts that can work, refused with the parameter's name.

The rules are runtime's (`runtime.atomic.check_output`, which writes a probe where the output
will go, and `runtime.limits.check_threads`); this module names the parameter (`out`,
`threads`) the way the caller spelled it (`ParameterError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from runtime.atomic import check_output, check_output_folder
from runtime.errors import EdgesegError, ParameterError
from runtime.limits import check_threads


def output_file(path: str | Path, name: str, suffixes: tuple[str, ...] = ()) -> Path:
    """Check that the file `path` can be written, before any work.

    Args:
        path: Destination file (written later, atomically, beside where it goes).
        name: The parameter that gave it, for the message.
        suffixes: Accepted file name endings; empty accepts any.

    Returns:
        `path` as a Path.

    Raises:
        ParameterError: a wrong suffix, a folder in its place, or a folder that is missing or
            cannot take a new file.
    """
    try:
        path = check_output(path, suffixes)
    except EdgesegError as error:
        raise ParameterError(f"{{{name}}}: {error}", name) from None
    return path


def output_folder(folder: str | Path, name: str) -> Path:
    """Check that the folder `folder` exists and takes new files, or can be created, before any work.

    Nothing is left behind: the probe is removed, and a missing folder is not created.

    Raises:
        ParameterError: a file in the way, or a folder (or the nearest existing parent) that
            cannot take a new file or folder.
    """
    try:
        folder = check_output_folder(folder)
    except EdgesegError as error:
        raise ParameterError(f"{{{name}}}: {error}", name) from None
    return folder


def thread_count(threads: int | None, warn: Callable[[str], None], name: str = "threads") -> None:
    """Refuse a thread count that cannot work (`runtime.limits.check_threads`); warn beyond the cores.

    Args:
        threads: The count, or None for every core.
        warn: Called with the warning for a count above the machine's cores.
        name: The parameter, for the message.

    Raises:
        ParameterError: below 1 or above `runtime.limits.MAX_THREADS`, with the limit.
    """
    try:
        warning = check_threads(threads, "{" + name + "}")
    except EdgesegError as error:
        raise ParameterError(str(error), name) from None
    if warning:
        warn(warning.replace("{" + name + "}", name))
