"""Datasets of images and masks: finding the pairs, reading them, and checking every file.

A dataset is a folder of images and a folder of PNG masks with the same file stems; a mask
holds one uint8 class index per pixel, or the ignore index. Training, evaluation and the
converter's fidelity check all find, read and check pairs here, so they agree on what a
dataset is. Everything is checked before any work starts (`scan_dataset`): a bad file costs
seconds, not an interrupted run. No TensorFlow here.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import EdgesegError
from runtime.images import IMAGE_SUFFIXES, image_files

MASK_SUFFIX = ".png"
# OpenCV rotates JPEGs by their EXIF tag unless told not to; a mask has no such tag, so images
# are read in their stored pixel layout, which keeps every image aligned with its mask.
IMREAD_IMAGE = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


# === Reading ===


def read_image(path: str | Path) -> np.ndarray | None:
    """An image as stored (EXIF orientation ignored): (H, W, 3) uint8 BGR, or None if unreadable."""
    return cv2.imread(str(path), IMREAD_IMAGE)


def read_mask(path: str | Path) -> np.ndarray | None:
    """A mask file's pixels as stored (any channels and depth; `scan_dataset` checks them), or None."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def read_pair(image_path: str | Path, mask_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 BGR image and (H, W) uint8 mask of a pair `scan_dataset` has checked."""
    return read_image(image_path), read_mask(mask_path)


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
    """

    images: list[Path]
    masks: list[Path]
    sizes: list[tuple[int, int]]
    counts: np.ndarray
    image_pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @property
    def decoded_bytes(self) -> int:
        """Memory the decoded images (3 bytes per pixel) and masks (1 byte) take."""
        return sum(4 * height * width for height, width in self.sizes)

    @property
    def common_size(self) -> tuple[int, int] | None:
        """The size every pair shares, or None when sizes vary."""
        return self.sizes[0] if len(set(self.sizes)) == 1 else None


def find_pairs(images_dir: str | Path, masks_dir: str | Path) -> list[tuple[Path, Path]]:
    """Match the images of a folder (not its subfolders) to masks by file stem.

    Returns:
        (image, mask) paths sorted by stem.

    Raises:
        EdgesegError: a missing or empty folder, two images with one stem, an image without
            a mask or a mask without an image (the first one found, by name).
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder, role in ((images_dir, "images"), (masks_dir, "masks")):
        if not folder.is_dir():
            raise EdgesegError(f"{role} folder {folder} does not exist")
    images: dict[str, Path] = {}
    for path in image_files(images_dir):
        if path.stem in images:
            raise EdgesegError(f"images {images[path.stem].name} and {path.name} in {images_dir} "
                               "share a stem; keep one image per mask")  # fmt: skip
        images[path.stem] = path
    masks = {path.stem: path for path in sorted(masks_dir.iterdir())
             if path.suffix.lower() == MASK_SUFFIX and path.is_file()}  # fmt: skip
    if not images:
        raise EdgesegError(f"images folder {images_dir} has no .png, .jpg or .bmp images (looked for "
                           f"{', '.join(IMAGE_SUFFIXES)})")  # fmt: skip
    for stem, path in sorted(images.items()):
        if stem not in masks:
            raise EdgesegError(f"image {path} has no mask: expected {masks_dir / (stem + MASK_SUFFIX)}")
    for stem, path in sorted(masks.items()):
        if stem not in images:
            raise EdgesegError(f"mask {path} has no image in {images_dir} (same name, any of "
                               f"{', '.join(IMAGE_SUFFIXES)})")  # fmt: skip
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def _inspect_pair(image_path: Path, mask_path: Path) -> tuple:
    # Runs in a thread pool (OpenCV releases the GIL); returns facts, raises nothing.
    image = read_image(image_path)
    mask = read_mask(mask_path)
    image_size = None if image is None else image.shape[:2]
    if mask is None:
        return image_size, None, None
    histogram = np.bincount(mask.ravel(), minlength=256) if mask.ndim == 2 and mask.dtype == np.uint8 else None
    return image_size, mask, histogram


def scan_dataset(images_dir: str | Path, masks_dir: str | Path, num_classes: int,
                 ignore_index: int, role: str = "training") -> DatasetInfo:  # fmt: skip
    """Find and check every pair, counting class pixels on the way.

    Args:
        images_dir: Folder of images.
        masks_dir: Folder of PNG masks with the same stems.
        num_classes: C; mask values must be in [0, C) or equal `ignore_index`.
        ignore_index: The mask value excluded from loss and metrics.
        role: "training", "validation" or "evaluation" (for messages).

    Returns:
        The checked `DatasetInfo`.

    Raises:
        EdgesegError: one line naming the first bad file (in name order) and what is wrong:
            unpaired files, an unreadable image or mask, a mask that is not single-channel
            8-bit, sizes that differ, a value that is neither a class nor the ignore index.
    """
    pairs = find_pairs(images_dir, masks_dir)
    counts = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    sizes = []
    allowed = np.zeros(256, dtype=bool)
    allowed[:num_classes] = True
    allowed[ignore_index] = True
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda pair: _inspect_pair(*pair), pairs)
        for (image_path, mask_path), (image_size, mask, histogram) in zip(pairs, results):
            if image_size is None:
                raise EdgesegError(f"cannot read {role} image {image_path}: not a valid image file")
            if mask is None:
                raise EdgesegError(f"cannot read {role} mask {mask_path}: not a valid PNG file")
            if mask.ndim != 2:
                raise EdgesegError(f"mask {mask_path} has {mask.shape[2]} channels: a mask is a "
                                   "single-channel PNG with one class index per pixel")  # fmt: skip
            if mask.dtype != np.uint8:
                raise EdgesegError(f"mask {mask_path} is {mask.dtype}: masks must be 8-bit PNGs")
            if mask.shape != image_size:
                raise EdgesegError(f"mask {mask_path} is {mask.shape[0]}x{mask.shape[1]} but image "
                                   f"{image_path} is {image_size[0]}x{image_size[1]}")  # fmt: skip
            bad = np.flatnonzero((histogram > 0) & ~allowed)
            if bad.size:
                row, column = np.argwhere(mask == bad[0])[0]
                raise EdgesegError(f"mask {mask_path} has value {bad[0]} (row {row}, column {column}), "
                                   f"which is neither a class (0-{num_classes - 1}) nor the ignore "
                                   f"index {ignore_index}")  # fmt: skip
            class_histogram = histogram[:num_classes]
            counts += class_histogram
            image_pixels += np.where(class_histogram > 0, mask.size, 0)
            sizes.append(tuple(image_size))
    return DatasetInfo([p[0] for p in pairs], [p[1] for p in pairs], sizes, counts, image_pixels)
