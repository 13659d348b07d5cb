"""Keras model -> TFLite: quantization, calibration on real images, a report that proves it.

Needs TensorFlow (but `converters.modes`, the choices). `converters.convert.convert` is the entry
point (`edgeseg.convert` in the Python API); `edgeseg convert` is its command line.
"""
