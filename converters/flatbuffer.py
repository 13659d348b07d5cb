"""Re-serialise a converted model: identical arrays stored once, and its serving signature.

Per-channel quantization gives every weight and bias tensor its own scale vector and an int64
zero-point vector (the schema's type) — zeros for int8 weights. In a DeepLabV3+ MobileNetV2
those vectors weigh about half a megabyte, a sixth of the int8 file. FlatBuffers lets tables
share one vector, so each distinct array is written once; the interpreter reads the same
numbers. Weight buffers are aligned to 16 bytes, as the converter itself does.

The converter freezes a traced function, which leaves the file without a signature; it gets the
one `TFLiteConverter.from_keras_model` writes, `serving_default` (the input by its tensor name,
the output as `output_0`), for code that calls the interpreter's `get_signature_runner()`.
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

IDENTIFIER = b"TFL3"
ALIGNMENT = 16


class _SharingBuilder(flatbuffers.Builder):
    """A Builder whose numpy vectors are written once per distinct (dtype, contents)."""

    def __init__(self, size: int):
        super().__init__(size)
        self._written: dict[tuple[str, bytes], int] = {}

    def CreateNumpyVector(self, x):  # noqa: N802 - the flatbuffers API name
        key = (x.dtype.str, x.tobytes())
        if key not in self._written:
            if x.dtype == np.uint8:
                self.Prep(ALIGNMENT, x.size)  # weight buffers: aligned start for the kernels
            self._written[key] = super().CreateNumpyVector(x)
        return self._written[key]


def repack(model: bytes) -> bytes:
    """Return `model` with identical arrays (zero points, scales, weights) stored once.

    A model without a signature (one subgraph, one input, one output) gains `serving_default`.

    Args:
        model: A TFLite flatbuffer as written by TFLiteConverter (no appended data).

    Returns:
        An equivalent, smaller flatbuffer.
    """
    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = tree.subgraphs[0]
    if not tree.signatureDefs and len(tree.subgraphs) == 1 and len(graph.inputs) == len(graph.outputs) == 1:
        signature = schema.SignatureDefT()
        signature.signatureKey, signature.subgraphIndex = "serving_default", 0
        signature.inputs = [_tensor_map(graph.tensors[graph.inputs[0]].name, graph.inputs[0])]
        signature.outputs = [_tensor_map("output_0", graph.outputs[0])]
        tree.signatureDefs = [signature]
    builder = _SharingBuilder(len(model))
    builder.Finish(tree.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def _tensor_map(name: str | bytes, index: int):
    entry = schema.TensorMapT()
    entry.name = name.decode() if isinstance(name, bytes) else name
    entry.tensorIndex = int(index)
    return entry
