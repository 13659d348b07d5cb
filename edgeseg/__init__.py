"""edgeseg: DeepLabV3+ on MobileNetV2, from training to int8 TFLite on edge devices.

Importing this package does not import TensorFlow; the modules that need it do so themselves.
"""

__version__ = "0.1.0"
