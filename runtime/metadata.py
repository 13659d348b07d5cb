"""The self-describing model file: `edgeseg.json` in a zip archive appended to the flatbuffer.

The TFLite interpreter ignores bytes after the flatbuffer, and `zipfile` finds an archive at
the end of any file, so one `.tflite` carries everything the runtime needs.

Keys written by `edgeseg convert` ("format" is required, the others optional for a reader):
    format          "edgeseg/1"
    classes         list of class names, index = class id
    colors          list of [R, G, B] per class
    input_size      [H, W] of the model input
    normalization   {"mean": [..3], "std": [..3]}: float input = (RGB pixel - mean) / std
    output_kind     "logits" or "labels"
    output_stride   input size / output size of the model output (1 = full resolution)
    ignore_index    label value that is not a class (int) or null
    quantization    "int8", "float16", "dynamic" or "float32"
    io              "uint8", "int8" or "float32"
    config          the model's build configuration (edgeseg.config.ModelConfig as a dict)

A model file is untrusted input: `read_metadata` reads at most `MAX_ARCHIVE_BYTES` of it,
accepts one stored or deflated `edgeseg.json` of at most `MAX_JSON_BYTES` and
`MAX_JSON_DEPTH` levels, and `check_metadata` checks the type and range of every key above
before anything uses it. A damaged archive or value raises `MetadataError`, never passes
for "no metadata".
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

from runtime.errors import EdgesegError
from runtime.limits import MAX_CLASSES, MAX_INPUT_SIDE

FORMAT = "edgeseg/1"
MEMBER = "edgeseg.json"
MAX_JSON_BYTES = 1 << 20  # our metadata is a few kB even with 255 classes
MAX_JSON_DEPTH = 16  # ours nests 3 levels (config -> list -> number)
MAX_NAME_LENGTH = 256  # characters of one class name
# The archive is at the end of the file: one member, its headers and the zip directory.
MAX_ARCHIVE_BYTES = MAX_JSON_BYTES + (64 << 10)
_LOCAL_HEADER = b"PK\x03\x04"
# What zipfile raises on a damaged archive, beyond BadZipFile (short reads, bad extra fields,
# a corrupt deflate stream, an unknown compression method it met before our check did).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, struct.error, NotImplementedError, ValueError, OSError)


class MetadataError(EdgesegError):
    """The embedded metadata is damaged or invalid; the message names the file and the fault."""


def embed_metadata(model: bytes, metadata: dict) -> bytes:
    """Return the flatbuffer `model` with `metadata` appended as a zip archive.

    Args:
        model: TFLite flatbuffer bytes, with or without earlier metadata.
        metadata: JSON-serialisable dict.

    Returns:
        The new file contents; any earlier edgeseg archive is replaced.
    """
    model = strip_metadata(model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MEMBER, json.dumps({"format": FORMAT, **metadata}, indent=1))
    return model + buffer.getvalue()


def read_metadata(source: str | Path | bytes) -> dict | None:
    """Read and check the embedded metadata of a model file.

    Args:
        source: the .tflite file, or its contents.

    Returns:
        The checked metadata (see `check_metadata`), or None when the file carries no edgeseg
        archive (a model from elsewhere; a zip archive without `edgeseg.json`, such as TFLite
        Support's associated files, is not ours either).

    Raises:
        MetadataError: a damaged, truncated, oversized, encrypted or otherwise invalid archive,
            or JSON that `check_metadata` refuses.
        EdgesegError: a file that cannot be read.
    """
    name = "model" if isinstance(source, bytes) else str(source)
    tail = source[-MAX_ARCHIVE_BYTES:] if isinstance(source, bytes) else _read_tail(Path(source))
    raw = _read_member(tail, name)
    return None if raw is None else check_metadata(_parse(raw, name), name)


def _read_tail(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            file.seek(0, io.SEEK_END)
            file.seek(max(0, file.tell() - MAX_ARCHIVE_BYTES))
            return file.read()
    except OSError as error:
        raise EdgesegError(f"cannot read {path}: {error.strerror}") from None


def _read_member(tail: bytes, name: str) -> bytes | None:
    """The raw `edgeseg.json` in the archive at the end of `tail`, None when there is none."""
    try:
        with zipfile.ZipFile(io.BytesIO(tail)) as archive:
            members = archive.infolist()
            if MEMBER not in (member.filename for member in members):
                return None
            if len(members) != 1:
                raise _invalid(name, f"the archive holds {len(members)} files; only {MEMBER} is expected")
            member = members[0]
            _check_member(member, name)
            with archive.open(member) as file:
                return file.read(MAX_JSON_BYTES + 1)
    except _ZIP_ERRORS as error:
        if isinstance(error, zipfile.BadZipFile) and not _has_our_local_header(tail):
            return None  # no archive at all
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _invalid(name, f"damaged or truncated archive: {reason}") from None


def _has_our_local_header(tail: bytes) -> bool:
    # An archive cut short loses its directory (at the end) but keeps the member's own header.
    start = tail.find(_LOCAL_HEADER)
    while start >= 0:
        if tail[start + 30 : start + 30 + len(MEMBER)] == MEMBER.encode():
            return True
        start = tail.find(_LOCAL_HEADER, start + 1)
    return False


def _check_member(member: zipfile.ZipInfo, name: str) -> None:
    if member.flag_bits & 0x1:
        raise _invalid(name, f"{MEMBER} is encrypted")
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _invalid(name, f"{MEMBER} uses compression method {member.compress_type} (stored or deflate expected)")
    if max(member.file_size, member.compress_size) > MAX_JSON_BYTES:
        size = max(member.file_size, member.compress_size)
        raise _invalid(name, f"{MEMBER} is {size:,} bytes (limit {MAX_JSON_BYTES:,})")


def _parse(raw: bytes, name: str) -> Any:
    if len(raw) > MAX_JSON_BYTES:
        raise _invalid(name, f"{MEMBER} is larger than {MAX_JSON_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError as error:
        raise _invalid(name, f"{MEMBER} is not UTF-8 text (byte {error.start})") from None
    except RecursionError:
        raise _invalid(name, f"{MEMBER} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, integers too long to read
        raise _invalid(name, f"{MEMBER} is not valid JSON: {str(error).splitlines()[0]}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise _invalid(name, f"{MEMBER} nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:  # no need to look further down
                pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _invalid(name: str, reason: str) -> MetadataError:
    from runtime.text import printable  # noqa: PLC0415 - keeps this module's imports minimal

    return MetadataError(f"{name}: invalid edgeseg metadata: {printable(reason)} — re-convert the model "
                         "(edgeseg convert)")  # fmt: skip


def check_metadata(metadata: Any, name: str = "model") -> dict:
    """Check the type and range of every known key of parsed metadata.

    Unknown keys are kept (a newer edgeseg may add some); what they hold is never used.
    Consistency with the model's tensors (input size, class count) is checked when the model
    is loaded (`runtime.segmenter.resolve_spec`).

    Args:
        metadata: the parsed `edgeseg.json`.
        name: the model file, for messages.

    Returns:
        `metadata`, unchanged.

    Raises:
        MetadataError: anything but a dict with "format": "edgeseg/1", or a known key whose
            value has the wrong type or range.
    """
    if not isinstance(metadata, dict):
        raise _invalid(name, f"{MEMBER} holds a JSON {type(metadata).__name__}, not an object")
    if metadata.get("format") != FORMAT:
        raise _invalid(name, f"format is {metadata.get('format')!r}, expected {FORMAT!r}")
    for key, check in _CHECKS.items():
        if key in metadata and metadata[key] is not None:
            problem = check(metadata[key])
            if problem:
                raise _invalid(name, f"{key} {problem}")
    classes, colors = metadata.get("classes"), metadata.get("colors")
    if classes is not None and colors is not None and len(colors) != len(classes):
        raise _invalid(name, f"{len(colors)} colours for {len(classes)} classes")
    ignore = metadata.get("ignore_index")
    if classes is not None and ignore is not None and ignore < len(classes):
        raise _invalid(name, f"ignore_index {ignore} is one of the {len(classes)} classes")
    return metadata


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _classes(value: Any) -> str | None:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CLASSES:
        return f"must be a list of 1 to {MAX_CLASSES} names"
    if not all(isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH for name in value):
        return f"must hold strings of 1 to {MAX_NAME_LENGTH} characters"
    return None


def _colors(value: Any) -> str | None:
    def is_color(color: Any) -> bool:
        return isinstance(color, list) and len(color) == 3 and all(_is_int(c) and 0 <= c <= 255 for c in color)

    if not isinstance(value, list) or len(value) > MAX_CLASSES or not all(is_color(c) for c in value):
        return "must be a list of [R, G, B] triples of integers 0-255"
    return None


def _input_size(value: Any) -> str | None:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) and 1 <= v <= MAX_INPUT_SIDE
                                                                  for v in value)):  # fmt: skip
        return f"must be [height, width], integers 1-{MAX_INPUT_SIDE}"
    return None


def _normalization(value: Any) -> str | None:
    def three(numbers: Any) -> bool:
        return isinstance(numbers, list) and len(numbers) in (1, 3) and all(_is_number(v) for v in numbers)

    if not isinstance(value, dict) or not all(three(value.get(key, [1.0])) for key in ("mean", "std")):
        return "must be {\"mean\": [3 numbers], \"std\": [3 numbers]}"
    if min(value.get("std", [1.0])) <= 0:
        return "std must be positive"
    return None


def _one_of(*choices: str):
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _output_stride(value: Any) -> str | None:
    return None if _is_int(value) and 1 <= value <= MAX_INPUT_SIDE else f"must be an integer 1-{MAX_INPUT_SIDE}"


def _ignore_index(value: Any) -> str | None:
    return None if _is_int(value) and 0 <= value <= 255 else "must be an integer 0-255 or null"


def _config(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


_CHECKS = {
    "classes": _classes,
    "colors": _colors,
    "input_size": _input_size,
    "normalization": _normalization,
    "output_kind": _one_of("logits", "labels"),
    "output_stride": _output_stride,
    "ignore_index": _ignore_index,
    "quantization": _one_of("int8", "float16", "dynamic", "float32"),
    "io": _one_of("uint8", "int8", "float32"),
    "config": _config,
}


def strip_metadata(model: bytes) -> bytes:
    """Return `model` without an appended edgeseg archive (unchanged if there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            if MEMBER not in archive.namelist():
                return model
            # zipfile shifts member offsets by the length of whatever precedes the archive;
            # our archive starts with its only member, so that offset is where it begins.
            return model[: min(info.header_offset for info in archive.infolist())]
    except zipfile.BadZipFile:
        return model
