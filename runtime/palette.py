"""Class names and colours for models that carry none: PASCAL VOC for 21 classes, generated otherwise."""

from __future__ import annotations

import colorsys

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_color(index: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour of a class index, as (R, G, B).

    VOC spreads the bits of the index over the three channels, most significant first, so
    neighbouring classes get distinct colours: bit 0 -> red, bit 1 -> green, bit 2 -> blue,
    then the next three bits one level lower, and so on.
    """
    red = green = blue = 0
    for level in range(8):
        shift = 7 - level
        red |= ((index >> (3 * level)) & 1) << shift
        green |= ((index >> (3 * level + 1)) & 1) << shift
        blue |= ((index >> (3 * level + 2)) & 1) << shift
    return red, green, blue


def generated_color(index: int) -> tuple[int, int, int]:
    """A colour for class `index` of a model without a palette, as (R, G, B).

    Hues step by the golden ratio so any number of classes stays distinguishable; every
    third class is darker. Class 0 is black, like VOC's background.
    """
    if index == 0:
        return 0, 0, 0
    hue = (index * 0.618033988749895) % 1.0
    value = 0.65 if index % 3 == 0 else 0.95
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def default_classes(count: int) -> list[str]:
    """Names for `count` classes: the VOC names for 21, "class N" otherwise."""
    if count == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return [f"class {index}" for index in range(count)]


def default_colors(count: int) -> list[tuple[int, int, int]]:
    """(R, G, B) colours for `count` classes: VOC's for 21, generated otherwise."""
    color = voc_color if count == len(VOC_CLASSES) else generated_color
    return [color(index) for index in range(count)]
