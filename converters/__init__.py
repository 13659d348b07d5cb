"""Keras model -> TFLite: quantization, calibration on real images, a report that proves it.

Needs TensorFlow. `converters.convert.convert_model` is the entry point; `edgeseg convert` is
its command line.
"""
