"""edgeseg's device runtime: TFLite segmentation without TensorFlow."""
