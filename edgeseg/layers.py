"""Custom Keras layers of the DeepLab head, each written so that TFLite runs it in int8.

Every layer has a `get_config` that rebuilds it, and is registered for `.keras` loading.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="edgeseg")
class StaticResize(keras.layers.Layer):
    """Bilinear resize of NHWC features to a fixed size, lowered to one RESIZE_BILINEAR.

    When the sizes line up on DeepLab's corner-aligned grid ((out - 1) = k * (in - 1), as for
    513x513 inputs) corners are aligned; otherwise pixel centres are (the Keras convention).
    Static sizes keep the resize inside XNNPACK; a shape computed at run time would not.

    Args:
        size: Target (height, width).
    """

    def __init__(self, size: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(v) for v in size)

    def call(self, inputs):
        align = all(
            src > 1 and (dst - 1) % (src - 1) == 0
            for src, dst in zip(inputs.shape[1:3], self.size)
        )
        return tf.raw_ops.ResizeBilinear(
            images=inputs, size=self.size, align_corners=align, half_pixel_centers=not align
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": list(self.size)}
