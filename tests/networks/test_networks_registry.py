"""Tests of the model registry, the discriminator size rule and the model summary."""

import pytest
import torch

from medanomaly.networks import (
    MODEL_NAMES,
    Discriminator,
    check_input,
    create_model,
    init_weights,
    model_info,
)
from medanomaly.networks.summary import describe_models, format_table


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Run on one thread: these tiny batches gain nothing from more, and the CI
    machine shares its cores between test processes."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_model_names():
    assert set(MODEL_NAMES) == {"skipganomaly_pp", "skip_ganomaly", "ganomaly"}


def test_unknown_name_lists_known():
    with pytest.raises(ValueError) as info:
        create_model("anogan_v9")

    message = str(info.value)
    assert "anogan_v9" in message
    for name in MODEL_NAMES:
        assert name in message


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_info_fields(name):
    info = model_info(name)

    assert info["name"] == name
    assert info["description"]
    assert info["paper"]
    assert info["size_rule"]


def test_papers_named():
    assert "IJCNN 2019" in model_info("skip_ganomaly")["paper"]
    assert "ACCV 2018" in model_info("ganomaly")["paper"]


@pytest.mark.parametrize(
    ("name", "channels", "size"),
    [
        ("skipganomaly_pp", 1, 48),
        ("skipganomaly_pp", 3, (40, 24)),
        ("skip_ganomaly", 3, 16),
        ("ganomaly", 1, 128),
    ],
)
def test_check_input_accepts(name, channels, size):
    check_input(name, channels, size)


@pytest.mark.parametrize(
    ("name", "channels", "size", "pattern"),
    [
        ("skipganomaly_pp", 3, 44, "44 is not divisible by 8"),
        ("skip_ganomaly", 3, 48, "48 is not a power of two"),
        ("ganomaly", 3, (32, 16), "32x16 is not square"),
        ("ganomaly", 2, 32, "in_channels=2"),
        ("skipganomaly_pp", True, 32, "in_channels=True"),
        ("skipganomaly_pp", 3, "32", "'32'"),
        ("skipganomaly_pp", 3, 8, "8 is below the minimum 16"),
    ],
)
def test_check_input_rejects(name, channels, size, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_input(name, channels, size)


def test_generator_options_applied():
    model = create_model(
        "skipganomaly_pp",
        in_channels=1,
        image_size=16,
        generator={"channels": [8, 16, 24, 32], "bridge_channels": 64,
                   "decoder_channels": [32, 16, 8], "head_channels": 8},
        discriminator={"base_channels": 8},
    )

    assert model.generator.stem.residual.out_channels == 8
    assert model.discriminator.features[0].conv.out_channels == 8


def test_yaml_style_act_and_norm():
    model = create_model(
        "ganomaly",
        in_channels=1,
        image_size=16,
        generator={"act": ["leakyrelu", {"negative_slope": 0.1}], "norm": "instance"},
    )

    with torch.no_grad():
        reconstruction, _, _ = model.generator(torch.rand(2, 1, 16, 16))
    assert reconstruction.shape == (2, 1, 16, 16)


def test_unknown_option_lists_valid():
    with pytest.raises(ValueError, match=r"unknown generator option\(s\) \['widths'\].*channels"):
        create_model("skipganomaly_pp", generator={"widths": [1, 2]})


def test_reserved_option_rejected():
    with pytest.raises(ValueError, match="in_channels"):
        create_model("skip_ganomaly", discriminator={"in_channels": 1})


@pytest.mark.parametrize(
    ("size", "final_map"),
    [(16, (4, 4)), (32, (4, 4)), (128, (4, 4)), (48, (3, 3)), ((40, 24), (5, 3))],
    ids=["16", "32", "128", "48", "40x24"],
)
def test_discriminator_final_map(size, final_map):
    discriminator = Discriminator(in_channels=1, image_size=size)

    assert discriminator.to_features.conv.kernel_size == final_map


def test_discriminator_power_of_two_matches_dcgan():
    discriminator = Discriminator(in_channels=3, image_size=64)
    widths = [layer.conv.out_channels for layer in discriminator.features]

    assert widths == [64, 128, 256, 512]


@pytest.mark.parametrize("size", [12, 20, (16, 36)], ids=["12", "20", "16x36"])
def test_discriminator_rejects_size(size):
    with pytest.raises(ValueError, match="divisible by 8|below the minimum"):
        Discriminator(in_channels=1, image_size=size)


@pytest.mark.parametrize(("size", "channels"), [(32, 3), (128, 1)], ids=["3x32", "1x128"])
def test_describe_models(size, channels):
    rows = describe_models(image_size=size, in_channels=channels)

    assert [row["name"] for row in rows] == list(MODEL_NAMES)
    for row in rows:
        assert row["ok"], row["error"]
        assert row["parameters"]["generator"] > 0
        assert row["parameters"]["discriminator"] > 0
        assert row["parameters"]["total"] == (
            row["parameters"]["generator"] + row["parameters"]["discriminator"]
        )
        assert row["gflops"]["generator"] > 0
        assert row["gflops"]["total"] > row["gflops"]["generator"]


def test_describe_counts_match_real_model():
    row = describe_models(image_size=32, in_channels=3)[0]
    model = create_model(row["name"], in_channels=3, image_size=32)

    assert row["parameters"]["generator"] == sum(p.numel() for p in model.generator.parameters())


def test_describe_rejected_size():
    rows = {row["name"]: row for row in describe_models(image_size=48, in_channels=1)}

    assert rows["skipganomaly_pp"]["ok"]
    assert not rows["ganomaly"]["ok"]
    assert "48 is not a power of two" in rows["ganomaly"]["error"]
    assert rows["ganomaly"]["parameters"] is None


def test_format_table():
    table = format_table(describe_models(image_size=48, in_channels=1))

    for name in MODEL_NAMES:
        assert name in table
    assert "48 is not a power of two" in table


def test_init_weights_resets_discriminator():
    discriminator = Discriminator(in_channels=1, image_size=16)
    with torch.no_grad():
        for parameter in discriminator.parameters():
            parameter.fill_(5.0)
        discriminator(torch.rand(2, 1, 16, 16))

    init_weights(discriminator)

    first_conv = discriminator.features[0].conv.weight.detach()
    norm = discriminator.features[1].adn.N
    assert float(first_conv.std()) < 0.05
    assert float(norm.bias.detach().abs().max()) == 0.0
    assert int(norm.num_batches_tracked) == 0
