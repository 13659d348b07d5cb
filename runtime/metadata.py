"""The self-describing model file: `edgeseg.json` in a zip archive appended to the flatbuffer.

The TFLite interpreter ignores bytes after the flatbuffer, and `zipfile` finds an archive at
the end of any file, so one `.tflite` carries everything the runtime needs.

Keys written by `edgeseg convert` (all optional for a reader):
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
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

FORMAT = "edgeseg/1"
MEMBER = "edgeseg.json"


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
    """Read the embedded metadata of a model file, or None if it has none."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return json.loads(archive.read(MEMBER))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        return None


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
