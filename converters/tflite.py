"""Keras -> TFLite: a table of quantization modes and a few small steps around TFLiteConverter."""

from __future__ import annotations

import contextlib
import os
import warnings

import keras
import tensorflow as tf

from converters.flatbuffer import repack
from converters.modes import IO_TYPES, OUTPUT_KINDS, QUANTIZATIONS
from runtime.console import held_stderr
from runtime.errors import EdgesegError, ParameterError
from runtime.limits import MAX_CLASSES



def _int8(converter, representative, io):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = {"uint8": tf.uint8, "int8": tf.int8, "float32": tf.float32}[io]
    # Logits stay int8 (the runtime arg-maxes the raw integers) unless float I/O was asked for.
    converter.inference_output_type = tf.float32 if io == "float32" else tf.int8


def _float16(converter, representative, io):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic(converter, representative, io):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _float32(converter, representative, io):
    pass


# quantization -> (converter set-up, I/O types it can have, needs calibration images)
MODES = {
    "int8": (_int8, IO_TYPES, True),
    "float16": (_float16, ("float32",), False),
    "dynamic": (_dynamic, ("float32",), False),
    "float32": (_float32, ("float32",), False),
}


def check_options(quantization: str, io: str | None, output_kind: str) -> str:
    """Validate the option combination; return the I/O type to use.

    Raises:
        ParameterError: an unknown value (the message lists the valid ones) or a combination
            that cannot be honoured (refused rather than silently changed).
    """
    if quantization not in MODES:
        raise ParameterError(f"unknown {{quantization}} {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}",
                             "quantization")  # fmt: skip
    if output_kind not in OUTPUT_KINDS:
        raise ParameterError(f"unknown {{output_kind}} {output_kind!r}; choose one of {', '.join(OUTPUT_KINDS)}",
                             "output_kind")  # fmt: skip
    allowed = MODES[quantization][1]
    io = io or allowed[0]
    if io not in IO_TYPES:
        raise ParameterError(f"unknown {{io}} {io!r}; choose one of {', '.join(IO_TYPES)}", "io")
    if io not in allowed:
        raise ParameterError(f"{{io}} {io} does not go with {{quantization}} {quantization}, whose input and "
                             "output stay float32; use {io} float32 or {quantization} int8", "io", "quantization")  # fmt: skip
    return io


def segmentation_output(model: keras.Model) -> None:
    """Refuse a Keras model whose output is not one 4-D (1, h, w, classes) map.

    Raises:
        EdgesegError: several inputs/outputs, a non-static or non-image input, or an output
            that is not (batch, h, w, C) with 2 <= C <= `runtime.limits.MAX_CLASSES`.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgesegError(f"model {model.name} has {len(model.inputs)} inputs and "
                           f"{len(model.outputs)} outputs; a segmentation model has one of each")  # fmt: skip
    shape = tuple(model.output.shape)
    if len(shape) != 4 or shape[-1] is None or shape[-1] < 2:
        raise EdgesegError(f"model {model.name} outputs shape {shape}, not a 4-D segmentation map "
                           "(batch, height, width, classes)")  # fmt: skip
    if shape[-1] > MAX_CLASSES:  # refused before a conversion whose label maps could not hold them
        raise EdgesegError(f"model {model.name} has {shape[-1]} classes; edgeseg supports at most {MAX_CLASSES} "
                           "(uint8 label maps, with 255 for ignored pixels)")  # fmt: skip
    if len(model.input.shape) != 4 or model.input.shape[-1] != 3:
        raise EdgesegError(f"model {model.name} takes input {tuple(model.input.shape)}, not "
                           "(batch, height, width, 3) images")  # fmt: skip


def static_batch_one(model: keras.Model, input_size: tuple[int, int]) -> keras.Model:
    """The same model on a static (1, H, W, 3) input.

    A batch of None makes dilated convolutions lower to SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND
    and leaves batch norm unfolded, all of it outside XNNPACK.
    """
    if tuple(model.input.shape) == (1, *input_size, 3):
        return model
    inputs = keras.Input((*input_size, 3), batch_size=1, name="image")
    return keras.Model(inputs, model(inputs, training=False), name=model.name)


def with_argmax(model: keras.Model) -> keras.Model:
    """The model followed by an in-graph ARG_MAX over classes: (1, h, w) int32 labels."""
    labels = ArgMax(name="labels")(model.output)
    return keras.Model(model.input, labels, name=model.name)


class ArgMax(keras.layers.Layer):
    """Class index per pixel, lowered to TFLite's ARG_MAX (keras.ops.argmax does not convert)."""

    def call(self, logits):
        return tf.math.argmax(logits, axis=-1, output_type=tf.int32)


def convert(model: keras.Model, quantization: str = "int8", io: str = "uint8", representative=None) -> bytes:
    """Convert a Keras model with the given mode.

    Args:
        model: A model with a static (1, H, W, 3) float input.
        quantization: One of `QUANTIZATIONS`.
        io: Input type (`IO_TYPES`); must suit the mode (see `check_options`).
        representative: A representative-dataset generator function (int8 only).

    Returns:
        The TFLite flatbuffer, with identical arrays stored once and a signature (`converters.flatbuffer`).
    """
    setup, _, needs_calibration = MODES[quantization]
    if needs_calibration and representative is None:
        raise ValueError(f"{quantization} conversion needs a representative dataset")
    # The inference call (training=False) at the static input, traced here and frozen by the
    # converter: the graph `from_keras_model` converts, without the SavedModel it first writes
    # and reloads, which is most of its time (12 of 15 s for a small model). The variables'
    # values are read as it converts: bias correction's, within `corrected_biases`, included.
    spec = tf.TensorSpec(model.input.shape, model.input.dtype, name=model.input.name)
    inference = tf.function(lambda image: model(image, training=False)).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([inference], model)
    converter.experimental_lower_to_saved_model = False
    setup(converter, representative, io)
    with _quiet():
        return repack(converter.convert())


@contextlib.contextmanager
def _quiet():
    # The converter prints the SavedModel it writes, MLIR pass notes and Python warnings; none of
    # it is for the user. A real failure still raises, with what was printed replayed.
    with warnings.catch_warnings(), open(os.devnull, "w") as devnull:
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(devnull), held_stderr():
            yield
