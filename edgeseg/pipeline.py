"""The training input pipeline (tf.data): decoded pairs served as augmented crops, epoch by epoch.

Pairs are read as `edgeseg.datasets.DatasetInfo.read_pair` reads them (masks through the
dataset's `edgeseg.masks.MaskDecoding`, label map included), the reader evaluation and
conversion use, so training sees exactly the labels the model is later scored on. Every random choice is seeded
by (seed, epoch, position), so an epoch replays exactly and resumes part-way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import tensorflow as tf

from edgeseg.config import NORMALIZATION
from edgeseg.datasets import DatasetInfo, read_image
from edgeseg.masks import MaskDecoding
from edgeseg.settings import PHOTOMETRIC_JITTER
from runtime.errors import ParameterError

# Decoded training images are kept in memory when they take at most this share of RAM.
CACHE_SHARE_OF_MEMORY = 0.25



@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation (all in TensorFlow ops, seeded per sample).

    Attributes:
        scale_range: Random rescale factor range (min, max).
        flip: Random horizontal flip.
        brightness: Maximum brightness shift, as a fraction of the full range.
        contrast: Contrast factor range is [1 - contrast, 1 + contrast].
        saturation: Saturation factor range is [1 - saturation, 1 + saturation].
        hue: Maximum hue rotation, as a fraction of the colour circle.
        classmix: Share of the crops (0-1) that receive another crop's pixels of a random half of
            its classes, labels with them (ClassMix, see `classmix`); 0: none.
    """

    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    brightness: float = 0.125
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.0
    classmix: float = 0.0

    @classmethod
    def of(cls, photometric: str = "default", scale_range: tuple[float, float] = (0.5, 2.0),
           classmix: float = 0.0) -> Augmentation:  # fmt: skip
        """The augmentation of a colour jitter strength named in `edgeseg.settings.PHOTOMETRIC_JITTER`."""
        return cls(scale_range=tuple(scale_range), classmix=classmix, **PHOTOMETRIC_JITTER[photometric])


def cache_fits(info: DatasetInfo) -> bool:
    """Whether the decoded training set fits the memory share it may take (`CACHE_SHARE_OF_MEMORY`)."""
    return info.decoded_bytes <= CACHE_SHARE_OF_MEMORY * _memory_bytes()


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


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
        cache: Keep decoded images in memory after the first epoch; None decides by
            `cache_fits`.

    Raises:
        ParameterError: a batch larger than the training set.
    """

    def __init__(self, info: DatasetInfo, crop_size: tuple[int, int], batch_size: int,
                 ignore_index: int, seed: int = 0, augmentation: Augmentation = Augmentation(),
                 cache: bool | None = None):  # fmt: skip
        self.size = len(info)
        self.crop_size = tuple(int(v) for v in crop_size)
        self.batch_size = batch_size
        self.ignore_index = ignore_index
        self.seed = seed
        self.augmentation = augmentation
        if self.size < batch_size:
            raise ParameterError(f"{{batch_size}} {batch_size} is larger than the {self.size} training "
                                 "images; lower it", "batch_size")  # fmt: skip
        self._paths = tf.data.Dataset.from_tensor_slices(([str(p) for p in info.images], [str(p) for p in info.masks]))
        self.cache = cache_fits(info) if cache is None else cache
        self._decode = _pair_decoder(info.decoding)
        self._cached = self._paths.map(self._decode, num_parallel_calls=tf.data.AUTOTUNE).cache() if self.cache else None

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.batch_size

    def epoch(self, epoch: int, skip_batches: int = 0, context=None):
        """The batches of one epoch, or one input pipeline's share of them.

        Every process draws the same order and augmentations; with several input pipelines
        (one per machine), pipeline i keeps the i-th slice of every global batch, so the
        replicas of one step together see exactly the global batch of a single process (with
        `Augmentation.classmix`, each pipeline mixes crops within its own slice). Without the
        cache, a pipeline reads only the files of its own slices.

        Args:
            epoch: Epoch index (0-based): picks the order and the augmentations.
            skip_batches: Global batches of this epoch already trained on (resume).
            context: A `tf.distribute.InputContext` (from `distribute_datasets_from_function`),
                or None for the whole global batch.

        Returns:
            tf.data.Dataset of (images, labels): images (B, h, w, 3) float32 normalised to
            [-1, 1] as `edgeseg.config.NORMALIZATION` says, labels (B, h, w) uint8; B is
            `batch_size`, or the context's per-replica batch size.
        """
        autotune = tf.data.AUTOTUNE
        # A fixed shuffle seed per epoch replays the same order; shuffling decoded images
        # needs them all in memory, so without the cache the file names are shuffled instead.
        shuffle_seed = (self.seed * 1_000_003 + epoch) % 2**31
        source = self._cached if self._cached is not None else self._paths
        order = source.shuffle(self.size, seed=shuffle_seed, reshuffle_each_iteration=False)
        # Positions in the epoch, the incomplete last batch dropped.
        samples = order.enumerate().take(self.steps_per_epoch * self.batch_size).skip(skip_batches * self.batch_size)
        batch = self.batch_size if context is None else context.get_per_replica_batch_size(self.batch_size)
        if context is not None and context.num_input_pipelines > 1:
            share, pipeline = self.batch_size // context.num_input_pipelines, context.input_pipeline_id
            samples = samples.filter(lambda position, pair: position % self.batch_size // share == pipeline)
        if self._cached is None:
            samples = samples.map(lambda position, paths: (position, self._decode(*paths)), num_parallel_calls=autotune)
        base = tf.constant([self.seed, epoch * self.size], tf.int64)
        # One stateless seed per sample, from (seed, epoch, position in the epoch).
        crops = samples.map(
            lambda position, pair: augment(*pair, base + tf.stack([0, position]), self.crop_size,
                                           self.ignore_index, self.augmentation),
            num_parallel_calls=autotune,
        )  # fmt: skip
        batches = crops.batch(batch, drop_remainder=True)
        if self.augmentation.classmix:
            # One stateless seed per batch, from (seed, epoch, batch index in the epoch).
            batches = batches.enumerate(skip_batches).map(
                lambda index, pair: classmix(*pair, base + tf.stack([1, index]), self.augmentation.classmix,
                                             self.ignore_index),
                num_parallel_calls=autotune,
            )  # fmt: skip
        # Not autotuned: ending an autotuned iterator waits for a tf.data background thread
        # (py-spy: in the iterator's destructor), 30-35 s at most epoch boundaries of the CamVid
        # recipe on 2 cores. Without autotuning its 58 steps take 60 s instead of 47, with no
        # wait: 61 s an epoch against 82-95. AUTOTUNE here means one parallel call per core.
        options = tf.data.Options()
        options.autotune.enabled = False
        return batches.prefetch(autotune).with_options(options)

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
        pairs = self._cached if self._cached is not None else self._paths.map(self._decode)
        every = max(self.size // max(count, 1), 1)
        mean = tf.constant(NORMALIZATION["mean"], tf.float32)
        std = tf.constant(NORMALIZATION["std"], tf.float32)

        def prepare(image, mask):
            image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
            return (image - mean) / std, tf.zeros([], tf.uint8)

        chosen = pairs.shard(every, 0).take(count)
        return chosen.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)


def _pair_decoder(decoding: MaskDecoding):
    """(image path, mask path) -> (H, W, 3) uint8 RGB image and (H, W) uint8 labels, as tensors."""

    def read(image_path: bytes, mask_path: bytes) -> tuple[np.ndarray, np.ndarray]:
        image = cv2.cvtColor(read_image(os.fsdecode(image_path)), cv2.COLOR_BGR2RGB)
        return image, decoding.read(os.fsdecode(mask_path))

    def decode(image_path, mask_path):
        image, mask = tf.numpy_function(read, [image_path, mask_path], [tf.uint8, tf.uint8], stateful=False)
        image.set_shape([None, None, 3])
        mask.set_shape([None, None])
        return image, mask

    return decode


def classmix(images, labels, seed, share: float, ignore_index: int):
    """ClassMix within a batch: a crop takes the pixels of the crop before it (the first crop
    takes the last's) wherever that crop shows one of a random half of its classes, labels too.

    Objects land where they were, so a car pasted on a road keeps its place in the street; each
    class of the donor is taken with probability one half, and the ignore label never.

    Args:
        images: (B, h, w, 3) float32 crops.
        labels: (B, h, w) uint8 labels.
        seed: (2,) int64 stateless seed.
        share: Probability that a crop is mixed.
        ignore_index: Label never pasted (padding, unlabelled pixels).

    Returns:
        images and labels as given, mixed.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    count = tf.shape(labels)[0]
    donors = tf.roll(labels, 1, axis=0)
    taken = tf.random.stateless_uniform([count, 256], seeds[0]) < 0.5
    taken &= tf.not_equal(tf.range(256), ignore_index)[None]
    mixed = tf.random.stateless_uniform([count], seeds[1]) < share
    pasted = tf.gather(taken, tf.cast(donors, tf.int32), batch_dims=1) & mixed[:, None, None]
    images = tf.where(pasted[..., None], tf.roll(images, 1, axis=0), images)
    return images, tf.where(pasted, donors, labels)


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
    if augmentation.hue:
        image = tf.image.stateless_random_hue(tf.clip_by_value(image, 0.0, 1.0), augmentation.hue, seeds[7])
    mean = tf.constant(NORMALIZATION["mean"], tf.float32)
    std = tf.constant(NORMALIZATION["std"], tf.float32)
    image = (tf.clip_by_value(image, 0.0, 1.0) * 255.0 - mean) / std
    image.set_shape((crop_h, crop_w, 3))
    mask = tf.cast(mask, tf.uint8)
    mask.set_shape((crop_h, crop_w))
    return image, mask
