"""`edgeseg bench` through the CLI."""

from __future__ import annotations

import json

from conftest import DEFAULT_BACKEND, assert_one_line_error
from typer.testing import CliRunner

from edgeseg.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["bench", *[str(a) for a in args]])


def test_models_side_by_side_as_json(tiny_models):
    result = invoke(tiny_models["int8"], tiny_models["float32"], "--threads", "1,2", "--runs", "3", "--warmup", "1",
                    "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(row["model"].rsplit("/", 1)[-1], row["threads"]) for row in rows] == [
        ("int8.tflite", 1), ("int8.tflite", 2), ("float32.tflite", 1), ("float32.tflite", 2)]  # fmt: skip
    for row in rows:
        assert row["backend"] == DEFAULT_BACKEND and row["frame"] == [480, 640] and row["runs"] == 3
        for key in ("pre_ms", "invoke_ms", "post_ms", "total_ms"):
            assert 0 < row[key]["p50"] <= row[key]["p95"]
        assert row["total_ms"]["p50"] >= row["invoke_ms"]["p50"]
    assert rows[0]["input"].startswith("uint8[1, 97, 129, 3]") and rows[0]["output"].startswith("int8[")
    assert rows[2]["input"].startswith("float32[")


def test_table_output(tiny_models, camvid):
    image = sorted((camvid / "val").glob("*.png"))[0]
    result = invoke(tiny_models["int8_labels"], "--runs", "2", "--warmup", "0", "--image", image,
                    "--backend", "ai_edge_litert")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "480x360 frame" in result.stdout and "int8_labels.tflite" in result.stdout
    assert "int32[1, 25, 33]" in result.stdout and "end to end" in result.stdout


def test_bad_input(tiny_models, tmp_path):
    model = tiny_models["int8"]
    assert_one_line_error(invoke(model, "--threads", "0,2"), "--threads")
    assert_one_line_error(invoke(model, "--threads", "two"), "--threads")
    assert_one_line_error(invoke(model, "--backend", "onnxruntime"), "--backend")
    assert_one_line_error(invoke(model, tmp_path / "missing.tflite"), "model file not found")
    assert_one_line_error(invoke(tiny_models["classifier"]), "not a segmentation model")
    assert_one_line_error(invoke(model, "--image", tmp_path / "none.png"), "cannot read image")
