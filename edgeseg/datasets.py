"""Datasets of images and masks: finding the pairs, reading them, and checking every file.

A dataset is a folder of images and a folder of PNG masks with the same file stems (or a
list of stems, or stems that differ by a fixed ending, as Cityscapes'); a mask is an index,
palette or colour PNG (`edgeseg.masks`) read into one uint8 class index per pixel, or the
ignore index. Training, evaluation and the converter's fidelity check all find, read and
check pairs here, so they agree on what a dataset is. Everything is checked before any work starts (`scan_dataset`): a bad file costs
seconds, not an interrupted run. No TensorFlow here.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeseg.masks import LabelMap, MaskDecoding, check_readable, detect_format, mask_decoding
from runtime.errors import EdgesegError, ParameterError
from runtime.images import IMAGE_SUFFIXES
from runtime.palette import generated_color

MASK_SUFFIX = ".png"
# OpenCV rotates JPEGs by their EXIF tag unless told not to; a mask has no such tag, so images
# are read in their stored pixel layout, which keeps every image aligned with its mask.
IMREAD_IMAGE = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


# === Reading ===


def read_image(path: str | Path) -> np.ndarray | None:
    """An image as stored (EXIF orientation ignored): (H, W, 3) uint8 BGR, or None if unreadable."""
    return cv2.imread(str(path), IMREAD_IMAGE)


# === Discovery and checks ===


@dataclass
class DatasetInfo:
    """A checked dataset.

    Attributes:
        images: Image paths, sorted by stem.
        masks: Mask paths, in the same order.
        sizes: (height, width) of each pair.
        counts: (C,) int64 pixels of each class over all masks.
        image_pixels: (C,) int64 total pixels of the masks in which each class appears.
        decoding: How the masks are read into labels (`edgeseg.masks.MaskDecoding`).
    """

    images: list[Path]
    masks: list[Path]
    sizes: list[tuple[int, int]]
    counts: np.ndarray
    image_pixels: np.ndarray
    decoding: MaskDecoding = field(default_factory=lambda: MaskDecoding("index", lookup=np.arange(256, dtype=np.uint8)))

    def __len__(self) -> int:
        return len(self.images)

    def read_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair `index`: (H, W, 3) uint8 BGR image and (H, W) uint8 labels."""
        return read_image(self.images[index]), self.decoding.read(self.masks[index])

    @property
    def decoded_bytes(self) -> int:
        """Memory the decoded images (3 bytes per pixel) and masks (1 byte) take."""
        return sum(4 * height * width for height, width in self.sizes)

    @property
    def common_size(self) -> tuple[int, int] | None:
        """The size every pair shares, or None when sizes vary."""
        return self.sizes[0] if len(set(self.sizes)) == 1 else None


def _files(folder: Path, suffix: str | None) -> dict[str, Path]:
    """{key: path} of the files of `folder` and its subfolders (hidden ones skipped) whose name
    ends in `suffix` (None: any image suffix); the key is the name without that ending."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or not path.is_file():
            continue
        if suffix is None:
            key = path.stem if path.suffix.lower() in IMAGE_SUFFIXES else None
        else:
            key = path.name[: -len(suffix)] if path.name.lower().endswith(suffix.lower()) else None
        if not key:
            continue
        if key in found:
            raise EdgesegError(f"{found[key]} and {path} share the stem {key!r}; keep one file per stem")
        found[key] = path
    return found


def find_pairs(images_dir: str | Path, masks_dir: str | Path, stems: Sequence[str] | None = None,
               image_suffix: str | None = None, mask_suffix: str = MASK_SUFFIX,
               listed_in: str = "the list") -> list[tuple[Path, Path]]:  # fmt: skip
    """Match the images of a folder to masks by stem (subfolders included, hidden ones not).

    An image's stem is its name without `image_suffix` (default: its extension); a mask's
    is its name without `mask_suffix`. Cityscapes, whose file names differ by more than the
    extension, pairs with image_suffix="_leftImg8bit.png", mask_suffix="_gtFine_labelIds.png".

    Args:
        images_dir: Folder of images.
        masks_dir: Folder of masks.
        stems: Only these stems (a list file, a prefix); other files are left alone.
        image_suffix: What image names end with after the stem.
        mask_suffix: What mask names end with after the stem.
        listed_in: What `stems` came from (for messages).

    Returns:
        (image, mask) paths sorted by stem.

    Raises:
        EdgesegError: a missing or empty folder, two files with one stem, an image without
            a mask or a mask without an image (the first one found, by name), a listed stem
            with no image or no mask.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder, role in ((images_dir, "images"), (masks_dir, "masks")):
        if not folder.is_dir():
            raise EdgesegError(f"{role} folder {folder} does not exist")
    images = _files(images_dir, image_suffix)
    masks = _files(masks_dir, mask_suffix)
    if not images:
        looked_for = f"names ending in {image_suffix}" if image_suffix else ", ".join(IMAGE_SUFFIXES)
        raise EdgesegError(f"images folder {images_dir} has no .png, .jpg or .bmp images (looked for {looked_for})")
    if stems is not None:
        for stem in stems:
            if stem not in images:
                raise EdgesegError(f"{stem!r}, named by {listed_in}, has no image in {images_dir}")
            if stem not in masks:
                raise EdgesegError(f"{stem!r}, named by {listed_in}, has no mask: expected "
                                   f"{masks_dir / (stem + mask_suffix)}")  # fmt: skip
        return [(images[stem], masks[stem]) for stem in sorted(set(stems))]
    for stem, path in sorted(images.items()):
        if stem not in masks:
            raise EdgesegError(f"image {path} has no mask: expected {masks_dir / (stem + mask_suffix)}")
    for stem, path in sorted(masks.items()):
        if stem not in images:
            raise EdgesegError(f"mask {path} has no image in {images_dir} (same stem, any of "
                               f"{image_suffix or ', '.join(IMAGE_SUFFIXES)})")  # fmt: skip
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def read_stem_list(path: str | Path) -> list[str]:
    """The stems of a list file (VOC/CVAT `ImageSets/Segmentation/train.txt`): one per line.

    Blank lines and lines starting with # are skipped; a line that is a file name or path
    stands for its stem.

    Raises:
        EdgesegError: a missing file, or one naming no stem.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"list file {path} does not exist")
    stems = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name = Path(line).name
            stems.append(Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name)
    if not stems:
        raise EdgesegError(f"list file {path} names no images; give one stem (file name without suffix) per line")
    return stems


def split_pairs(images: str | Path, masks: str | Path, val_images: str | Path | None = None,
                val_masks: str | Path | None = None, *, train_list: str | Path | None = None,
                val_list: str | Path | None = None, val_prefix: Sequence[str] | None = None,
                image_suffix: str | None = None, mask_suffix: str = MASK_SUFFIX):  # fmt: skip
    """The training and validation pairs, chosen by folders, list files or a stem prefix.

    Without `val_images`, `val_list` or `val_prefix` picks the validation pairs out of
    `images`/`masks`, and they are left out of training. `train_list` limits training to its
    stems (other files in the folders, e.g. VOC's unlabelled JPEGs, are left alone).

    Args:
        images, masks: Training folders.
        val_images, val_masks: Validation folders, or None.
        train_list: File of training stems, one per line.
        val_list: File of validation stems (in `val_images` if given, else in `images`).
        val_prefix: Stems starting with any of these are validation, the rest training.
        image_suffix, mask_suffix: The pairing rule (`find_pairs`).

    Returns:
        (training pairs, validation pairs or None).

    Raises:
        ParameterError: `val_prefix` with `val_images` or `val_list`, a stem in both lists,
            a prefix that matches nothing or everything.
        EdgesegError: as `find_pairs` and `read_stem_list`.
    """
    rule = {"image_suffix": image_suffix, "mask_suffix": mask_suffix}
    if val_prefix is not None:
        if val_images is not None or val_list is not None:
            raise ParameterError("{val_prefix} picks the validation images out of {images}; give it without "
                                 "{val_images} and {val_list}", "val_prefix", "images", "val_images",
                                 "val_list")  # fmt: skip
        prefixes = tuple(p for p in val_prefix if p)
        if not prefixes:
            raise ParameterError("{val_prefix} is empty; give one or more stem prefixes, comma-separated", "val_prefix")
        train_stems = read_stem_list(train_list) if train_list is not None else None
        pairs = find_pairs(images, masks, train_stems, listed_in=str(train_list), **rule)
        val = [pair for pair in pairs if _stem(pair, image_suffix).startswith(prefixes)]
        train = [pair for pair in pairs if not _stem(pair, image_suffix).startswith(prefixes)]
        if not val or not train:
            raise ParameterError(f"{{val_prefix}} {','.join(prefixes)} matches {'no' if not val else 'every'} image "
                                 f"of {images}; validation needs some and training the rest", "val_prefix")  # fmt: skip
        return train, val
    val_stems = read_stem_list(val_list) if val_list is not None else None
    train_stems = read_stem_list(train_list) if train_list is not None else None
    if val_images is not None:
        val = find_pairs(val_images, val_masks, val_stems, listed_in=str(val_list), **rule)
        return find_pairs(images, masks, train_stems, listed_in=str(train_list), **rule), val
    if val_stems is None:
        return find_pairs(images, masks, train_stems, listed_in=str(train_list), **rule), None
    both = sorted(set(val_stems) & set(train_stems or ()))
    if both:
        raise ParameterError(f"{both[0]!r} is in both {{train_list}} {train_list} and {{val_list}} {val_list}; "
                             "an image is for training or for validation", "train_list", "val_list")  # fmt: skip
    val = find_pairs(images, masks, val_stems, listed_in=str(val_list), **rule)
    held = set(val_stems)
    train = [pair for pair in find_pairs(images, masks, train_stems, listed_in=str(train_list), **rule)
             if _stem(pair, image_suffix) not in held]  # fmt: skip
    if not train:
        raise ParameterError(f"{{val_list}} {val_list} names every image of {images}; none is left to train on",
                             "val_list")  # fmt: skip
    return train, val


def _stem(pair: tuple[Path, Path], image_suffix: str | None) -> str:
    name = pair[0].name
    return name[: -len(image_suffix)] if image_suffix else pair[0].stem


def _inspect_pair(image_path: Path, mask_path: Path, decoding: MaskDecoding) -> tuple:
    # Runs in a thread pool (OpenCV releases the GIL); returns facts, raises nothing.
    image = read_image(image_path)
    image_size = None if image is None else image.shape[:2]
    stored = decoding.read_stored(mask_path)
    if stored is None or stored.ndim != (3 if decoding.format == "color" else 2):
        return image_size, None, None, None, None
    labels, unknown = decoding.labels(stored)
    return image_size, stored, labels, unknown, np.bincount(labels.ravel(), minlength=256)


def scan_dataset(images_dir: str | Path, masks_dir: str | Path, num_classes: int,
                 ignore_index: int, role: str = "training", **options) -> DatasetInfo:  # fmt: skip
    """Find (`find_pairs`) and check (`scan_pairs`) every pair of two folders.

    Args:
        options: `scan_pairs`' keywords, and `find_pairs`' `image_suffix` and `mask_suffix`.
    """
    rule = {key: options.pop(key) for key in ("image_suffix", "mask_suffix") if key in options}
    return scan_pairs(find_pairs(images_dir, masks_dir, **rule), num_classes, ignore_index, role, **options)


def scan_pairs(pairs: list[tuple[Path, Path]], num_classes: int, ignore_index: int, role: str = "training", *,
               mask_format: str | None = None, colors: Sequence | None = None,
               label_map: LabelMap | None = None) -> DatasetInfo:  # fmt: skip
    """Check every pair, counting class pixels on the way.

    Args:
        pairs: (image, mask) paths (`find_pairs`, `split_pairs`).
        num_classes: C; labels must be in [0, C) or equal `ignore_index`.
        ignore_index: The label excluded from loss and metrics.
        role: "training", "validation" or "evaluation" (for messages).
        mask_format: "index", "palette" or "color"; default: detected from the first mask.
        colors: (R, G, B) of each class, for colour masks; default: `runtime.palette`'s
            generated colours.
        label_map: Stored values or colours -> labels (`edgeseg.masks.read_label_map`).

    Returns:
        The checked `DatasetInfo`.

    Raises:
        EdgesegError: one line naming the first bad file (in name order) and what is wrong:
            an unreadable image or mask, a mask the format cannot read, sizes that differ,
            a colour no class has, a label that is neither a class nor the ignore index.
    """
    detected_from = None
    if mask_format is None:
        detected_from = pairs[0][1]
        mask_format = detect_format(detected_from) or "index"  # not a mask PNG: the checks below say what it is
    colors = colors if colors is not None else [generated_color(index) for index in range(num_classes)]
    decoding = mask_decoding(mask_format, colors, ignore_index, label_map)
    counts = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    sizes = []
    allowed = np.zeros(256, dtype=bool)
    allowed[:num_classes] = True
    allowed[ignore_index] = True
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda pair: _inspect_pair(*pair, decoding), pairs)
        for (image_path, mask_path), (image_size, stored, labels, unknown, histogram) in zip(pairs, results):
            if image_size is None:
                raise EdgesegError(f"cannot read {role} image {image_path}: not a valid image file")
            check_readable(mask_path, mask_format, detected_from, role)
            if stored is None:
                raise EdgesegError(f"cannot read {role} mask {mask_path}: not a valid PNG file")
            if labels.shape != image_size:
                raise EdgesegError(f"mask {mask_path} is {labels.shape[0]}x{labels.shape[1]} but image "
                                   f"{image_path} is {image_size[0]}x{image_size[1]}")  # fmt: skip
            if unknown is not None:
                (red, green, blue), row, column = unknown
                raise EdgesegError(f"mask {mask_path} has colour ({red}, {green}, {blue}) at row {row}, column "
                                   f"{column}, which is no class's colour; give the classes' colours in the classes "
                                   "file, or map the colour in a label map (to a class or to ignore)")  # fmt: skip
            bad = np.flatnonzero((histogram > 0) & ~allowed)
            if bad.size:
                row, column = np.argwhere(labels == bad[0])[0]
                value = stored[row, column]
                shown = f"colour {tuple(int(v) for v in value[::-1])}" if stored.ndim == 3 else f"value {value}"
                mapped = f", which the label map turns into {bad[0]}" if decoding.mapped else ""
                raise EdgesegError(f"mask {mask_path} has {shown} (row {row}, column {column}){mapped}, which is "
                                   f"neither a class (0-{num_classes - 1}) nor the ignore index "
                                   f"{ignore_index}")  # fmt: skip
            class_histogram = histogram[:num_classes]
            counts += class_histogram
            image_pixels += np.where(class_histogram > 0, labels.size, 0)
            sizes.append(tuple(image_size))
    return DatasetInfo([p[0] for p in pairs], [p[1] for p in pairs], sizes, counts, image_pixels, decoding)
