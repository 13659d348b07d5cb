"""What `edgeseg build` and `edgeseg info` say about a Keras model."""

from __future__ import annotations

import keras

from edgeseg.model import config_of, multiply_adds


def summarize(model: keras.Model) -> dict:
    """Parameters, multiply-adds at the model's input size, shapes, taps and config.

    Returns:
        A JSON-serialisable dict with at least `params` and `madds`.
    """
    config = config_of(model)
    summary = {
        "name": model.name,
        "params": int(model.count_params()),
        "trainable_params": int(sum(keras.ops.size(w) for w in model.trainable_weights)),
        "madds": multiply_adds(model),
        "input_shape": list(model.input.shape),
        "output_shape": list(model.output.shape),
    }
    if config is not None:
        summary["output_stride"] = config.output_stride
        taps = {"high_level": config.backbone_tap}
        if config.decoder:
            taps["low_level"] = config.decoder_tap
        summary["taps"] = {
            role: {"layer": name, "shape": list(model.get_layer(name).output.shape)}
            for role, name in taps.items()
        }
        summary["config"] = config.to_dict()
    return summary


def render(summary: dict) -> str:
    """Human-readable text of `summarize`'s result."""
    lines = [
        f"model            {summary['name']}",
        f"parameters       {summary['params']:,} ({summary['trainable_params']:,} trainable)",
        f"multiply-adds    {summary['madds'] / 1e9:.3f} G at input {_shape(summary['input_shape'])}",
        f"output           {_shape(summary['output_shape'])}"
        + (f" (stride {summary['output_stride']})" if "output_stride" in summary else ""),
    ]
    for role, tap in summary.get("taps", {}).items():
        lines.append(f"tap {role:<12} {tap['layer']} {_shape(tap['shape'])}")
    if "config" in summary:
        lines.append("config")
        lines += [f"  {key:<28} {value}" for key, value in summary["config"].items()]
    return "\n".join(lines)


def _shape(shape: list) -> str:
    return "x".join("?" if v is None else str(v) for v in shape)
