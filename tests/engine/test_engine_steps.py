"""Training steps and losses of each model family."""

import math

import pytest
import torch
from torch import nn

from medanomaly.config import TrainConfig
from medanomaly.engine.device import make_grad_scaler
from medanomaly.engine.steps import LOSS_NAMES, get_family, make_optimizers
from medanomaly.networks import AnomalyGAN, create_model

FAMILY_MODELS = ("skipganomaly_pp", "skip_ganomaly", "ganomaly")
TINY_GENERATORS = {
    "skipganomaly_pp": {
        "channels": [8, 8, 16, 16],
        "bridge_channels": 16,
        "decoder_channels": [16, 8, 8],
        "head_channels": 8,
    },
    "skip_ganomaly": {"base_channels": 8},
    "ganomaly": {"base_channels": 8},
}

@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny models run fastest on one thread, and test machines share their cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)



def tiny_model(name: str, in_channels: int = 1, image_size: int = 16) -> AnomalyGAN:
    torch.manual_seed(0)
    return create_model(
        name,
        in_channels,
        image_size,
        generator=TINY_GENERATORS[name],
        discriminator={"base_channels": 8},
    )


def run_step(model, x, config=None):
    config = config or TrainConfig()
    optimizer_g, optimizer_d = make_optimizers(model, config)
    scaler = make_grad_scaler(torch.device("cpu"), enabled=False)
    model.train()
    output = get_family(model.name).train_step(model, x, config, optimizer_g, optimizer_d, scaler)
    return output, optimizer_d


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_step_losses_finite(name):
    output, _ = run_step(tiny_model(name), torch.rand(4, 1, 16, 16))
    assert tuple(output.losses) == LOSS_NAMES
    for loss_name, value in output.losses.items():
        assert math.isfinite(float(value)), loss_name
    assert not output.d_reinitialised


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_generator_loss_is_weighted_sum(name):
    config = TrainConfig(w_adv=2.0, w_rec=3.0, w_lat=5.0)
    losses = run_step(tiny_model(name), torch.rand(4, 1, 16, 16), config)[0].losses
    expected = 2.0 * losses["loss_g_adv"] + 3.0 * losses["loss_g_rec"] + 5.0 * losses["loss_g_lat"]
    assert float(losses["loss_g"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(losses["loss_d"]) == pytest.approx(
        float(losses["loss_d_real"] + losses["loss_d_fake"]), rel=1e-5
    )


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_latent_loss_reaches_generator(name):
    model = tiny_model(name)
    config = TrainConfig(w_adv=0.0, w_rec=0.0, w_lat=1.0)
    run_step(model, torch.rand(4, 1, 16, 16), config)
    named_grads = {
        param_name: param.grad
        for param_name, param in model.generator.named_parameters()
        if param.grad is not None
    }
    assert named_grads, "no generator parameter received a gradient"
    total = sum(float(grad.abs().sum()) for grad in named_grads.values())
    assert total > 0.0


def test_discriminator_calls_per_step():
    model = tiny_model("skipganomaly_pp")
    calls = []
    model.discriminator.register_forward_hook(lambda module, args, out: calls.append(args[0]))
    run_step(model, torch.rand(4, 1, 16, 16))
    assert len(calls) == 3
    assert not calls[0].requires_grad  # D(x)
    assert calls[1].requires_grad  # D(fake) for the generator loss
    assert not calls[2].requires_grad  # D(fake.detach()) for the discriminator loss


def test_generator_runs_once_per_step():
    model = tiny_model("ganomaly")
    calls = []
    model.generator.register_forward_hook(lambda module, args, out: calls.append(1))
    run_step(model, torch.rand(4, 1, 16, 16))
    assert len(calls) == 1


@pytest.mark.parametrize("name", ["skip_ganomaly", "ganomaly"])
def test_float16_step_updates_generator(name):
    # The trainer uses float16 autocast only on CUDA; CPU autocast runs the same code path.
    model = tiny_model(name)
    model.train()
    config = TrainConfig()
    optimizer_g, optimizer_d = make_optimizers(model, config)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    before = [param.detach().clone() for param in model.generator.parameters()]
    for _ in range(3):
        output = get_family(name).train_step(
            model, torch.rand(4, 1, 16, 16), config, optimizer_g, optimizer_d, scaler, use_amp=True
        )
    for loss_name, value in output.losses.items():
        assert math.isfinite(float(value)), loss_name
    after = list(model.generator.parameters())
    assert any(not torch.equal(old, new) for old, new in zip(before, after))


class _ConstantGenerator(nn.Module):
    """Generator stand-in whose output is close to 0 whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(-30.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bias + 0.0 * x)


class _MeanDiscriminator(nn.Module):
    """Discriminator stand-in with a huge logit on bright images and a very negative one on dark."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 1)
        self.to_features = nn.Linear(1, 100)
        with torch.no_grad():
            self.head.weight.fill_(400.0)
            self.head.bias.fill_(-200.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = x.mean(dim=(1, 2, 3))[:, None]  # (B, 1)
        return self.head(mean).squeeze(1), self.to_features(mean)


def test_collapsed_discriminator_reinitialised():
    model = AnomalyGAN("skip_ganomaly", 1, 16, _ConstantGenerator(), _MeanDiscriminator())
    output, optimizer_d = run_step(model, torch.ones(4, 1, 16, 16))
    assert float(output.losses["loss_d"]) < 1e-5
    assert output.d_reinitialised
    # DCGAN initialisation draws weights from N(0, 0.02); 400 is long gone.
    assert float(model.discriminator.head.weight.detach().abs().max()) < 1.0
    assert float(model.discriminator.head.bias.detach().abs().max()) == 0.0
    assert len(optimizer_d.state) == 0


def test_unknown_model_has_no_family():
    with pytest.raises(ValueError, match="ganomaly"):
        get_family("anogan")
