"""Google's quantized DeepLabV3 MobileNetV2 (a uint8 TFLite file) -> an edgeseg weight file.

Google's Pascal VOC models are TF-slim graphs converted with batch norm folded: every
convolution carries uint8 weights with one scale and zero point, and an int32 bias. Each
convolution is found by its position in the graph and mapped by the TF-slim scope of its
weights to our Keras layer (`MobilenetV2/expanded_conv_3/expand` -> `block_3_expand`, its
bias -> `block_3_expand_BN`'s beta), checked against the layer's shape, stride and dilation.
The integers are kept as they are (a compact file; `edgeseg.pretrained.read_weights`
dequantizes them), only transposed to Keras's layout. One re-ordering: TF DeepLab
concatenates the ASPP branches as [image pooling, 1x1], we as [1x1, ..., image pooling]
(`edgeseg.model.aspp`), so the projection's input channels are permuted to match.

Needs TensorFlow (its flatbuffer schema, and Keras to check the mapping).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.pretrained import Pretrained
from runtime.atomic import write_bytes
from runtime.errors import EdgesegError

CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")
# TF-slim scopes of the graph's convolutions -> (our convolution layer, the layer holding its bias).
FIXED_SCOPES = {
    "MobilenetV2/Conv": ("Conv1", "bn_Conv1"),
    "aspp0": ("aspp_conv_0_conv", "aspp_conv_0_bn"),
    "image_pooling": ("aspp_pool_conv", "aspp_pool_bn"),
    "concat_projection": ("aspp_projection_conv", "aspp_projection_bn"),
    "logits/semantic": ("segmentation_head_conv", "segmentation_head_conv"),
}
BLOCK_SCOPE = re.compile(r"MobilenetV2/expanded_conv(?:_(\d+))?/(expand|depthwise|project)")
# Our ASPP concatenation order (edgeseg.model.aspp: the 1x1 branch first, image pooling last).
KERAS_CONCAT_ORDER = ("aspp0", "image_pooling")
PROJECTION = "concat_projection"
# A zip member's timestamp: fixed, so the same import writes the same bytes.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class QuantizedTensor:
    """A constant tensor of the TFLite file: its integers and per-tensor quantization."""

    values: np.ndarray
    scale: float
    zero_point: int


@dataclass
class Convolution:
    """One CONV_2D / DEPTHWISE_CONV_2D of the graph, in graph order."""

    scope: str
    kind: str
    weights: QuantizedTensor  # TFLite layout: (out, kh, kw, in) or (1, kh, kw, channels)
    bias: QuantizedTensor
    stride: int
    dilation: int
    output: int  # index of its output tensor


def keras_layers(scope: str) -> tuple[str, str]:
    """Our (convolution layer, bias layer) names for a TF-slim convolution scope.

    Raises:
        EdgesegError: a scope that is not part of the DeepLabV3 MobileNetV2 graph.
    """
    if scope in FIXED_SCOPES:
        return FIXED_SCOPES[scope]
    match = BLOCK_SCOPE.fullmatch(scope)
    if not match:
        raise EdgesegError(f"unexpected convolution {scope!r}: not a DeepLabV3 MobileNetV2 layer")
    block, part = match.groups()
    prefix = f"block_{block}_" if block else "expanded_conv_"
    return f"{prefix}{part}", f"{prefix}{part}_BN"


def read_graph(path: Path) -> tuple[list[Convolution], list[str]]:
    """The convolutions of a quantized DeepLab TFLite file and its ASPP concatenation order.

    Returns:
        (convolutions in graph order, the scopes of the branches feeding the concatenation
        before the ASPP projection, in its order).

    Raises:
        EdgesegError: a file that is not such a model (float weights, per-channel
            quantization, no ASPP concatenation).
    """
    from tensorflow.lite.python import schema_py_generated as schema  # noqa: PLC0415

    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    codes = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    graph = model.subgraphs[0]
    producers: dict[int, tuple[str, object]] = {}
    convolutions: list[Convolution] = []
    concat_inputs: list[int] = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = codes[max(code.builtinCode, code.deprecatedBuiltinCode)]
        producers[int(op.outputs[0])] = (kind, op)
        if kind == "CONCATENATION":
            concat_inputs = [int(i) for i in op.inputs]
        if kind not in CONVOLUTIONS:
            continue
        weights = _constant(model, graph, op.inputs[1])
        options = op.builtinOptions
        convolutions.append(Convolution(
            scope=_scope(graph.tensors[op.inputs[1]].name.decode()), kind=kind, weights=weights,
            bias=_constant(model, graph, op.inputs[2]), stride=int(options.strideH),
            dilation=int(options.dilationHFactor), output=int(op.outputs[0]),
        ))  # fmt: skip
    if not concat_inputs:
        raise EdgesegError(f"{path} has no ASPP concatenation: not a DeepLabV3 model")
    scope_of = {conv.output: conv.scope for conv in convolutions}
    order = []
    for tensor in concat_inputs:
        # Walk back through resizes and requantization to the convolution that made the branch.
        while tensor not in scope_of:
            tensor = int(producers[tensor][1].inputs[0])
        order.append(scope_of[tensor])
    return convolutions, order


def _scope(weights_name: str) -> str:
    # "MobilenetV2/Conv/Conv2D_Fold;MobilenetV2/Conv/weights_quant/FakeQuantWithMinMaxVars" -> "MobilenetV2/Conv"
    for part in weights_name.split(";"):
        if "/weights_quant" in part:
            return part.split("/weights_quant")[0]
    raise EdgesegError(f"weights tensor {weights_name!r} has no TF-slim weights_quant scope")


def _constant(model, graph, index: int) -> QuantizedTensor:
    tensor = graph.tensors[index]
    quantization = tensor.quantization
    if quantization is None or quantization.scale is None or len(quantization.scale) != 1:
        raise EdgesegError(f"tensor {tensor.name.decode()} is not quantized per tensor")
    dtype = {2: np.int32, 3: np.uint8}.get(int(tensor.type))  # schema TensorType: INT32, UINT8
    if dtype is None:
        raise EdgesegError(f"tensor {tensor.name.decode()} is neither uint8 weights nor an int32 bias")
    values = np.frombuffer(bytes(bytearray(model.buffers[tensor.buffer].data)), dtype=dtype)
    return QuantizedTensor(values.reshape(tensor.shape), float(quantization.scale[0]),
                           int(quantization.zeroPoint[0]))  # fmt: skip


def convert_weights(convolutions: list[Convolution], concat_order: list[str], model) -> dict[str, np.ndarray]:
    """Map the graph's convolutions onto `model`'s layers.

    Args:
        convolutions: From `read_graph`.
        concat_order: The graph's ASPP concatenation order, from `read_graph`.
        model: The DeepLab model the weights are for (its shapes, strides and dilations are
            checked; its weights are not changed).

    Returns:
        "{layer}.{variable}" -> integers in the Keras layout, with "{key}.scale" (float32)
        and "{key}.zero_point" (int32) beside every one, in graph order.

    Raises:
        EdgesegError: a convolution that has no layer in `model`, or does not fit it, or a
            model layer left without weights.
    """
    arrays: dict[str, np.ndarray] = {}
    widths = {conv.scope: conv.weights.values.shape[0] for conv in convolutions}
    model_convolutions = [layer.name for layer in model.layers if hasattr(layer, "kernel")]
    mapped = []
    for conv in convolutions:
        layer_name, bias_layer = keras_layers(conv.scope)
        layer = _layer(model, layer_name, conv.scope)
        # TFLite (out, kh, kw, in) and (1, kh, kw, channels) -> Keras (kh, kw, in, out) and (kh, kw, channels, 1).
        kernel = np.transpose(conv.weights.values, (1, 2, 3, 0))
        if conv.scope == PROJECTION:
            kernel = kernel[:, :, _concat_permutation(concat_order, widths)]
        strides, rate = getattr(layer, "strides", (1, 1)), getattr(layer, "dilation_rate", (1, 1))
        if kernel.shape != tuple(layer.kernel.shape) or (strides[0], rate[0]) != (conv.stride, conv.dilation):
            raise EdgesegError(f"{conv.scope} (weights {kernel.shape}, stride {conv.stride}, dilation "
                               f"{conv.dilation}) does not fit layer {layer_name} ({tuple(layer.kernel.shape)}, "
                               f"stride {strides[0]}, dilation {rate[0]})")  # fmt: skip
        _put(arrays, f"{layer_name}.kernel", kernel, conv.weights)
        bias_variable = "bias" if bias_layer == layer_name else "beta"
        _layer(model, bias_layer, conv.scope)
        _put(arrays, f"{bias_layer}.{bias_variable}", conv.bias.values, conv.bias)
        mapped.append(layer_name)
    if sorted(mapped) != sorted(model_convolutions):
        missing = sorted(set(model_convolutions) - set(mapped))
        twice = sorted({name for name in mapped if mapped.count(name) > 1})
        raise EdgesegError(f"the graph's convolutions do not cover the model's once each: missing "
                           f"{missing[:3]}, mapped twice {twice[:3]}")  # fmt: skip
    return arrays


def _layer(model, name: str, scope: str):
    try:
        return model.get_layer(name)
    except ValueError:
        raise EdgesegError(f"{scope} maps to layer {name}, which the model does not have") from None


def _concat_permutation(graph_order: list[str], widths: dict[str, int]) -> np.ndarray:
    """Input-channel indices that re-order the graph's concatenation into ours."""
    if sorted(graph_order) != sorted(KERAS_CONCAT_ORDER):
        raise EdgesegError(f"ASPP concatenates {graph_order}; expected {list(KERAS_CONCAT_ORDER)} in some order")
    starts = dict(zip(graph_order, np.cumsum([0] + [widths[s] for s in graph_order])))
    return np.concatenate([np.arange(starts[s], starts[s] + widths[s]) for s in KERAS_CONCAT_ORDER])


def _put(arrays: dict, key: str, values: np.ndarray, tensor: QuantizedTensor) -> None:
    arrays[key] = np.ascontiguousarray(values)
    arrays[f"{key}.scale"] = np.float32(tensor.scale)
    arrays[f"{key}.zero_point"] = np.int32(tensor.zero_point)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` as a compressed `.npz`, atomically, byte for byte the same every time."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue(), compresslevel=9)
    write_bytes(path, buffer.getvalue())


def import_google_deeplab(source: str | Path, entry: Pretrained, out: str | Path) -> dict:
    """Read Google's TFLite model `source` and write the weight file of `entry` to `out`.

    Args:
        source: A quantized DeepLabV3 MobileNetV2 `.tflite` file (uint8, per-tensor).
        entry: The catalog entry the weights are for (its model is built to check them).
        out: The `.npz` file to write.

    Returns:
        {"layers": number of layers with weights, "parameters", "bytes": size of `out`}.

    Raises:
        EdgesegError: a file that does not fit the entry's model.
    """
    from edgeseg.model import build_model  # noqa: PLC0415 - needs TensorFlow

    source = Path(source)
    if not source.is_file():
        raise EdgesegError(f"{source} does not exist")
    model = build_model(entry.config(input_size=(65, 65)))  # shapes do not depend on the input size
    arrays = convert_weights(*read_graph(source), model)
    write_npz(Path(out), arrays)
    values = [a for key, a in arrays.items() if key.count(".") == 1]
    return {"layers": len({key.split(".")[0] for key in arrays}), "parameters": int(sum(a.size for a in values)),
            "bytes": Path(out).stat().st_size}  # fmt: skip
