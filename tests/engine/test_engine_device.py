"""Device selection, determinism switch and random-number state."""

import random

import numpy as np
import pytest
import torch

from medanomaly.engine.device import (
    amp_enabled,
    deterministic_mode,
    get_rng_states,
    resolve_device,
    set_rng_states,
)


def test_resolve_auto_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_resolve_rejects_bad_device():
    with pytest.raises(ValueError, match="Invalid device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="Unsupported device"):
        resolve_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_cuda_without_cuda():
    with pytest.raises(ValueError, match="not available"):
        resolve_device("cuda")


def test_amp_only_on_cuda():
    assert not amp_enabled(torch.device("cpu"), True)
    assert amp_enabled(torch.device("cuda"), True)
    assert not amp_enabled(torch.device("cuda"), False)


def test_deterministic_mode_restores_settings():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_mode(True, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_rng_states_round_trip():
    loader_generator = torch.Generator().manual_seed(5)
    states = get_rng_states(loader_generator)
    expected = (
        random.random(),
        float(np.random.rand()),
        float(torch.rand(1)),
        float(torch.rand(1, generator=loader_generator)),
    )
    set_rng_states(states, loader_generator)
    again = (
        random.random(),
        float(np.random.rand()),
        float(torch.rand(1)),
        float(torch.rand(1, generator=loader_generator)),
    )
    assert again == expected
