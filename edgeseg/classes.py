"""Class names, colours and the ignore index, and `classes.json`, the file that carries them.

A run folder's `classes.json` (names, colours, ignore index, input size, normalisation) is
written by training and read by evaluation and conversion, all through this module. Class
names come from a list, a count ("class 0", "class 1", ...) or a classes file (one name per
line, CVAT's labelmap.txt, a JSON/YAML list of {name, color}, or the built-in "voc"); colours
are the file's when it gives them, else CamVid's or VOC's when the names are theirs, else
generated. No TensorFlow here.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Sequence
from pathlib import Path

from edgeseg.config import NORMALIZATION, check_num_classes
from runtime.atomic import write_bytes
from runtime.errors import EdgesegError, ParameterError
from runtime.limits import MAX_CLASSES
from runtime.palette import VOC_CLASSES, generated_color, voc_color

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


BUILT_IN = {"voc": "Pascal VOC's 21 classes and palette"}  # class lists a classes file may name instead of a path
_LABELMAP_LINE = re.compile(r"([^:#][^:]*):(\d{1,3}),(\d{1,3}),(\d{1,3}):[^:]*:[^:]*")


def read_class_list(path: str | Path) -> tuple[list[str], list[list[int]] | None]:
    """Class names, and colours when the file gives them, from a classes file.

    Understood:
        - "voc" (no such file): Pascal VOC's 21 names and palette, built in;
        - CVAT's `labelmap.txt`: `name:R,G,B:parts:actions` per line, # comments;
        - a .json (or .yaml/.yml, with PyYAML) list of {"name": ..., "color": [R, G, B]}
          (colour optional, all or none);
        - plain text: one name per line, class 0 first.

    Returns:
        (names, [[R, G, B], ...] or None).

    Raises:
        EdgesegError: a missing, oversized, non-UTF-8 or malformed file (naming it and the line
            or entry), an empty or repeated name, fewer than 2 names or more than
            `runtime.limits.MAX_CLASSES`.
    """
    path = Path(path)
    if str(path) in BUILT_IN and not path.exists():
        return list(VOC_CLASSES), [list(voc_color(index)) for index in range(len(VOC_CLASSES))]
    if not path.is_file():
        raise EdgesegError(f"classes file {path} does not exist (built in: {', '.join(BUILT_IN)})")
    if path.stat().st_size > MAX_CLASSES_FILE_BYTES:
        raise EdgesegError(f"classes file {path} is {path.stat().st_size:,} bytes; a list of at most {MAX_CLASSES} "
                           "names is far smaller: is it the right file?")  # fmt: skip
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise EdgesegError(f"classes file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
                           f"offset {error.start}); save it as UTF-8, one class name per line") from None  # fmt: skip
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        names, colors = _structured_list(path, text)
    else:
        lines = text.rstrip().splitlines()
        matches = [_LABELMAP_LINE.fullmatch(line.strip()) for line in lines if line.strip() and line[:1] != "#"]
        if matches and all(matches):
            names = [match.group(1) for match in matches]
            colors = [[int(v) for v in match.groups()[1:]] for match in matches]
            if any(v > 255 for color in colors for v in color):
                raise EdgesegError(f"classes file {path} has a colour value above 255")
        else:
            names, colors = [line.strip() for line in lines], None
            for number, name in enumerate(names, start=1):
                if not name:
                    raise EdgesegError(f"classes file {path} has an empty name on line {number}; "
                                       "give one class name per line, class 0 first")  # fmt: skip
    problem = _names_problem(names)
    if problem:
        raise EdgesegError(f"classes file {path} {problem}")
    return names, colors


def _structured_list(path: Path, text: str) -> tuple[list[str], list[list[int]] | None]:
    """Names and colours from a JSON/YAML list of {name, color}."""
    try:
        if path.suffix.lower() == ".json":
            entries = json.loads(text)
        else:
            try:
                import yaml  # noqa: PLC0415 - optional: only YAML class lists need it
            except ImportError:
                raise EdgesegError(f"classes file {path} is YAML, which needs PyYAML (pip install pyyaml); "
                                   "or give the list as JSON") from None  # fmt: skip
            entries = yaml.safe_load(text)
    except EdgesegError:
        raise
    except Exception as error:  # noqa: BLE001 - json.JSONDecodeError or yaml.YAMLError (yaml is optional)
        kind = path.suffix[1:].upper()
        raise EdgesegError(f"classes file {path} is not valid {kind} ({_first_line(error)})") from None
    named = isinstance(entries, list) and all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip() for entry in entries
    )  # fmt: skip
    if not named:
        raise EdgesegError(f'classes file {path} is not a list of {{"name": ..., "color": [R, G, B]}}')
    names = [entry["name"].strip() for entry in entries]
    colors = [entry.get("color") for entry in entries]
    if all(color is None for color in colors):
        return names, None
    for name, color in zip(names, colors):
        valid = isinstance(color, list) and len(color) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in color)
        if not valid:
            raise EdgesegError(f"classes file {path}: class {name!r} has colour {color!r}; give every class "
                               "[R, G, B] of 0-255, or none")  # fmt: skip
    return names, [list(color) for color in colors]


def read_classes_file(path: str | Path) -> list[str]:
    """Class names from a classes file (`read_class_list`)."""
    return read_class_list(path)[0]


def class_list(classes: Sequence[str] | int | str | Path) -> tuple[list[str], list[list[int]] | None]:
    """The class names `classes` stands for, and their colours when a classes file gives them.

    Args:
        classes: The names (class 0 first), a number of classes, or a classes file
            (`read_class_list`: text, CVAT labelmap.txt, JSON/YAML, or "voc").

    Returns:
        (names, colours or None); names are "class 0", "class 1", ... for a count.

    Raises:
        ParameterError: fewer than 2 classes, or empty or repeated names.
        EdgesegError: an unreadable classes file.
    """
    if isinstance(classes, (str, Path)):
        return read_class_list(classes)
    return class_names(classes), None


def class_names(classes: Sequence[str] | int | str | Path) -> list[str]:
    """The class names `classes` stands for.

    Args:
        classes: The names (class 0 first), a number of classes, or a classes file
            (`read_class_list`).

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
    """(R, G, B) per class: CamVid's colours when every name is a CamVid class, VOC's for VOC's
    names, else generated."""
    if tuple(names) == VOC_CLASSES:
        return [list(voc_color(index)) for index in range(len(names))]
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


def classes_document(names: list[str], ignore_index: int, input_size: tuple[int, int],
                     colors: list | None = None) -> dict:  # fmt: skip
    """What `classes.json` holds (and the converter embeds in a .tflite); colours default to `class_colors`."""
    return {
        "classes": list(names),
        "colors": [list(c) for c in colors] if colors is not None else class_colors(names),
        "ignore_index": int(ignore_index),
        "input_size": [int(v) for v in input_size],
        "normalization": NORMALIZATION,
    }


def write_classes_json(folder: str | Path, names: list[str], ignore_index: int,
                       input_size: tuple[int, int], colors: list | None = None) -> Path:  # fmt: skip
    """Write `folder/classes.json` atomically; returns its path."""
    document = classes_document(names, ignore_index, input_size, colors)
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
