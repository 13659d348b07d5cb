"""ModelConfig and presets: validation, JSON round trip, strides. No TensorFlow needed."""

import pytest

from edgeseg.config import ModelConfig, layer_stride, strided_size
from edgeseg.presets import PRESETS, get_config
from runtime.errors import EdgesegError


def test_json_round_trip_keeps_every_field():
    config = get_config("deeplabv3plus_mnv2_shortcut", num_classes=11, input_size=(360, 480),
                        aspp_rates=(3, 5), backbone_alpha=0.5)
    again = ModelConfig.from_json(config.to_json())
    assert again == config
    assert again.input_size == (360, 480) and again.aspp_rates == (3, 5)


def test_presets_match_their_descriptions():
    plus = get_config("deeplabv3plus_mnv2")
    assert (plus.backbone_output_stride, plus.aspp_rates, plus.aspp_separable) == (16, (6, 12, 18), True)
    assert plus.aspp_image_pooling and plus.decoder
    assert (plus.decoder_projection_filters, plus.decoder_filters) == (48, 256)
    assert plus.output_stride == 4
    v3 = get_config("deeplabv3_mnv2")
    assert v3.aspp_rates == () and v3.aspp_image_pooling and not v3.decoder and v3.output_stride == 16
    shortcut = get_config("deeplabv3plus_mnv2_shortcut")
    assert (shortcut.backbone_tap, shortcut.decoder_tap) == ("block_13_expand_relu", "block_3_expand_relu")
    assert shortcut.high_level_stride == 16 and shortcut.decoder_stride == 4


@pytest.mark.parametrize(("layer", "stride"), [
    ("Conv1_relu", 2), ("expanded_conv_project_BN", 2), ("block_1_expand_relu", 2),
    ("block_1_depthwise_relu", 4), ("block_2_depthwise_relu", 4), ("block_3_expand_relu", 4),
    ("block_3_project_BN", 8), ("block_13_expand_relu", 16), ("block_13_depthwise_relu", 32),
    ("block_16_project_BN", 32), ("out_relu", 32),
])
def test_layer_stride(layer, stride):
    assert layer_stride(layer) == stride


@pytest.mark.parametrize(("size", "stride", "expected"), [(513, 16, 33), (513, 4, 129), (360, 8, 45),
                                                          (480, 32, 15), (97, 32, 4), (257, 16, 17)])
def test_strided_size_rounds_up_at_every_halving(size, stride, expected):
    assert strided_size(size, stride) == expected


@pytest.mark.parametrize(("overrides", "fragment"), [
    (dict(backbone_alpha=0.6), "0.35, 0.5, 0.75, 1, 1.3, 1.4"),
    (dict(backbone_output_stride=4), "choose 8, 16 or 32"),
    (dict(num_classes=1), "at least 2"),
    (dict(input_size=(31, 64)), "too small for output stride 16"),
    (dict(backbone_tap="block_99_nope"), "unknown backbone layer"),
    (dict(decoder_tap="block_14_expand_relu"), "smaller stride"),
    (dict(aspp_rates=(6, 0)), "positive"),
])
def test_invalid_options_name_the_value(overrides, fragment):
    with pytest.raises(EdgesegError, match=fragment.replace(".", r"\.")):
        get_config("deeplabv3plus_mnv2", **overrides)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(EdgesegError) as error:
        get_config("deeplab_resnet")
    assert all(name in str(error.value) for name in PRESETS)


def test_unknown_json_key_is_refused():
    with pytest.raises(EdgesegError, match="unknown model config keys"):
        ModelConfig.from_dict({"num_classes": 3, "colour": "red"})


def test_backbone_channel_divisor_round_trips_and_defaults_to_keras():
    assert get_config().backbone_channel_divisor == 8
    config = get_config("deeplabv3_mnv2", backbone_alpha=0.5, backbone_channel_divisor=1)
    assert ModelConfig.from_json(config.to_json()) == config
    older = config.to_dict()
    del older["backbone_channel_divisor"]  # a config saved before the field existed
    assert ModelConfig.from_dict(older).backbone_channel_divisor == 8
    with pytest.raises(EdgesegError, match="divisor 0 must be a positive integer"):
        get_config(backbone_channel_divisor=0)
