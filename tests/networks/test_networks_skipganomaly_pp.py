"""Tests of the Skip-GANomaly++ generator and its blocks."""

import pytest
import torch
from monai.networks.blocks import ChannelSELayer, ResidualUnit
from torch.utils.flop_counter import FlopCounterMode

from medanomaly.networks import ASPP, SkipGANomalyPPGenerator, create_model


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Run on one thread: these tiny batches gain nothing from more, and the CI
    machine shares its cores between test processes."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

# Parameter count of the authors' generator (crinex/SkipGANomalyPP) at 3x32x32.
AUTHORS_PARAMETERS = 4_063_027


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_near_authors():
    generator = SkipGANomalyPPGenerator(in_channels=3)

    assert abs(count(generator) - AUTHORS_PARAMETERS) / AUTHORS_PARAMETERS < 0.01


def test_contains_monai_residual_units():
    generator = SkipGANomalyPPGenerator(in_channels=3)
    units = [m for m in generator.modules() if isinstance(m, ResidualUnit)]

    # Stem, three encoder blocks and three decoder blocks.
    assert len(units) == 7


def test_contains_monai_se_layers_reduction_8():
    generator = SkipGANomalyPPGenerator(in_channels=3)
    layers = [m for m in generator.modules() if isinstance(m, ChannelSELayer)]

    assert len(layers) == 7
    for layer in layers:
        squeeze = layer.fc[0]
        assert squeeze.out_features == squeeze.in_features // 8


def test_aspp_dilations():
    generator = SkipGANomalyPPGenerator(in_channels=3)
    modules = [m for m in generator.modules() if isinstance(m, ASPP)]

    # The bridge and the output head.
    assert len(modules) == 2
    for aspp in modules:
        dilations = [branch.conv.dilation for branch in aspp.branches]
        kernels = [branch.conv.kernel_size for branch in aspp.branches]
        assert dilations == [(1, 1), (6, 6), (12, 12), (18, 18)]
        assert kernels == [(3, 3)] * 4
    assert generator.bridge.project.conv.out_channels == 256


def test_encoder_halves_three_times():
    generator = SkipGANomalyPPGenerator(in_channels=3).eval()
    shapes = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
        for module in (generator.stem, *generator.encoders, generator.bridge)
    ]
    with torch.no_grad():
        generator(torch.rand(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()

    assert shapes == [
        (1, 16, 32, 32),
        (1, 32, 16, 16),
        (1, 64, 8, 8),
        (1, 128, 4, 4),
        (1, 256, 4, 4),
    ]


def test_decoder_widths():
    generator = SkipGANomalyPPGenerator(in_channels=3).eval()
    shapes = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
        for module in generator.decoders
    ]
    with torch.no_grad():
        generator(torch.rand(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()

    assert shapes == [(1, 128, 8, 8), (1, 64, 16, 16), (1, 32, 32, 32)]


@pytest.mark.parametrize(
    ("channels", "height", "width"),
    [(1, 128, 128), (3, 40, 24), (1, 16, 48)],
    ids=["1x128x128", "3x40x24", "1x16x48"],
)
def test_other_sizes(channels, height, width):
    torch.manual_seed(0)
    model = create_model("skipganomaly_pp", in_channels=channels, image_size=(height, width))
    model.train()
    x = torch.rand(1, channels, height, width)

    reconstruction = model.generator(x)
    logit, features = model.discriminator(reconstruction)
    (reconstruction.mean() + logit.mean() + features.mean()).backward()

    assert reconstruction.shape == (1, channels, height, width)
    assert logit.shape == (1,)
    assert features.shape == (1, 100)
    assert torch.isfinite(reconstruction).all()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"


def test_generator_any_multiple_of_8():
    generator = SkipGANomalyPPGenerator(in_channels=1).eval()

    with torch.no_grad():
        output = generator(torch.rand(1, 1, 24, 56))

    assert output.shape == (1, 1, 24, 56)


@pytest.mark.parametrize("size", [(36, 32), (32, 20)], ids=["36x32", "32x20"])
def test_generator_rejects_size_not_multiple_of_8(size):
    generator = SkipGANomalyPPGenerator(in_channels=1)

    with pytest.raises(ValueError, match=f"{size[0]}x{size[1]}.*divisible by 8"):
        generator(torch.rand(1, 1, *size))


@pytest.mark.parametrize(
    ("height", "width"),
    [(4, 4), (5, 3), (2, 2), (16, 16), (8, 24)],
    ids=["4x4", "5x3", "2x2", "16x16", "8x24"],
)
def test_aspp_centre_tap_matches_full_conv(height, width):
    torch.manual_seed(0)
    aspp = ASPP(2, 16, 24).train()
    x = torch.randn(2, 16, height, width, requires_grad=True)
    # Convolution weights and the input; a bias followed by batch norm has a zero
    # gradient, so comparing its rounding noise would test nothing.
    inputs = [x] + [p for p in aspp.parameters() if p.dim() == 4]

    fast = aspp(x)
    fast_grads = torch.autograd.grad(fast.square().mean(), inputs)
    aspp.use_centre_tap = False
    full = aspp(x)
    full_grads = torch.autograd.grad(full.square().mean(), inputs)

    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    for fast_grad, full_grad in zip(fast_grads, full_grads):
        torch.testing.assert_close(fast_grad, full_grad, rtol=1e-4, atol=1e-6)


def test_aspp_state_dict_keeps_full_kernels():
    aspp = ASPP(2, 8, 8)
    shapes = {key: tuple(value.shape) for key, value in aspp.state_dict().items()}

    for index in range(4):
        assert shapes[f"branches.{index}.conv.weight"] == (8, 8, 3, 3)


def test_ungated_attention_variant_runs():
    generator = SkipGANomalyPPGenerator(in_channels=3, gate_act=None).eval()

    with torch.no_grad():
        output = generator(torch.rand(1, 3, 16, 16))

    assert output.shape == (1, 3, 16, 16)


def test_custom_widths():
    generator = SkipGANomalyPPGenerator(
        in_channels=1, channels=(8, 16, 24, 32), bridge_channels=64, decoder_channels=(32, 16, 8),
        head_channels=8,
    ).eval()

    with torch.no_grad():
        output = generator(torch.rand(1, 1, 16, 16))

    assert output.shape == (1, 1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"channels": (16, 32, 64)}, "channels must give 4 widths"),
        ({"decoder_channels": (64, 32)}, "decoder_channels must give 3 widths"),
        ({"channels": (4, 32, 64, 128)}, "out_channels=4 is smaller than se_reduction=8"),
        ({"spatial_dims": 3}, "spatial_dims=3"),
        ({"dilations": (1, 0)}, "every dilation must be a positive integer, got 0"),
    ],
    ids=["short-channels", "short-decoder", "narrow-stem", "3d", "zero-dilation"],
)
def test_bad_arguments_rejected(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SkipGANomalyPPGenerator(in_channels=3, **kwargs)


def test_bridge_uses_centre_tap_at_32():
    generator = SkipGANomalyPPGenerator(in_channels=3).eval()
    bridge_input = torch.rand(1, 128, 4, 4)

    with torch.no_grad(), FlopCounterMode(display=False) as fast_counter:
        generator.bridge(bridge_input)
    generator.bridge.use_centre_tap = False
    with torch.no_grad(), FlopCounterMode(display=False) as full_counter:
        generator.bridge(bridge_input)

    # Dilations 6, 12 and 18 read 1 of 9 taps on a 4x4 map, and dilation 1 reads all 9.
    branch_flops = 2 * 128 * 256 * 9 * 16
    projection_flops = 2 * 256 * 256 * 16
    assert full_counter.get_total_flops() == 4 * branch_flops + projection_flops
    assert fast_counter.get_total_flops() == branch_flops * (1 + 3 / 9) + projection_flops
