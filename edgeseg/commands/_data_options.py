"""Options that say how a dataset is laid out and read, shared by `edgeseg train` and `edgeseg eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgeseg.commands._common import choices
from edgeseg.masks import MASK_FORMATS

MaskFormat = choices("MaskFormat", MASK_FORMATS)

ClassesFile = Annotated[Optional[Path], typer.Option(
    "--classes-file", help="Class names: a text file (one per line, class 0 first), CVAT's labelmap.txt, a "
    "JSON/YAML list of {name, color}, or voc (built in: Pascal VOC's 21 classes and palette).")]  # fmt: skip
ImageSuffix = Annotated[Optional[str], typer.Option(
    "--image-suffix", help="What image names end with after the stem (default: the extension); Cityscapes: "
    "_leftImg8bit.png.")]  # fmt: skip
MaskSuffix = Annotated[str, typer.Option(
    "--mask-suffix", help="What mask names end with after the stem; Cityscapes: _gtFine_labelIds.png.")]
MaskFormatOption = Annotated[Optional[MaskFormat], typer.Option(
    "--mask-format", help="index (class = pixel value), palette (class = palette index: VOC, CVAT) or color "
    "(class = the class's colour from --classes-file); default: detected from the masks.")]  # fmt: skip
LabelMap = Annotated[Optional[Path], typer.Option(
    "--label-map", help="File of 'SOURCE TARGET' lines: a mask value (0-255) or colour R,G,B, or * for the "
    "rest, to a class index or ignore (e.g. Cityscapes labelIds -> trainIds).")]  # fmt: skip
