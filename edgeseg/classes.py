"""Class names, colours and the ignore index, and `classes.json`, the file that carries them.

A run folder's `classes.json` (names, colours, ignore index, input size, normalisation) is
written by training and read by evaluation and conversion, all through this module. Class
names come from a list, a count ("class 0", "class 1", ...) or a text file (one per line);
colours are CamVid's when the names are CamVid's, generated otherwise. No TensorFlow here.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from pathlib import Path

from edgeseg.config import NORMALIZATION, check_num_classes
from runtime.atomic import write_bytes
from runtime.errors import EdgesegError, ParameterError
from runtime.limits import MAX_CLASSES
from runtime.palette import generated_color

CLASSES_FILE = "classes.json"
DEFAULT_IGNORE_INDEX = 255  # the mask value left out when neither the caller nor the model names one
# MAX_CLASSES names of up to 4 KiB each: a bigger file is not a classes file.
MAX_CLASSES_FILE_BYTES = MAX_CLASSES * 4096

CAMVID_COLORS = {
    "sky": (128, 128, 128), "building": (128, 0, 0), "pole": (192, 192, 128),
    "road": (128, 64, 128), "pavement": (60, 40, 222), "tree": (128, 128, 0),
    "signsymbol": (192, 128, 128), "fence": (64, 64, 128), "car": (64, 0, 128),
    "pedestrian": (64, 64, 0), "bicyclist": (0, 128, 192),
}  # fmt: skip


# === Names ===


def read_classes_file(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (blank lines at the end are ignored).

    Raises:
        EdgesegError: a missing, oversized or non-UTF-8 file, an empty name, a repeated name,
            fewer than 2 names or more than `runtime.limits.MAX_CLASSES`.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"classes file {path} does not exist")
    if path.stat().st_size > MAX_CLASSES_FILE_BYTES:
        raise EdgesegError(f"classes file {path} is {path.stat().st_size:,} bytes; a list of at most {MAX_CLASSES} "
                           "names is far smaller: is it the right file?")  # fmt: skip
    try:
        lines = path.read_text(encoding="utf-8").rstrip().splitlines()
    except UnicodeDecodeError as error:
        raise EdgesegError(f"classes file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
                           f"offset {error.start}); save it as UTF-8, one class name per line") from None  # fmt: skip
    names = [line.strip() for line in lines]
    for number, name in enumerate(names, start=1):
        if not name:
            raise EdgesegError(f"classes file {path} has an empty name on line {number}; "
                               "give one class name per line, class 0 first")  # fmt: skip
    problem = _names_problem(names)
    if problem:
        raise EdgesegError(f"classes file {path} {problem}")
    return names


def class_names(classes: Sequence[str] | int | str | Path) -> list[str]:
    """The class names `classes` stands for.

    Args:
        classes: The names (class 0 first), a number of classes, or the path of a text file
            with one name per line.

    Returns:
        The names; "class 0", "class 1", ... for a count.

    Raises:
        ParameterError: fewer than 2 classes, or empty or repeated names.
        EdgesegError: an unreadable classes file.
    """
    if isinstance(classes, (str, Path)):
        return read_classes_file(classes)
    if isinstance(classes, numbers.Integral):
        if classes < 2:
            raise ParameterError(f"{{classes}} {classes}: a segmentation model needs at least 2 classes", "classes")
        check_num_classes(classes, "classes")
        return [f"class {index}" for index in range(classes)]
    names = [str(name) for name in classes]
    if any(not name.strip() for name in names):
        raise ParameterError("{classes} has an empty name", "classes")
    problem = _names_problem(names)
    if problem:
        raise ParameterError(f"{{classes}} {problem}", "classes")
    return names


def _names_problem(names: list[str]) -> str | None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        return f"names {repeated[0]!r} more than once"
    if len(names) < 2:
        return f"has {len(names)} class name(s); a model needs at least 2"
    if len(names) > MAX_CLASSES:
        return f"has {len(names)} class names; edgeseg supports at most {MAX_CLASSES} (uint8 label maps)"
    return None


def class_colors(names: list[str]) -> list[list[int]]:
    """(R, G, B) per class: CamVid's colours when every name is a CamVid class, else generated."""
    keys = [name.lower().replace(" ", "").replace("_", "") for name in names]
    if all(key in CAMVID_COLORS for key in keys):
        return [list(CAMVID_COLORS[key]) for key in keys]
    return [list(generated_color(index)) for index in range(len(names))]


def check_ignore_index(ignore_index: int, num_classes: int) -> None:
    """Refuse an ignore index that does not fit a uint8 mask or that is a class.

    Raises:
        EdgesegError: saying which, and what to use instead.
    """
    if not 0 <= ignore_index <= 255:
        raise EdgesegError(f"ignore index {ignore_index} does not fit a uint8 mask; use 0-255")
    if ignore_index < num_classes:
        raise EdgesegError(f"ignore index {ignore_index} is one of the {num_classes} classes "
                           f"(0-{num_classes - 1}); use {num_classes} or 255")  # fmt: skip


# === classes.json ===


def classes_document(names: list[str], ignore_index: int, input_size: tuple[int, int]) -> dict:
    """What `classes.json` holds (and the converter embeds in a .tflite)."""
    return {
        "classes": list(names),
        "colors": class_colors(names),
        "ignore_index": int(ignore_index),
        "input_size": [int(v) for v in input_size],
        "normalization": NORMALIZATION,
    }


def write_classes_json(folder: str | Path, names: list[str], ignore_index: int,
                       input_size: tuple[int, int]) -> Path:  # fmt: skip
    """Write `folder/classes.json` atomically; returns its path."""
    document = classes_document(names, ignore_index, input_size)
    return write_bytes(Path(folder) / CLASSES_FILE, (json.dumps(document, indent=2) + "\n").encode())


def read_classes_json(folder: str | Path, num_classes: int) -> dict | None:
    """The `classes.json` in `folder`, for a model with `num_classes` outputs.

    Args:
        folder: The folder of the model (a run folder).
        num_classes: C of the model the file should describe.

    Returns:
        {"classes": names, "colors": (R, G, B) lists, "ignore_index": int or None}, or None
        when there is no file or it describes another number of classes (a file left over
        from another model). Missing colours are filled in as `class_colors` makes them.

    Raises:
        EdgesegError: a file that is not valid JSON or whose fields are malformed.
    """
    path = Path(folder) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise EdgesegError(f"{path} is not valid JSON ({_first_line(error)}); fix it or delete it") from None
    names = document.get("classes") if isinstance(document, dict) else None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise EdgesegError(f"{path} has no list of class names under \"classes\"; fix it or delete it")
    if len(names) != num_classes:
        return None
    colors = document.get("colors") or class_colors(names)
    ignore_index = document.get("ignore_index")
    well_formed = isinstance(colors, list) and len(colors) == len(names) and all(
        isinstance(color, list) and len(color) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in color)
        for color in colors
    )  # fmt: skip
    if not well_formed or not (ignore_index is None or isinstance(ignore_index, int) and 0 <= ignore_index <= 255):
        raise EdgesegError(f"{path} has malformed \"colors\" or \"ignore_index\" (one [R, G, B] of 0-255 per "
                           "class, an index of 0-255); fix it or delete it")  # fmt: skip
    return {"classes": names, "colors": colors, "ignore_index": ignore_index}


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
