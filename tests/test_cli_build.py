"""`edgeseg build` and `edgeseg info` for .keras models, as a user types them."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from edgeseg.cli import app

pytest.importorskip("tensorflow")
runner = CliRunner()


def _lines(result):
    return [line for line in result.output.splitlines() if line.strip()]


def test_build_then_info_json(tmp_path):
    out = tmp_path / "m.keras"
    result = runner.invoke(app, ["build", "--preset", "deeplabv3plus_mnv2", "--classes", "7",
                                 "--input-size", "97x129", "--alpha", "0.35", "--output-stride", "8",
                                 "--aspp-rates", "12,24,36", "--backbone-weights", "none", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    result = runner.invoke(app, ["info", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["params"] > 0 and info["madds"] > 0
    assert info["output_shape"] == [1, 25, 33, 7]
    assert info["config"]["aspp_rates"] == [12, 24, 36]
    assert info["config"]["backbone_output_stride"] == 8
    assert info["taps"]["low_level"]["layer"] == "block_2_depthwise_relu"


def test_build_no_decoder_text_summary(tmp_path):
    out = tmp_path / "v3.keras"
    result = runner.invoke(app, ["build", "--preset", "deeplabv3plus_mnv2", "--no-decoder", "--aspp-rates", "none",
                                 "--input-size", "64", "--alpha", "0.5", "--backbone-weights", "none",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "stride 16" in result.output
    text = runner.invoke(app, ["info", str(out)]).output
    assert "decoder                      False" in text and "multiply-adds" in text


@pytest.mark.parametrize(("args", "fragment"), [
    (["--preset", "deeplab_resnet"], "deeplabv3plus_mnv2, deeplabv3_mnv2, deeplabv3plus_mnv2_shortcut"),
    (["--alpha", "0.6"], "unsupported alpha 0.6"),
    (["--output-stride", "4"], "choose 8, 16 or 32"),
    (["--input-size", "24x64"], "too small for output stride 16"),
    (["--input-size", "big"], "not HEIGHTxWIDTH"),
    (["--classes", "1"], "at least 2"),
    (["--backbone-weights", "missing.weights.h5"], "does not exist"),
    (["--aspp-rates", "6;12"], "comma-separated"),
])
def test_bad_build_options_give_one_line_and_exit_1(tmp_path, args, fragment):
    out = tmp_path / "m.keras"
    result = runner.invoke(app, ["build", *args, "--out", str(out)])
    assert result.exit_code == 1
    lines = _lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.output
    assert not out.exists()


def test_weights_file_that_does_not_fit(tmp_path):
    import keras

    small = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    weights = tmp_path / "small.weights.h5"
    small.save_weights(weights)
    result = runner.invoke(app, ["build", "--backbone-weights", str(weights), "--input-size", "64",
                                 "--out", str(tmp_path / "m.keras")])
    assert result.exit_code == 1 and "does not fit" in result.output
    assert len(_lines(result)) == 1


def test_unwritable_output_folder(tmp_path):
    result = runner.invoke(app, ["build", "--backbone-weights", "none", "--out", str(tmp_path / "no" / "m.keras")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_info_on_a_file_that_is_not_a_model(tmp_path):
    bogus = tmp_path / "bogus.keras"
    bogus.write_text("not a zip")
    result = runner.invoke(app, ["info", str(bogus)])
    assert result.exit_code == 1 and "cannot load" in result.output
    result = runner.invoke(app, ["info", str(tmp_path / "absent.keras")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_help_lists_every_command_in_one_line_each():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "info"):
        assert any(line.strip(" │").startswith(command + " ") for line in result.output.splitlines())


def test_cli_module_does_not_import_tensorflow():
    code = "import sys, edgeseg.cli; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_python_dash_m_edgeseg_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "edgeseg", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "build" in result.stdout


def test_camera_flag_without_a_value_means_camera_0():
    from edgeseg.cli import default_camera

    assert default_camera(["run", "m.tflite", "--camera"]) == ["run", "m.tflite", "--camera", "0"]
    assert default_camera(["run", "m.tflite", "--camera", "--no-display"])[3] == "0"
    assert default_camera(["run", "m.tflite", "--camera", "picamera2"]) == ["run", "m.tflite", "--camera", "picamera2"]
    assert default_camera(["run", "m.tflite", "--video", "a.mp4"]) == ["run", "m.tflite", "--video", "a.mp4"]
