"""Mask formats and label maps: one reader that turns any mask file into class labels.

Three formats of PNG mask are read, each into (H, W) uint8 labels:

- index: a single-channel 8-bit PNG whose values are class indices (or the ignore index);
- palette: an indexed PNG (Pascal VOC, CVAT "Segmentation mask 1.1") whose class is the
  palette index of each pixel. OpenCV expands a palette PNG to its colours, so the file is
  decoded with its palette replaced by a grey ramp (entry i = (i, i, i)): OpenCV's own decoder
  then yields the raw indices, at C speed, with no image library beyond OpenCV (the device
  runtime's) and every PNG feature (bit depths, filters, interlacing) libpng handles;
- color: an RGB(A) PNG whose colours are those of the classes (`--classes-file` gives them).

A label map (`--label-map FILE`) turns stored values or colours into class indices or the
ignore index, once, here: training, evaluation and the converter's fidelity check all read
masks through `MaskDecoding.read`, so they see the same labels. No TensorFlow here.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import EdgesegError, ParameterError

MASK_FORMATS = ("index", "palette", "color")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types (IHDR byte 9) and the format each one is read as, when not overridden.
_COLOR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
_DETECTED = {"grey": "index", "palette": "palette", "RGB": "color", "RGBA": "color"}
# The stored kinds each format can read: a palette PNG read as colours is its expanded palette.
_READABLE = {"index": ("grey",), "palette": ("palette",), "color": ("RGB", "RGBA", "palette")}
IGNORE = "ignore"
ANY = "*"


# === PNG facts ===


def png_kind(path: str | Path) -> tuple[str, int] | None:
    """(kind, bit depth) of a PNG from its header: kind is grey, RGB, palette, grey+alpha or RGBA.

    Returns:
        None when the file is not a PNG (or cannot be read).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    kind = _COLOR_TYPES.get(head[25])
    return None if kind is None else (kind, head[24])


def detect_format(path: str | Path) -> str | None:
    """The mask format a PNG is read as by default: index, palette or color (None: none fits)."""
    kind = png_kind(path)
    return None if kind is None else _DETECTED.get(kind[0])


def read_palette_indices(path: str | Path) -> np.ndarray | None:
    """The palette indices of an indexed PNG, not its colours: (H, W) uint8, or None if unreadable.

    The PLTE chunk is replaced by a grey ramp and every other ancillary chunk dropped
    (transparency, background), so OpenCV's expansion to colours gives each index as its grey.
    """
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if data[:8] != PNG_SIGNATURE:
        return None
    chunks, position, depth = [PNG_SIGNATURE], 8, 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind == b"IHDR":
            depth = data[position + 16]
        if kind == b"PLTE":
            ramp = np.repeat(np.arange(1 << min(depth, 8), dtype=np.uint8), 3).tobytes()
            chunks.append(_chunk(b"PLTE", ramp))
        elif kind in (b"IHDR", b"IDAT", b"IEND"):
            chunks.append(data[position : position + 12 + length])
        position += 12 + length
    decoded = cv2.imdecode(np.frombuffer(b"".join(chunks), np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        return None
    return np.ascontiguousarray(decoded[..., 0]) if decoded.ndim == 3 else decoded


def _chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


# === Label maps ===


@dataclass(frozen=True)
class LabelMap:
    """Stored mask values or colours -> class index or the ignore index, read from a file.

    Attributes:
        path: The file.
        values: {stored value 0-255: target}.
        colors: {(R, G, B): target}.
        default: Target of every value or colour not listed (the `*` line), or None: unlisted
            values stay as stored, unlisted colours take their class's colour.
        A target is a class index or "ignore".
    """

    path: Path
    values: dict
    colors: dict
    default: int | str | None = None


def read_label_map(path: str | Path) -> LabelMap:
    """Read a label map: one `SOURCE TARGET` per line, `#` starts a comment.

    SOURCE is a stored value (0-255), a colour `R,G,B`, or `*` (everything not listed);
    TARGET is a class index or `ignore`. Example (Cityscapes labelIds -> trainIds)::

        *  ignore   # every id not listed below
        7  0        # road
        8  1        # sidewalk

    Raises:
        EdgesegError: a missing file, or a line that is not SOURCE TARGET (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"label map {path} does not exist")
    values, colors, default = {}, {}, None
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        source, target = (fields + [""])[:2] if len(fields) <= 2 else ("", "")
        target = _target(target)
        color = re.fullmatch(r"(\d{1,3}),(\d{1,3}),(\d{1,3})", source)
        if target is None or not (source == ANY or source.isdigit() and int(source) <= 255
                                  or color and all(int(v) <= 255 for v in color.groups())):  # fmt: skip
            raise EdgesegError(f"label map {path} line {number} {line.strip()!r} is not SOURCE TARGET: SOURCE a "
                               "value 0-255, a colour R,G,B or *; TARGET a class index or ignore")  # fmt: skip
        if source == ANY:
            default = target
        elif color:
            colors[tuple(int(v) for v in color.groups())] = target
        else:
            values[int(source)] = target
    return LabelMap(path, values, colors, default)


def _target(text: str) -> int | str | None:
    if text == IGNORE:
        return IGNORE
    return int(text) if text.isdigit() and int(text) <= 255 else None


# === Decoding ===


@dataclass(frozen=True)
class MaskDecoding:
    """How a dataset's mask files become labels: their format and the value/colour lookup.

    Build it with `mask_decoding`. Attributes:
        format: "index", "palette" or "color".
        lookup: (256,) uint8, stored value -> label (index and palette formats).
        codes: (K,) uint32 sorted colour codes 0xRRGGBB, and `code_labels` (K,) uint8 their
            labels (color format).
        unknown: Label of colours not in `codes`, or None: such a colour is an error.
        mapped: Whether a label map changed anything (for messages).
    """

    format: str
    lookup: np.ndarray | None = None
    codes: np.ndarray | None = None
    code_labels: np.ndarray | None = None
    unknown: int | None = None
    mapped: bool = False

    def read_stored(self, path: str | Path) -> np.ndarray | None:
        """A mask's stored pixels: (H, W) values, or (H, W, 3) BGR for colour; None if unreadable."""
        if self.format == "palette":
            return read_palette_indices(path)
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED if self.format == "index" else cv2.IMREAD_COLOR)
        return stored

    def labels(self, stored: np.ndarray) -> tuple[np.ndarray, tuple | None]:
        """(H, W) uint8 labels of stored pixels, and the first unknown colour as ((R, G, B), row,
        column), or None."""
        if self.format != "color":
            return self.lookup[stored], None
        blue, green, red = (stored[..., channel].astype(np.uint32) for channel in range(3))
        codes = (red << 16) | (green << 8) | blue
        position = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        known = self.codes[position] == codes
        labels = self.code_labels[position]
        if known.all():
            return labels, None
        if self.unknown is not None:
            return np.where(known, labels, np.uint8(self.unknown)), None
        row, column = np.argwhere(~known)[0]
        code = int(codes[row, column])
        return labels, ((code >> 16, (code >> 8) & 255, code & 255), int(row), int(column))

    def read(self, path: str | Path) -> np.ndarray:
        """(H, W) uint8 labels of a mask `edgeseg.datasets.scan_dataset` has checked."""
        return self.labels(self.read_stored(path))[0]

    def describe(self) -> str:
        """E.g. "palette PNGs (class = palette index)"."""
        what = {"index": "index PNGs (class = pixel value)", "palette": "palette PNGs (class = palette index)",
                "color": "colour PNGs (class = the class's colour)"}[self.format]  # fmt: skip
        return what + (", through the label map" if self.mapped else "")


def mask_decoding(mask_format: str, colors: list, ignore_index: int, label_map: LabelMap | None = None) -> MaskDecoding:
    """The decoding of a dataset of `mask_format` masks.

    Args:
        mask_format: "index", "palette" or "color".
        colors: (R, G, B) of each class (class index = position), for colour masks.
        ignore_index: What an "ignore" target stands for.
        label_map: Optional value/colour -> label overrides.

    Raises:
        EdgesegError: a label map that maps colours for index masks or values for colour masks.
    """
    if mask_format not in MASK_FORMATS:
        raise ParameterError(f"{{mask_format}} {mask_format!r} is not one of {', '.join(MASK_FORMATS)}", "mask_format")

    def label(target):
        return ignore_index if target == IGNORE else target

    mapped = label_map is not None
    if mask_format != "color":
        if label_map is not None and label_map.colors:
            raise EdgesegError(f"label map {label_map.path} maps colours, but the masks are {mask_format} PNGs "
                               "holding values; map values (0-255) instead")  # fmt: skip
        default = None if label_map is None else label_map.default
        lookup = np.arange(256, dtype=np.uint8) if default is None else np.full(256, label(default), np.uint8)
        for value, target in (label_map.values if label_map else {}).items():
            lookup[value] = label(target)
        return MaskDecoding(mask_format, lookup=lookup, mapped=mapped)
    if label_map is not None and label_map.values:
        raise EdgesegError(f"label map {label_map.path} maps values, but the masks are colour PNGs; map colours "
                           "(R,G,B) instead")  # fmt: skip
    table = {tuple(int(v) for v in color): index for index, color in enumerate(colors)}
    table.update({color: label(target) for color, target in (label_map.colors if label_map else {}).items()})
    codes = np.array([(r << 16) | (g << 8) | b for r, g, b in table], np.uint32)
    order = np.argsort(codes)
    default = None if label_map is None or label_map.default is None else label(label_map.default)
    return MaskDecoding("color", codes=codes[order], code_labels=np.array(list(table.values()), np.uint8)[order],
                        unknown=default, mapped=mapped)  # fmt: skip


def check_readable(path: Path, mask_format: str, detected_from: Path | None, role: str = "training") -> None:
    """Refuse a mask file the dataset's format cannot read, saying what it is and what to do.

    Args:
        path: The mask.
        mask_format: The dataset's format.
        detected_from: The mask the format was detected from, or None when it was given.
        role: "training", "validation" or "evaluation" (for messages).

    Raises:
        EdgesegError: not a PNG, or a kind of PNG `mask_format` does not read.
    """
    kind = png_kind(path)
    if kind is None:
        raise EdgesegError(f"cannot read {role} mask {path}: not a valid PNG file")
    if kind[0] in _READABLE[mask_format] and (kind[0] != "grey" or kind[1] == 8):
        return
    stored = f"{kind[1]}-bit {kind[0]}" if kind[0] == "grey" and kind[1] != 8 else kind[0]
    stored = ("an " if stored[0] in "aeiouAEIOR8" else "a ") + stored  # "an RGB", "an 8-bit"
    if kind[0] == "grey" and mask_format == "index":
        raise EdgesegError(f"mask {path} is {stored} PNG: index masks must be 8-bit PNGs")
    source = f"detected from {detected_from}" if detected_from else "as given"
    raise ParameterError(f"mask {path} is {stored} PNG, but the masks are read as {mask_format} PNGs ({source}); "
                         "give every mask one format, or choose it with {mask_format} index|palette|color",
                         "mask_format")  # fmt: skip
