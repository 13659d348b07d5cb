"""Pretrained `pascalvoc` weights: imported exactly, faithful to Google's model, shipped, usable."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPO, assert_one_line_error
from edgeseg import pretrained
from edgeseg.cli import app
from runtime.errors import EdgesegError

tf = pytest.importorskip("tensorflow")

from edgeseg.layers import StaticResize  # noqa: E402
from edgeseg.model import build_model, load_model, save_model  # noqa: E402
from edgeseg.presets import get_config  # noqa: E402
from runtime import Segmenter  # noqa: E402
from runtime.processing import prepare_input, resize_labels  # noqa: E402

GOOGLE = REPO.parent / "shared" / "models" / "google-deeplab"
needs_google = pytest.mark.skipif(not GOOGLE.is_dir(), reason="../shared/models/google-deeplab is absent")
TINY = (97, 129)
runner = CliRunner()


def _entry(alpha: float) -> pretrained.Pretrained:
    return pretrained.find("pascalvoc", alpha)


# === The importer ===


@needs_google
def test_reimport_writes_exactly_the_committed_files(tmp_path):
    from edgeseg.pretrained.importer import import_google_deeplab

    for entry in pretrained.CATALOG:
        out = tmp_path / entry.file
        summary = import_google_deeplab(GOOGLE / entry.source, entry, out)
        assert out.read_bytes() == entry.path.read_bytes(), f"{entry.file} differs from a fresh import"
        assert summary["parameters"] > 0.6e6


@needs_google
@pytest.mark.slow
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_imported_float_model_agrees_with_googles_tflite_model(alpha):
    """On the 513x513 calibration photos, >= 97% of pixels get Google's label, for both widths.

    Google's graph resizes its logits to 513x513 (bilinear, corners aligned) and arg-maxes them;
    our float model with `head_upsample` does the same, so the comparison isolates the weights.
    The runtime's way (arg-max at stride 16, nearest-neighbour labels) must agree as well.
    """
    entry = _entry(alpha)
    google = Segmenter(GOOGLE / entry.source, num_threads=2)
    model = build_model(entry.config(), weights="pascalvoc")
    upsample = StaticResize((513, 513))  # what `head_upsample` adds: corner-aligned, as Google's graph
    upsampled_agreement, runtime_agreement = [], []
    for path in sorted((REPO / "calibration_data").glob("*.jpg")):
        frame = cv2.resize(cv2.imread(str(path)), (513, 513), interpolation=cv2.INTER_LINEAR)
        theirs = google.segment(frame)
        logits = model.predict_on_batch(prepare_input(frame, (513, 513)))
        ours = np.argmax(upsample(logits)[0], axis=-1)
        coarse = np.argmax(logits[0], axis=-1).astype(np.uint8)
        upsampled_agreement.append(np.mean(ours == theirs))
        runtime_agreement.append(np.mean(resize_labels(coarse, (513, 513)) == theirs))
    assert len(upsampled_agreement) == 88
    assert np.mean(upsampled_agreement) >= 0.97, np.mean(upsampled_agreement)
    assert np.mean(runtime_agreement) >= 0.97, np.mean(runtime_agreement)


# === What ships ===


def test_shipped_weights_are_compact_and_carry_their_licence():
    assert pretrained.names() == ["pascalvoc"]
    assert {(e.preset, e.alpha) for e in pretrained.CATALOG} == {("deeplabv3_mnv2", 1.0), ("deeplabv3_mnv2", 0.5)}
    for entry in pretrained.CATALOG:
        assert 0.3e6 < entry.path.stat().st_size <= 5e6
        with np.load(entry.path) as data:
            kernels = [data[key] for key in data.files if key.endswith(".kernel")]
        assert kernels and all(kernel.dtype == np.uint8 for kernel in kernels)
        assert len(entry.classes) == len(entry.colors) == 21
        assert entry.classes[8] == "cat" and entry.classes[15] == "person" and entry.colors[15] == (192, 128, 128)
    licence = (pretrained.FOLDER / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    assert "Changes made by edgeseg" in (pretrained.FOLDER / "README.md").read_text()


def test_info_and_help_list_the_pretrained_weights():
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["pretrained"]
    assert [(row["weights"], row["preset"], row["alpha"]) for row in rows] == [
        ("pascalvoc", "deeplabv3_mnv2", 1.0), ("pascalvoc", "deeplabv3_mnv2", 0.5)]
    assert all(row["size_bytes"] > 0 for row in rows)
    text = runner.invoke(app, ["info"]).output
    assert "pascalvoc" in text and "deeplabv3_mnv2" in text and "alpha 0.5" in text
    for command in ("build", "convert", "train"):
        help_text = " ".join(runner.invoke(app, [command, "--help"]).output.split())
        assert "--weights" in help_text and "pascalvoc" in help_text, command


# === Building with them ===


def test_build_model_loads_every_layer_and_folds_batch_norm_into_an_identity(tmp_path):
    model = build_model("deeplabv3_mnv2", weights="pascalvoc", backbone_alpha=0.5, input_size=TINY)
    assert model.config.backbone_channel_divisor == 1 and model.output.shape[-1] == 21
    assert model.get_layer("block_1_project").kernel.shape[-1] == 12  # TF DeepLab's width, not Keras's 16
    weights = pretrained.read_weights(_entry(0.5).path)
    np.testing.assert_array_equal(model.get_layer("block_5_expand").kernel.numpy(), weights["block_5_expand"]["kernel"])
    np.testing.assert_array_equal(model.get_layer("segmentation_head_conv").bias.numpy(),
                                  weights["segmentation_head_conv"]["bias"])  # fmt: skip
    bn = model.get_layer("block_5_expand_BN")
    np.testing.assert_array_equal(bn.beta.numpy(), weights["block_5_expand_BN"]["beta"])
    x = np.random.default_rng(0).normal(size=(1, 8, 8, bn.beta.shape[0])).astype(np.float32)
    np.testing.assert_allclose(bn(x, training=False), x + bn.beta.numpy(), rtol=1e-5, atol=1e-5)
    # Input-size-independent: the same weights fit the model at 513x513 and at 97x129.
    assert model.labels["classes"][15] == "person"
    save_model(model, tmp_path / "m.keras")
    assert load_model(tmp_path / "m.keras").labels == model.labels


@pytest.mark.parametrize(("call", "fragment"), [
    (lambda: build_model("deeplabv3plus_mnv2", weights="pascalvoc"), "aspp_rates, decoder differ"),
    (lambda: build_model("deeplabv3_mnv2", weights="pascalvoc", num_classes=5), "num_classes differs"),
    (lambda: build_model("deeplabv3_mnv2", weights="pascalvoc", backbone_alpha=0.75), "do not exist at alpha 0.75"),
    (lambda: build_model("deeplabv3_mnv2", weights="imagenet"), "unknown pretrained weights 'imagenet'"),
    (lambda: build_model(get_config("deeplabv3_mnv2", backbone_alpha=0.5), weights="pascalvoc"),
     "backbone_channel_divisor differs"),
])  # fmt: skip
def test_weights_that_do_not_fit_name_the_combinations_that_exist(call, fragment):
    with pytest.raises(EdgesegError) as error:
        call()
    assert fragment in str(error.value)
    assert "deeplabv3_mnv2 at alpha 1.0 or 0.5, 21 classes" in str(error.value)


def test_weights_and_backbone_weights_together_are_refused():
    with pytest.raises(EdgesegError, match="weights pascalvoc loads the whole model, backbone included; drop backbone_weights"):
        build_model("deeplabv3_mnv2", backbone_weights="imagenet", weights="pascalvoc")


def test_cli_build_saves_a_model_that_carries_the_voc_classes(tmp_path):
    keras_path = tmp_path / "voc.keras"
    result = runner.invoke(app, ["build", "--weights", "pascalvoc", "--alpha", "0.5", "--input-size", "97x129",
                                 "--out", str(keras_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "deeplabv3_mnv2 with pascalvoc weights" in result.output
    model = load_model(keras_path)
    assert model.config.preset == "deeplabv3_mnv2" and model.config.backbone_channel_divisor == 1
    assert model.labels == _entry(0.5).labels()  # what `edgeseg convert` embeds (tested in test_default_model.py)


@pytest.mark.parametrize(("args", "fragment"), [
    (["build", "--weights", "pascalvoc", "--classes", "5"], "num_classes differs"),
    (["build", "--preset", "deeplabv3plus_mnv2", "--weights", "pascalvoc"], "not for deeplabv3plus_mnv2"),
    (["build", "--weights", "pascalvoc", "--alpha", "0.35"], "do not exist at alpha 0.35"),
    (["build", "--weights", "pascalvoc", "--backbone-weights", "none"], "drop --backbone-weights"),
    (["convert", "--classes", "5"], "give --preset NAME for an untrained design"),
    (["convert", "--weights", "voc2012"], "unknown pretrained weights 'voc2012'; available: pascalvoc"),
])  # fmt: skip
def test_cli_weights_that_do_not_fit_give_one_line(tmp_path, args, fragment):
    out = tmp_path / ("m.keras" if args[0] == "build" else "m.tflite")
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert_one_line_error(result, fragment)
    assert not out.exists()


# === Fine-tuning ===


def test_fine_tune_model_starts_from_pascal_backbone_and_aspp_with_a_new_head():
    config = pretrained.fine_tune_config("pascalvoc", get_config(num_classes=3, backbone_alpha=0.5, input_size=TINY))
    assert config.preset == "deeplabv3plus_mnv2" and config.backbone_channel_divisor == 1
    model = pretrained.fine_tune_model("pascalvoc", config)
    weights = pretrained.read_weights(_entry(0.5).path)
    for name in ("Conv1", "block_1_project", "block_16_project", "aspp_conv_0_conv", "aspp_pool_conv"):
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(), weights[name]["kernel"])
    loaded = set(pretrained.load_pretrained(model, "pascalvoc", fine_tune=True))
    backbone = {layer.name for layer in model.layers if layer.weights and not layer.name.startswith(("aspp", "decoder", "segmentation"))}
    assert backbone and backbone <= loaded
    assert {"aspp_conv_0_conv", "aspp_conv_0_bn", "aspp_pool_conv", "aspp_pool_bn"} <= loaded
    # DeepLabV3+ concatenates five ASPP branches, so its projection starts fresh, as do the atrous
    # branches, the decoder and the head, which has the new class count.
    fresh = {layer.name for layer in model.layers if layer.weights} - loaded
    assert {"aspp_projection_conv", "aspp_conv_1_depthwise", "decoder_projection_conv", "decoder_conv_2_conv",
            "segmentation_head_conv"} <= fresh, sorted(fresh)  # fmt: skip
    assert model.get_layer("segmentation_head_conv").kernel.shape[-1] == 3 and model.labels is None
    with pytest.raises(EdgesegError, match="do not exist at alpha 0.35"):
        pretrained.fine_tune_config("pascalvoc", get_config(backbone_alpha=0.35))


def test_train_with_pascalvoc_weights_keeps_a_frozen_pascal_backbone(tmp_path):
    data = tmp_path / "data"
    for folder in ("images", "masks"):
        (data / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(2):
        cv2.imwrite(str(data / "images" / f"f{index}.png"), rng.integers(0, 255, (97, 129, 3), dtype=np.uint8))
        cv2.imwrite(str(data / "masks" / f"f{index}.png"), rng.integers(0, 4, (97, 129), dtype=np.uint8))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--images", str(data / "images"), "--masks", str(data / "masks"),
                                 "--classes", "4", "--preset", "deeplabv3_mnv2", "--weights", "pascalvoc",
                                 "--alpha", "0.5", "--input-size", "97x129", "--freeze-backbone",
                                 "--batch-size", "2", "--epochs", "1", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    model = load_model(out / "last.keras")
    weights = pretrained.read_weights(_entry(0.5).path)
    assert model.output.shape[-1] == 4
    for name in ("Conv1", "block_8_depthwise", "block_16_project"):
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(), weights[name]["kernel"])
    np.testing.assert_array_equal(model.get_layer("block_16_project_BN").beta.numpy(),
                                  weights["block_16_project_BN"]["beta"])  # fmt: skip
    # The ASPP layers started from Pascal and trained one step away from it.
    start, now = weights["aspp_projection_conv"]["kernel"], model.get_layer("aspp_projection_conv").kernel.numpy()
    assert now.shape == start.shape and 0 < np.abs(now - start).max() < 0.1


def test_train_refuses_weights_with_backbone_weights(tmp_path):
    result = runner.invoke(app, ["train", "--images", str(tmp_path), "--masks", str(tmp_path), "--classes", "3",
                                 "--weights", "pascalvoc", "--backbone-weights", "none", "--out", str(tmp_path / "r")])  # fmt: skip
    assert_one_line_error(result, "drop --backbone-weights")
