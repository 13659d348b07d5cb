"""edgeseg: DeepLabV3+ on MobileNetV2, from training to int8 TFLite on edge devices.

The Python API does what the `edgeseg` command does::

    import edgeseg

    model = edgeseg.build_model("deeplabv3plus_mnv2", num_classes=11, backbone_weights="imagenet")
    result = edgeseg.train(model, "train", "trainannot", "runs/camvid", classes="classes.txt")
    edgeseg.convert(result.best_model, "model.tflite")
    edgeseg.evaluate(["runs/camvid/best.keras", "model.tflite"], "val", "valannot")

and `runtime.Segmenter("model.tflite")` runs the result on frames. The names below load on
first use, so `import edgeseg` stays cheap and never imports TensorFlow; the ones that need
it import it then (or say which extra installs it).
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# Where each public name lives; the modules of the second group import TensorFlow.
_MODULES = {
    "edgeseg.config": ("ModelConfig",),
    "edgeseg.presets": ("PRESETS", "get_config"),
    "edgeseg.training": ("train", "TrainResult"),
    "edgeseg.evaluation": ("evaluate", "Evaluation"),
    "runtime.errors": ("EdgesegError", "ParameterError"),
}
_TENSORFLOW_MODULES = {
    "edgeseg.model": ("build_model", "load_model", "save_model"),
    "converters.convert": ("convert",),
}
_HOME = {name: module for table in (_MODULES, _TENSORFLOW_MODULES) for module, names in table.items() for name in names}
__all__ = ["__version__", "require_tensorflow", *_HOME]


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
    module = _HOME[name]
    if module in _TENSORFLOW_MODULES:
        require_tensorflow()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def require_tensorflow():
    """Import TensorFlow quietly, or say which extra installs it.

    TensorFlow's C++ start-up chatter (CPU features, oneDNN, CUDA probing) is not for users;
    some of it is printed before its log level is read, so the import runs with stderr held.

    Returns:
        The `tensorflow` module.

    Raises:
        EdgesegError: TensorFlow is not installed.
    """
    from runtime.console import held_stderr  # noqa: PLC0415 - keeps `import edgeseg` light
    from runtime.errors import EdgesegError  # noqa: PLC0415

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with held_stderr():
            import tensorflow as tf  # noqa: PLC0415 - deliberately lazy
    except ImportError:
        raise EdgesegError(
            "building, training and converting models need TensorFlow, which is not installed; "
            "install it with: pip install 'edgeseg[train]'"
        ) from None
    return tf
