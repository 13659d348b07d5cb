"""What is inside a .tflite file: tensors, operators and their types, delegation, metadata.

`describe(path)` returns a JSON-ready dict and `render(info)` renders it as text
(`edgeseg info MODEL.tflite`). `list_ops(interpreter)` and `summarize_ops(ops)` give the op
listing on their own, for the converter's report. TensorFlow-free: it reads the file through
the runtime's interpreter backend.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backend import check_model_file, interpreter_errors, load_interpreter
from runtime.metadata import MetadataError, read_metadata
from runtime.text import printable

DELEGATE_OP = "DELEGATE"


def _dtype_name(dtype: Any) -> str:
    return np.dtype(dtype).name


def tensor_summary(details: dict) -> dict[str, Any]:
    """One tensor from `get_input_details()`/`get_output_details()` as plain JSON values.

    Returns:
        {"name", "index", "shape": [..], "dtype": "int8", "quantization"}, where quantization
        is {"scale", "zero_point"} per tensor, {"per_channel": n, "axis": d} per channel, or
        None for a float tensor.
    """
    params = details.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []))
    zero_points = np.asarray(params.get("zero_points", []))
    if scales.size == 0:
        scale, zero_point = details.get("quantization", (0.0, 0))
        quantization = {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
    elif scales.size == 1:
        quantization = {"scale": float(scales[0]), "zero_point": int(zero_points[0])}
    else:
        quantization = {"per_channel": int(scales.size), "axis": int(params.get("quantized_dimension", 0))}
    return {
        "name": str(details["name"]),
        "index": int(details["index"]),
        "shape": [int(d) for d in details["shape"]],
        "dtype": _dtype_name(details["dtype"]),
        "quantization": quantization,
    }


def list_ops(interpreter: Any) -> list[dict[str, Any]]:
    """Every operator of the interpreter's main graph, in order, after delegation.

    Args:
        interpreter: an interpreter from `runtime.backend.load_interpreter`, tensors allocated
            (allocation is when XNNPACK takes its part of the graph).

    Returns:
        One dict per node: {"index", "op" (e.g. "CONV_2D"), "inputs"/"outputs" (operand
        dtype names, weights included), "input_names"/"output_names" (tensor names, which
        carry the Keras layer names), "delegated" (True when a DELEGATE node runs it)}.
        DELEGATE nodes themselves are listed too. An interpreter that cannot list ops gives [].
    """
    get_details = getattr(interpreter, "_get_ops_details", None)
    if get_details is None:  # a backend without the (private) op listing
        return []
    tensors = {int(t["index"]): t for t in interpreter.get_tensor_details()}
    tensor_names = {index: str(t["name"]) for index, t in tensors.items()}

    def types(node: dict, key: str, listed: str) -> list[str]:
        # tflite-runtime 2.14 lists no operand types: read them from the tensors instead.
        if listed in node:
            return [_dtype_name(t) for t in node[listed]]
        return [_dtype_name(tensors[int(i)]["dtype"]) for i in node[key] if int(i) in tensors]

    ops = []
    for node in get_details():
        ops.append(
            {
                "index": int(node["index"]),
                "op": str(node["op_name"]),
                "inputs": types(node, "inputs", "operand_types"),
                "outputs": types(node, "outputs", "result_types"),
                "input_names": [tensor_names.get(int(i), str(i)) for i in node["inputs"] if int(i) >= 0],
                "output_names": [tensor_names.get(int(i), str(i)) for i in node["outputs"]],
                "_input_tensors": [int(i) for i in node["inputs"]],
                "_output_tensors": [int(i) for i in node["outputs"]],
            }
        )
    _mark_delegated(ops)
    for op in ops:
        del op["_input_tensors"], op["_output_tensors"]
    return ops


def _mark_delegated(ops: list[dict[str, Any]]) -> None:
    # The op listing keeps the nodes a delegate replaced; which ones they are is not recorded.
    # A delegate node's inputs are its partition's inputs and its outputs the partition's
    # outputs, so walking back from the outputs until reaching those inputs finds the partition.
    producer = {t: op for op in ops if op["op"] != DELEGATE_OP for t in op["_output_tensors"]}
    for op in ops:
        op["delegated"] = False
    for delegate in (op for op in ops if op["op"] == DELEGATE_OP):
        boundary = set(delegate["_input_tensors"])
        pending = list(delegate["_output_tensors"])
        seen: set[int] = set()
        while pending:
            tensor = pending.pop()
            if tensor in boundary or tensor in seen or tensor not in producer:
                continue
            seen.add(tensor)
            node = producer[tensor]
            node["delegated"] = True
            pending.extend(node["_input_tensors"])


def summarize_ops(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Count operators by type and operand dtypes (DELEGATE nodes left out).

    Returns:
        [{"op", "inputs", "outputs", "count"}], most frequent first; e.g.
        {"op": "CONV_2D", "inputs": ["int8", "int8", "int32"], "outputs": ["int8"], "count": 35}.
    """
    counts = Counter(
        (op["op"], tuple(op["inputs"]), tuple(op["outputs"])) for op in ops if op["op"] != DELEGATE_OP
    )
    return [
        {"op": name, "inputs": list(inputs), "outputs": list(outputs), "count": count}
        for (name, inputs, outputs), count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def describe(path: str | Path, backend: str | None = None) -> dict[str, Any]:
    """Describe a .tflite model file.

    Args:
        path: the .tflite file.
        backend: force an interpreter backend (see `runtime.backend.BACKENDS`).

    Returns:
        {"path", "size_bytes", "backend", "inputs", "outputs" (see `tensor_summary`),
        "ops" (`summarize_ops`), "delegation": {"delegate_nodes", "outside": [ops not run
        by XNNPACK, with "index", "op", "inputs", "outputs", "output_names"]}, "metadata"
        (the embedded edgeseg metadata, or None), "metadata_error" (why the metadata was
        refused, or None)}.

    Raises:
        EdgesegError: a missing file, one that is not a TFLite model, or one the interpreter
            cannot load (damaged metadata is reported in "metadata_error" instead).
    """
    path = check_model_file(path)
    try:
        metadata, metadata_error = read_metadata(path), None
    except MetadataError as error:
        metadata, metadata_error = None, str(error)
    interpreter, backend_name = load_interpreter(path, num_threads=1, backend=backend)
    with interpreter_errors(path, "allocating its tensors"):
        interpreter.allocate_tensors()
    with interpreter_errors(path, "listing its tensors and ops"):
        ops = list_ops(interpreter)
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    outside = [
        {key: op[key] for key in ("index", "op", "inputs", "outputs", "output_names")}
        for op in ops
        if op["op"] != DELEGATE_OP and not op["delegated"]
    ]
    return {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "backend": backend_name,
        "inputs": [tensor_summary(d) for d in inputs],
        "outputs": [tensor_summary(d) for d in outputs],
        "ops": summarize_ops(ops),
        "delegation": {
            "delegate_nodes": sum(op["op"] == DELEGATE_OP for op in ops),
            "outside": outside,
        },
        "metadata": metadata,
        "metadata_error": metadata_error,
    }


def _format_tensor(tensor: dict[str, Any]) -> str:
    text = f"{printable(tensor['name'])}: {tensor['dtype']}{tensor['shape']}"
    quantization = tensor["quantization"]
    if quantization and "scale" in quantization:
        text += f" scale={quantization['scale']:.6g} zero_point={quantization['zero_point']}"
    elif quantization:
        text += f" per-channel ({quantization['per_channel']} scales, axis {quantization['axis']})"
    return text


def format_ops(summary: list[dict[str, Any]]) -> list[str]:
    """Lines of an op summary (`summarize_ops`): "  35 x CONV_2D  (int8, int8, int32) -> (int8)"."""
    return [
        f"{op['count']:4d} x {printable(op['op']):<24} ({', '.join(op['inputs'])}) -> ({', '.join(op['outputs'])})"
        for op in summary
    ]


def render(info: dict[str, Any]) -> str:
    """Render `describe(path)` as plain text for a terminal."""
    size = info["size_bytes"]
    size_text = f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
    lines = [f"{printable(info['path'])} ({size_text}, read with {info['backend']})"]
    lines += ["inputs:"] + [f"  {_format_tensor(t)}" for t in info["inputs"]]
    lines += ["outputs:"] + [f"  {_format_tensor(t)}" for t in info["outputs"]]
    lines += ["ops:"] + [f"  {line}" for line in format_ops(info["ops"])]
    delegation = info["delegation"]
    outside = delegation["outside"]
    lines.append(
        f"XNNPACK: {delegation['delegate_nodes']} delegate node(s); "
        + ("every op delegated" if not outside else f"{len(outside)} op(s) outside:")
    )
    lines += [f"  {printable(op['op'])} -> {', '.join(printable(name) for name in op['output_names'])}"
              for op in outside]  # fmt: skip
    metadata = info["metadata"]
    if info.get("metadata_error"):
        lines.append(f"metadata: refused — {printable(info['metadata_error'], limit=500)}")
    elif metadata is None:
        lines.append("metadata: none (settings are inferred from the tensors)")
    else:
        lines.append("metadata:")
        lines += [f"  {printable(key)}: {_format_value(key, value)}" for key, value in metadata.items()]
    return "\n".join(lines)


def _format_value(key: str, value: Any) -> str:
    """One metadata value on one line; strings from the file are escaped (`printable`)."""
    if key == "colors" and isinstance(value, list):
        return f"{len(value)} colours"
    if key == "classes" and isinstance(value, list):
        return ", ".join(printable(name, limit=64) for name in value)
    if isinstance(value, dict):
        return ", ".join(f"{printable(k)}={printable(v, limit=64)}" for k, v in value.items())
    return printable(value, limit=500)
