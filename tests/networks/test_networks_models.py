"""Tests that every registered model builds, runs, trains and rejects bad inputs."""

import io

import pytest
import torch

from medanomaly.networks import MODEL_NAMES, create_model


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Run on one thread: these tiny batches gain nothing from more, and the CI
    machine shares its cores between test processes."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

CASES = [
    (name, channels, size)
    for name in MODEL_NAMES
    for channels in (1, 3)
    for size in (32, 64)
]
CASE_IDS = [f"{name}-{channels}x{size}" for name, channels, size in CASES]


def build(name, channels, size, seed=0):
    torch.manual_seed(seed)
    return create_model(name, in_channels=channels, image_size=size)


def images(channels, size, batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, size, generator=generator)


def reconstruction_of(output):
    """Return the reconstruction from a generator output (GANomaly returns a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def all_outputs(model, x):
    """Run generator and discriminator and return every output tensor in a flat list."""
    output = model.generator(x)
    tensors = list(output) if isinstance(output, tuple) else [output]
    logit, features = model.discriminator(reconstruction_of(output))
    return tensors + [logit, features]


@pytest.mark.parametrize(("name", "channels", "size"), CASES, ids=CASE_IDS)
def test_output_shapes(name, channels, size):
    model = build(name, channels, size).eval()
    x = images(channels, size)

    with torch.no_grad():
        output = model.generator(x)
        reconstruction = reconstruction_of(output)
        logit, features = model.discriminator(x)

    assert reconstruction.shape == (2, channels, size, size)
    assert float(reconstruction.min()) >= 0.0
    assert float(reconstruction.max()) <= 1.0
    assert logit.shape == (2,)
    assert features.shape == (2, 100)
    if name == "ganomaly":
        _, z, z_hat = output
        assert z.shape == (2, 100)
        assert z_hat.shape == (2, 100)
    else:
        assert isinstance(output, torch.Tensor)


@pytest.mark.parametrize(("name", "channels", "size"), CASES, ids=CASE_IDS)
def test_backward_reaches_every_parameter(name, channels, size):
    model = build(name, channels, size).train()
    x = images(channels, size)

    outputs = all_outputs(model, x)
    for tensor in outputs:
        assert torch.isfinite(tensor).all(), "forward output contains NaN or inf"
    loss = sum(tensor.float().mean() for tensor in outputs)
    loss.backward()

    missing = [n for n, p in model.named_parameters() if p.grad is None]
    non_finite = [
        n
        for n, p in model.named_parameters()
        if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    assert not missing, f"parameters without a gradient: {missing}"
    assert not non_finite, f"parameters with a NaN or inf gradient: {non_finite}"


@pytest.mark.parametrize(("name", "channels", "size"), CASES, ids=CASE_IDS)
def test_same_seed_same_output(name, channels, size):
    x = images(channels, size)
    first = build(name, channels, size, seed=3).eval()
    second = build(name, channels, size, seed=3).eval()

    with torch.no_grad():
        for a, b in zip(all_outputs(first, x), all_outputs(second, x)):
            assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "channels", "size"), CASES, ids=CASE_IDS)
def test_state_dict_round_trip(name, channels, size):
    x = images(channels, size)
    original = build(name, channels, size, seed=0)
    # One training-mode forward moves the batch-norm running statistics off their defaults.
    with torch.no_grad():
        all_outputs(original.train(), x)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = build(name, channels, size, seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))

    original.eval()
    restored.eval()
    with torch.no_grad():
        for a, b in zip(all_outputs(original, x), all_outputs(restored, x)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_attributes(name):
    model = create_model(name, in_channels=1, image_size=32)

    assert model.name == name
    assert model.in_channels == 1
    assert model.image_size == 32
    assert isinstance(model.generator, torch.nn.Module)
    assert isinstance(model.discriminator, torch.nn.Module)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("channels", [0, 2, 4])
def test_bad_channels_rejected(name, channels):
    with pytest.raises(ValueError, match=rf"{name}.*in_channels={channels}"):
        create_model(name, in_channels=channels, image_size=32)


BAD_SIZES = {
    "skipganomaly_pp": [36, 8, 2048, (40, 20), 0],
    "skip_ganomaly": [48, 8, 2048, (32, 64), 0],
    "ganomaly": [48, 8, 2048, (32, 64), 0],
}


@pytest.mark.parametrize(
    ("name", "size"),
    [(name, size) for name, sizes in BAD_SIZES.items() for size in sizes],
)
def test_bad_size_rejected(name, size):
    with pytest.raises(ValueError) as info:
        create_model(name, in_channels=3, image_size=size)

    message = str(info.value)
    assert name in message
    value = size if isinstance(size, int) else size[1]
    assert str(value) in message


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_wrong_size_rejected(name):
    model = create_model(name, in_channels=3, image_size=32)

    with pytest.raises(ValueError, match="36x36"):
        model.generator(torch.rand(1, 3, 36, 36))
    with pytest.raises(ValueError, match="36x36"):
        model.discriminator(torch.rand(1, 3, 36, 36))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_wrong_channels_rejected(name):
    model = create_model(name, in_channels=3, image_size=32)

    with pytest.raises(ValueError, match="1 channels"):
        model.generator(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="1 channels"):
        model.discriminator(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_unbatched_rejected(name):
    model = create_model(name, in_channels=3, image_size=32)

    with pytest.raises(ValueError, match=r"\(3, 32, 32\)"):
        model.generator(torch.rand(3, 32, 32))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_channels_last_same_output(name):
    model = build(name, 3, 32).eval()
    x = images(3, 32)
    with torch.no_grad():
        expected = all_outputs(model, x)
        model = model.to(memory_format=torch.channels_last)
        actual = all_outputs(model, x.contiguous(memory_format=torch.channels_last))

    for a, b in zip(expected, actual):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
