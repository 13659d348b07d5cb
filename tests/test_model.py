"""The DeepLabV3(+) builder: sizes, paper figures, serialization, backbone weights, int8 ops."""

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgeseg.model import build_model, config_of, load_model, multiply_adds, save_model  # noqa: E402
from edgeseg.presets import get_config  # noqa: E402
from runtime.errors import EdgesegError  # noqa: E402

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared/weights/mobilenet_v2_1.0_no_top_imagenet_q8.weights.h5"


def test_deeplabv3_mnv2_matches_the_mobilenetv2_paper():
    # MobileNetV2 paper, Table 7: DeepLabV3 (no ASPP) on MobileNetV2, OS16: 2.11M params, 2.75B MAdds.
    model = build_model(get_config("deeplabv3_mnv2", num_classes=21, input_size=(513, 513)))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == pytest.approx(2.11e6, rel=0.02)
    assert model.count_params() == pytest.approx(2.11e6, rel=0.02)
    assert multiply_adds(model) == pytest.approx(2.75e9, rel=0.05)
    assert tuple(model.output.shape) == (1, 33, 33, 21)


@pytest.mark.parametrize("size", [(513, 513), (257, 257), (360, 480)])
def test_deeplabv3plus_builds_at_deployment_sizes(size):
    model = build_model(get_config("deeplabv3plus_mnv2", num_classes=11, input_size=size))
    expected = tuple(-(-n // 4) for n in size)
    assert tuple(model.output.shape) == (1, *expected, 11)


@pytest.mark.parametrize("stride", [8, 16, 32])
@pytest.mark.parametrize("size", [(97, 131), (64, 160), (129, 65)])
@pytest.mark.parametrize("decoder", [True, False])
def test_output_size_follows_the_output_stride(stride, size, decoder):
    config = get_config("deeplabv3plus_mnv2", num_classes=3, input_size=size, backbone_alpha=0.35,
                        backbone_output_stride=stride, decoder=decoder)
    model = build_model(config)
    high = model.get_layer("aspp_projection_relu").output.shape[1:3]
    assert tuple(high) == tuple(-(-n // stride) for n in size)
    assert tuple(model.output.shape[1:3]) == config.output_size
    assert config.output_stride == (4 if decoder else stride)


def test_dilation_replaces_stride_without_changing_weights():
    def features(stride):
        config = get_config("deeplabv3_mnv2", input_size=(96, 96), backbone_alpha=0.35,
                            backbone_output_stride=stride)
        return build_model(config)

    os8, os32 = features(8), features(32)
    assert os8.count_params() == os32.count_params()
    assert os8.get_layer("block_6_depthwise").strides == (1, 1)
    assert os8.get_layer("block_7_depthwise").dilation_rate == (2, 2)
    assert os8.get_layer("block_14_depthwise").dilation_rate == (4, 4)
    assert os32.get_layer("block_14_depthwise").dilation_rate == (1, 1)


def test_head_upsample_gives_input_size_logits():
    config = get_config("deeplabv3plus_mnv2", num_classes=4, input_size=(65, 97), backbone_alpha=0.35,
                        head_upsample=True)
    assert tuple(build_model(config).output.shape) == (1, 65, 97, 4)


def test_aspp_options_shape_the_graph():
    config = get_config("deeplabv3plus_mnv2", input_size=(65, 65), backbone_alpha=0.35,
                        aspp_rates=(2, 3, 4, 5), aspp_separable=False, aspp_image_pooling=False,
                        aspp_filters=32, decoder_separable=False)
    model = build_model(config)
    names = {layer.name for layer in model.layers}
    assert {"aspp_conv_4_conv", "aspp_conv_1_conv"} <= names
    assert "aspp_pool_conv" not in names and "aspp_conv_1_depthwise" not in names
    assert model.get_layer("aspp_conv_4_conv").dilation_rate == (5, 5)
    assert model.get_layer("aspp_concat").output.shape[-1] == 5 * 32
    no_branches = build_model(config.replace(aspp_rates=()))
    assert "aspp_concat" not in {layer.name for layer in no_branches.layers}


def test_custom_taps_by_layer_name():
    config = get_config("deeplabv3plus_mnv2_shortcut", input_size=(64, 64), backbone_alpha=0.35)
    model = build_model(config)
    names = {layer.name for layer in model.layers}
    assert "block_13_depthwise" not in names  # the backbone stops at its tap
    assert model.get_layer("decoder_concat").input[1].shape[1:3] == (16, 16)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    config = get_config("deeplabv3plus_mnv2", num_classes=5, input_size=(65, 97), backbone_alpha=0.5)
    model = build_model(config)
    image = np.random.default_rng(0).uniform(-1, 1, (1, 65, 97, 3)).astype("float32")
    before = np.asarray(model(image, training=False))
    path = save_model(model, tmp_path / "m.keras")
    loaded = load_model(path)
    assert config_of(loaded) == config
    np.testing.assert_array_equal(np.asarray(loaded(image, training=False)), before)


def test_a_failed_save_keeps_the_previous_file(tmp_path):
    target = tmp_path / "m.keras"
    target.write_bytes(b"previous good model")

    class Broken(keras.Model):
        def save(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_model(Broken(), target)
    assert target.read_bytes() == b"previous good model"
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


def _saved_reference_weights(tmp_path, alpha=1.0):
    reference = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=alpha, include_top=False,
                                               weights=None)
    rng = np.random.default_rng(1)
    reference.set_weights([rng.normal(0, 0.2, w.shape).astype("float32") if "variance" not in w.path
                           else rng.uniform(0.5, 2, w.shape).astype("float32") for w in reference.weights])
    path = tmp_path / f"mnv2_{alpha}.weights.h5"
    reference.save_weights(path)
    return reference, path


def test_local_weights_file_gives_the_reference_features_at_os32(tmp_path):
    _, path = _saved_reference_weights(tmp_path)
    reference = keras.applications.MobileNetV2(input_shape=(97, 131, 3), include_top=False, weights=None)
    reference.load_weights(path)
    config = get_config("deeplabv3_mnv2", input_size=(97, 131), backbone_output_stride=32,
                        backbone_tap="out_relu")
    model = build_model(config, backbone_weights=path)
    features = keras.Model(model.input, model.get_layer("out_relu").output)
    image = np.random.default_rng(2).uniform(-1, 1, (1, 97, 131, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(features(image)), np.asarray(reference(image)), atol=1e-5)


@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason="../shared/weights is absent (a user's clone)")
def test_offline_imagenet_file_loads_by_name():
    model = build_model(get_config("deeplabv3plus_mnv2", input_size=(65, 65)), backbone_weights=SHARED_WEIGHTS)
    reference = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
    reference.load_weights(SHARED_WEIGHTS)
    np.testing.assert_array_equal(model.get_layer("block_5_project").get_weights()[0],
                                  reference.get_layer("block_5_project").get_weights()[0])


def test_weights_that_do_not_fit_are_refused(tmp_path):
    _, path = _saved_reference_weights(tmp_path, alpha=0.5)
    with pytest.raises(EdgesegError, match="does not fit"):
        build_model(get_config("deeplabv3_mnv2", input_size=(64, 64)), backbone_weights=path)
    with pytest.raises(EdgesegError, match="does not exist"):
        build_model(get_config("deeplabv3_mnv2", input_size=(64, 64)), backbone_weights=tmp_path / "no.h5")


def test_int8_conversion_leaves_no_float_op():
    pytest.importorskip("tensorflow")
    config = get_config("deeplabv3plus_mnv2", num_classes=3, input_size=(65, 81), backbone_alpha=0.35)
    model = build_model(config)
    rng = np.random.default_rng(3)

    def representative():
        for _ in range(4):
            yield [rng.uniform(-1, 1, (1, 65, 81, 3)).astype("float32")]

    from ai_edge_litert.interpreter import Interpreter

    from converters.tflite import convert

    interpreter = Interpreter(model_content=convert(model, "int8", "uint8", representative),
                              experimental_preserve_all_tensors=False)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    names = {op["op_name"] for op in ops}
    # Dilation stays inside single convolutions; image pooling is a MEAN, never AVERAGE_POOL_2D.
    assert not names & {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "DEQUANTIZE", "AVERAGE_POOL_2D"}
    assert "MEAN" in names
    float_ops = [op["op_name"] for op in ops if any(tensors[i]["dtype"] == np.float32
                                                   for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0)]
    assert float_ops == []
    assert [op["op_name"] for op in ops].count("QUANTIZE") == 1
    interpreter.allocate_tensors()  # applies XNNPACK: the whole graph is one partition
    assert [op["op_name"] for op in interpreter._get_ops_details()].count("DELEGATE") == 1
