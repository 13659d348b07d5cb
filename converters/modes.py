"""The conversion choices, the one list of each (no TensorFlow: the CLI's help is made from them)."""

QUANTIZATIONS = ("int8", "float16", "dynamic", "float32")
IO_TYPES = ("uint8", "int8", "float32")
OUTPUT_KINDS = ("logits", "labels")
