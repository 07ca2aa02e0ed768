"""Settings shared by the whole suite."""

import os
from pathlib import Path

import pytest
import torch

# Plots are written to files; never open a window.
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CIFAR10_TARBALL = SHARED_DATA / "cifar10-jpg.tar.gz"


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    """Run the suite's tiny models on one thread.

    Thread start-up costs more than it saves on test-sized tensors, and on a
    loaded 2-core machine two threads made tiny epochs several times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Keep every test's MLflow store inside its own temporary folder."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # MLflow copies a registry URI into the environment when one is set, so a test
    # that trains in this process would otherwise leave its store to the next.
    registry_before = os.environ.get("MLFLOW_REGISTRY_URI")
    monkeypatch.chdir(tmp_path)
    yield
    if registry_before is None:
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    else:
        os.environ["MLFLOW_REGISTRY_URI"] = registry_before


@pytest.fixture(scope="session")
def cifar10_tarball() -> Path:
    """The real CIFAR-10 JPEG tarball that CI places beside the checkout."""
    if not CIFAR10_TARBALL.is_file():
        pytest.skip(f"real CIFAR-10 data not found at {CIFAR10_TARBALL}")
    return CIFAR10_TARBALL
