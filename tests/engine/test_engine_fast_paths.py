"""Speed paths of the engine give the results of the plain computation."""

import copy
import pickle

import pytest
import torch

from medanomaly.config import TrainConfig
from medanomaly.engine.scorer import AnomalyScorer
from medanomaly.engine.steps import get_family, make_optimizers
from medanomaly.networks import create_model

TOLERANCE = {"rtol": 1e-5, "atol": 1e-7}


@pytest.fixture(autouse=True)
def _single_thread():
    # Tiny models run fastest on one thread, and test machines share their cores.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_model(name: str = "skipganomaly_pp"):
    torch.manual_seed(0)
    generator = (
        {"channels": [8, 8, 16, 16], "bridge_channels": 16, "decoder_channels": [16, 8, 8], "head_channels": 8}
        if name == "skipganomaly_pp"
        else {"base_channels": 8}
    )
    model = create_model(name, 1, 16, generator=generator, discriminator={"base_channels": 8})
    model.train()
    with torch.no_grad():
        for _ in range(3):
            output = model.generator(torch.rand(8, 1, 16, 16))
            model.discriminator(output[0] if isinstance(output, tuple) else output)
    return model


def images(count: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["skipganomaly_pp", "skip_ganomaly", "ganomaly"])
def test_folded_scores_match_plain(name):
    scorer = AnomalyScorer(tiny_model(name), threshold=0.1)
    x = images()
    folded = scorer(x)
    with torch.no_grad():
        plain = get_family(name).score(scorer.model, x, scorer.score_alpha).scores
    assert scorer.inference_model() is not scorer.model
    assert torch.allclose(folded, plain, **TOLERANCE)


def test_folded_copy_follows_new_weights():
    scorer = AnomalyScorer(tiny_model(), threshold=0.1)
    x = images()
    before = scorer(x)
    other = tiny_model()
    torch.manual_seed(5)
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.1 * torch.randn_like(param))
    scorer.model.load_state_dict(other.state_dict())
    with torch.no_grad():
        plain = get_family("skipganomaly_pp").score(scorer.model, x, scorer.score_alpha).scores
    after = scorer(x)
    assert not torch.allclose(after, before)
    assert torch.allclose(after, plain, **TOLERANCE)


def test_folded_copy_not_saved():
    scorer = AnomalyScorer(tiny_model(), threshold=0.1)
    scorer(images())
    assert "_folded" in scorer.__dict__
    assert "_folded" not in pickle.loads(pickle.dumps(scorer)).__dict__
    assert "_folded" not in copy.deepcopy(scorer).__dict__
    assert not any("_folded" in key for key in scorer.state_dict())


def test_training_layers_use_plain_model():
    scorer = AnomalyScorer(tiny_model(), threshold=0.1)
    for module in scorer.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.Module.train(module, True)
    assert scorer.inference_model() is scorer.model


def test_fused_adam_matches_loop():
    # Same gradients, same update: the fused kernel changes only rounding.
    config = TrainConfig()
    model = tiny_model()
    fused_g, _ = make_optimizers(model, config)
    assert fused_g.defaults["fused"]
    parameters = {kind: [p.detach().clone().requires_grad_() for p in model.generator.parameters()] for kind in ("fused", "loop")}
    optimizers = {
        "fused": torch.optim.Adam(parameters["fused"], lr=config.lr, betas=config.betas, fused=True),
        "loop": torch.optim.Adam(parameters["loop"], lr=config.lr, betas=config.betas, foreach=False),
    }
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=generator) for p in parameters["loop"]]
        for kind, optimizer in optimizers.items():
            for param, grad in zip(parameters[kind], grads):
                param.grad = grad.clone()
            optimizer.step()
    for fused, loop in zip(parameters["fused"], parameters["loop"]):
        assert torch.allclose(fused, loop, rtol=1e-6, atol=1e-8)
