"""edgeseg's device runtime: TFLite segmentation on frames, cameras and video, without TensorFlow.

`Segmenter` runs a model on BGR frames; `runtime.video` runs it on sources and sinks;
`runtime.inspect` describes a .tflite file. Needs numpy, OpenCV and one TFLite interpreter
(`ai_edge_litert`, `tflite_runtime` or `tensorflow`); never imports TensorFlow itself.
"""

from runtime.errors import EdgesegError

__all__ = ["EdgesegError", "Segmenter", "Timing"]


def __getattr__(name: str):
    # `Segmenter` (and with it OpenCV) is imported on first use, not with the package: the
    # child process that test-loads a model (`runtime.probe`) needs only the backend.
    if name in ("Segmenter", "Timing"):
        from runtime import segmenter  # noqa: PLC0415

        return getattr(segmenter, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
