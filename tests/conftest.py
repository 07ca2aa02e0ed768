"""Settings shared by the whole suite."""

import os
from pathlib import Path

import pytest

# Plots are written to files; never open a window.
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CIFAR10_TARBALL = SHARED_DATA / "cifar10-jpg.tar.gz"


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Keep every test's MLflow store inside its own temporary folder."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def cifar10_tarball() -> Path:
    """The real CIFAR-10 JPEG tarball that CI places beside the checkout."""
    if not CIFAR10_TARBALL.is_file():
        pytest.skip(f"real CIFAR-10 data not found at {CIFAR10_TARBALL}")
    return CIFAR10_TARBALL
