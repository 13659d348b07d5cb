"""Datasets of images and masks: discovery, checks before training, and the tf.data pipeline.

A dataset is a folder of images (PNG, JPEG or BMP) and a folder of PNG masks with the same
file stems; a mask holds one uint8 class index per pixel, or the ignore index. Everything
is checked before any training starts (`scan_dataset`), so a bad file costs seconds, not an
interrupted run. Class names come from a file (one per line) or a count; colours are
CamVid's when the names are CamVid's, generated otherwise.

TensorFlow is imported lazily (only `TrainingData` needs it), so the checks run without it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg.config import NORMALIZATION
from runtime.errors import EdgesegError
from runtime.palette import generated_color

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MASK_SUFFIX = ".png"
# OpenCV would rotate JPEGs by their EXIF tag while tf.io.decode_image does not: keep the
# stored pixel layout everywhere so images and masks always line up.
IMREAD_IMAGE = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

CAMVID_COLORS = {
    "sky": (128, 128, 128), "building": (128, 0, 0), "pole": (192, 192, 128),
    "road": (128, 64, 128), "pavement": (60, 40, 222), "tree": (128, 128, 0),
    "signsymbol": (192, 128, 128), "fence": (64, 64, 128), "car": (64, 0, 128),
    "pedestrian": (64, 64, 0), "bicyclist": (0, 128, 192),
}  # fmt: skip


# === Classes ===


def read_classes_file(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (blank lines at the end are ignored).

    Raises:
        EdgesegError: a missing file, an empty name, a repeated name or fewer than 2 names.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"classes file {path} does not exist")
    lines = path.read_text(encoding="utf-8").rstrip().splitlines()
    names = [line.strip() for line in lines]
    for number, name in enumerate(names, start=1):
        if not name:
            raise EdgesegError(f"classes file {path} has an empty name on line {number}; "
                               "give one class name per line, class 0 first")  # fmt: skip
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise EdgesegError(f"classes file {path} names {repeated[0]!r} more than once")
    if len(names) < 2:
        raise EdgesegError(f"classes file {path} has {len(names)} class name(s); a model needs at least 2")
    return names


def class_colors(names: list[str]) -> list[list[int]]:
    """(R, G, B) per class: CamVid's colours when every name is a CamVid class, else generated."""
    keys = [name.lower().replace(" ", "").replace("_", "") for name in names]
    if all(key in CAMVID_COLORS for key in keys):
        return [list(CAMVID_COLORS[key]) for key in keys]
    return [list(generated_color(index)) for index in range(len(names))]


def classes_document(names: list[str], ignore_index: int, input_size: tuple[int, int]) -> dict:
    """What the converter embeds in a .tflite (written to DIR/classes.json by `edgeseg train`)."""
    return {
        "classes": list(names),
        "colors": class_colors(names),
        "ignore_index": int(ignore_index),
        "input_size": [int(v) for v in input_size],
        "normalization": NORMALIZATION,
    }


def check_ignore_index(ignore_index: int, num_classes: int) -> None:
    """Raise EdgesegError unless the ignore index fits a uint8 mask and is not a class."""
    if not 0 <= ignore_index <= 255:
        raise EdgesegError(f"ignore index {ignore_index} does not fit a uint8 mask; use 0-255")
    if ignore_index < num_classes:
        raise EdgesegError(f"ignore index {ignore_index} is one of the {num_classes} classes "
                           f"(0-{num_classes - 1}); use {num_classes} or 255")  # fmt: skip


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
    """Match images to masks by file stem.

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
    for path in sorted(images_dir.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            if path.stem in images:
                raise EdgesegError(f"images {images[path.stem].name} and {path.name} in {images_dir} "
                                   "share a stem; keep one image per mask")  # fmt: skip
            images[path.stem] = path
    masks = {path.stem: path for path in sorted(masks_dir.iterdir())
             if path.suffix.lower() == MASK_SUFFIX and path.is_file()}  # fmt: skip
    if not images:
        raise EdgesegError(f"images folder {images_dir} has no .png, .jpg or .bmp images")
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
    image = cv2.imread(str(image_path), IMREAD_IMAGE)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
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


# === tf.data pipeline ===


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation (all in TensorFlow ops, seeded per sample).

    Attributes:
        scale_range: Random rescale factor range (min, max).
        flip: Random horizontal flip.
        brightness: Maximum brightness shift, as a fraction of the full range.
        contrast: Contrast factor range is [1 - contrast, 1 + contrast].
        saturation: Saturation factor range is [1 - saturation, 1 + saturation].
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    brightness: float = 0.125
    contrast: float = 0.2
    saturation: float = 0.2


class TrainingData:
    """Decoded, cached training pairs, served as augmented crops one epoch at a time.

    The order of an epoch and every random choice depend only on (seed, epoch, position),
    so an epoch can be replayed exactly, or resumed part-way with `skip_batches`.

    Args:
        info: The checked training set.
        crop_size: (height, width) of the training crops.
        batch_size: Crops per batch (the last incomplete batch is dropped).
        ignore_index: Label given to padding.
        seed: Base random seed.
        augmentation: What to randomise.
        cache: Keep decoded images in memory after the first epoch.
    """

    def __init__(self, info: DatasetInfo, crop_size: tuple[int, int], batch_size: int,
                 ignore_index: int, seed: int = 0, augmentation: Augmentation = Augmentation(),
                 cache: bool = True):  # fmt: skip
        import tensorflow as tf  # noqa: PLC0415 - the checks above work without TensorFlow

        self.tf = tf
        self.size = len(info)
        self.crop_size = tuple(int(v) for v in crop_size)
        self.batch_size = batch_size
        self.ignore_index = ignore_index
        self.seed = seed
        self.augmentation = augmentation
        if self.size < batch_size:
            raise EdgesegError(f"batch size {batch_size} is larger than the {self.size} training "
                               "images; lower --batch-size")  # fmt: skip
        self._paths = tf.data.Dataset.from_tensor_slices(([str(p) for p in info.images], [str(p) for p in info.masks]))
        self._cached = self._paths.map(_decode_pair, num_parallel_calls=tf.data.AUTOTUNE).cache() if cache else None

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.batch_size

    def epoch(self, epoch: int, skip_batches: int = 0):
        """The batches of one epoch.

        Args:
            epoch: Epoch index (0-based): picks the order and the augmentations.
            skip_batches: Batches of this epoch already trained on (resume).

        Returns:
            tf.data.Dataset of (images, labels): images (B, h, w, 3) float32 normalised to
            [-1, 1] as `edgeseg.config.NORMALIZATION` says, labels (B, h, w) uint8.
        """
        tf = self.tf
        autotune = tf.data.AUTOTUNE
        # A fixed shuffle seed per epoch replays the same order; shuffling decoded images
        # needs them all in memory, so without the cache the file names are shuffled instead.
        shuffle_seed = (self.seed * 1_000_003 + epoch) % 2**31
        if self._cached is not None:
            pairs = self._cached.shuffle(self.size, seed=shuffle_seed, reshuffle_each_iteration=False)
        else:
            pairs = self._paths.shuffle(self.size, seed=shuffle_seed, reshuffle_each_iteration=False)
            pairs = pairs.map(_decode_pair, num_parallel_calls=autotune)
        base = tf.constant([self.seed, epoch * self.size], tf.int64)
        # One stateless seed per sample, from (seed, epoch, position in the epoch).
        samples = pairs.enumerate().skip(skip_batches * self.batch_size)
        crops = samples.map(
            lambda position, pair: augment(*pair, base + tf.stack([0, position]), self.crop_size,
                                           self.ignore_index, self.augmentation),
            num_parallel_calls=autotune,
        )  # fmt: skip
        return crops.batch(self.batch_size, drop_remainder=True).prefetch(autotune)

    def frames(self, size: tuple[int, int], count: int, batch_size: int = 2):
        """Whole training images, not augmented, stretched to `size` as the runtime would.

        What the model sees at deployment, for estimating batch-norm statistics.

        Args:
            size: (height, width) of the model that will run on them.
            count: How many images, spread evenly over the training set.
            batch_size: Images per batch.

        Returns:
            tf.data.Dataset of (images, dummy): images (B, H, W, 3) float32 normalised as
            `edgeseg.config.NORMALIZATION`; dummy (B,) uint8 zeros, so batches unpack like
            those of `epoch`.
        """
        tf = self.tf
        pairs = self._cached if self._cached is not None else self._paths.map(_decode_pair)
        every = max(self.size // max(count, 1), 1)
        mean = tf.constant(NORMALIZATION["mean"], tf.float32)
        std = tf.constant(NORMALIZATION["std"], tf.float32)

        def prepare(image, mask):
            image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
            return (image - mean) / std, tf.zeros([], tf.uint8)

        chosen = pairs.shard(every, 0).take(count)
        return chosen.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)


def _decode_pair(image_path, mask_path):
    import tensorflow as tf  # noqa: PLC0415

    image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False)
    mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
    return image, mask[..., 0]


def augment(image, mask, seed, crop_size: tuple[int, int], ignore_index: int,
            augmentation: Augmentation = Augmentation()):  # fmt: skip
    """Random scale, crop (padding with the ignore label), flip and colour jitter.

    The crop window is chosen in the original image (crop / scale pixels, padded where it
    overhangs) and resized to `crop_size`: the same result as rescaling then cropping, at the
    cost of the crop only.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) uint8 labels.
        seed: (2,) int64 stateless seed.
        crop_size: (h, w) of the output.
        ignore_index: Label of padded pixels.
        augmentation: What to randomise.

    Returns:
        image (h, w, 3) float32 in [-1, 1], labels (h, w) uint8.
    """
    import tensorflow as tf  # noqa: PLC0415

    seeds = tf.random.experimental.stateless_split(seed, 8)
    crop_h, crop_w = crop_size
    low, high = augmentation.scale_range
    scale = tf.random.stateless_uniform([], seeds[0], low, high)
    region = tf.cast(tf.math.ceil(tf.constant([crop_h, crop_w], tf.float32) / scale), tf.int32)
    shape = tf.shape(mask)
    overhang = tf.maximum(region - shape, 0)
    before = tf.cast(tf.random.stateless_uniform([2], seeds[1]) * tf.cast(overhang + 1, tf.float32), tf.int32)
    before = tf.minimum(before, overhang)
    padding = tf.stack([before, overhang - before], axis=1)
    # Pad with the mean pixel (0 after normalisation) and the ignore label.
    image = tf.pad(tf.cast(image, tf.float32), tf.concat([padding, [[0, 0]]], 0),
                   constant_values=float(np.mean(NORMALIZATION["mean"])))  # fmt: skip
    mask = tf.pad(tf.cast(mask, tf.int32), padding, constant_values=ignore_index)
    room = tf.shape(mask) - region
    offset = tf.cast(tf.random.stateless_uniform([2], seeds[2]) * tf.cast(room + 1, tf.float32), tf.int32)
    offset = tf.minimum(offset, room)
    image = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([region, [3]], 0))
    mask = tf.slice(mask, offset, region)
    image = tf.image.resize(image, crop_size, method="bilinear")
    mask = tf.image.resize(mask[..., None], crop_size, method="nearest")[..., 0]
    if augmentation.flip:
        flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
        mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    image = image / 255.0
    if augmentation.brightness:
        image = tf.image.stateless_random_brightness(image, augmentation.brightness, seeds[4])
    if augmentation.contrast:
        image = tf.image.stateless_random_contrast(image, 1 - augmentation.contrast,
                                                   1 + augmentation.contrast, seeds[5])  # fmt: skip
    if augmentation.saturation:
        image = tf.image.stateless_random_saturation(image, 1 - augmentation.saturation,
                                                     1 + augmentation.saturation, seeds[6])  # fmt: skip
    mean = tf.constant(NORMALIZATION["mean"], tf.float32)
    std = tf.constant(NORMALIZATION["std"], tf.float32)
    image = (tf.clip_by_value(image, 0.0, 1.0) * 255.0 - mean) / std
    image.set_shape((crop_h, crop_w, 3))
    mask = tf.cast(mask, tf.uint8)
    mask.set_shape((crop_h, crop_w))
    return image, mask
