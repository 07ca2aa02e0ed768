"""fold_batch_norm: the folded networks compute what the originals compute in eval mode."""

import copy

import pytest
import torch
from torch import nn

from medanomaly.networks import MODEL_NAMES, create_model
from medanomaly.networks.blocks import fold_batch_norm


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny models run fastest on one thread, and test machines share their cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def trained_statistics_model(name: str, channels: int = 1, size: int = 32) -> nn.Module:
    """Build a model whose batch-norm statistics and affine parameters are not the defaults."""
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, image_size=size)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            output = model.generator(torch.rand(4, channels, size, size))
            fake = output[0] if isinstance(output, tuple) else output
            model.discriminator(fake)
    return model.eval()


def as_tuple(output):
    return output if isinstance(output, tuple) else (output,)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_folded_outputs_match(name):
    model = trained_statistics_model(name)
    folded = copy.deepcopy(model)
    count = fold_batch_norm(folded)
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for original, new in zip(as_tuple(model.generator(x)), as_tuple(folded.generator(x))):
            assert torch.allclose(new, original, rtol=1e-4, atol=1e-5)
        for original, new in zip(model.discriminator(x), folded.discriminator(x)):
            assert torch.allclose(new, original, rtol=1e-4, atol=1e-5)
    batch_norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert count == batch_norms
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_fold_keeps_channels_last():
    model = trained_statistics_model("skipganomaly_pp").to(memory_format=torch.channels_last)
    fold_batch_norm(model)
    weight = model.generator.stem.residual.conv.unit0.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)


def test_fold_skips_training_layers():
    model = trained_statistics_model("skip_ganomaly")
    model.train()
    assert fold_batch_norm(model) == 0
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_leaves_returned_features():
    # The discriminator's classifier activation reads the returned features,
    # so it must stay out of place.
    model = trained_statistics_model("skipganomaly_pp")
    fold_batch_norm(model)
    assert not model.discriminator.classifier[0].inplace
