"""edgeseg's device runtime: TFLite segmentation on frames, cameras and video, without TensorFlow.

`Segmenter` runs a model on BGR frames; `runtime.video` runs it on sources and sinks;
`runtime.inspect` describes a .tflite file. Needs numpy, OpenCV and one TFLite interpreter
(`ai_edge_litert`, `tflite_runtime` or `tensorflow`); never imports TensorFlow itself.
"""

from runtime.errors import EdgesegError
from runtime.segmenter import Segmenter, Timing

__all__ = ["EdgesegError", "Segmenter", "Timing"]
