"""A registered model, its model card and metrics, read through the REST API of a real
`mlflow server`, as a reviewer's MLflow UI reads them."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch

from medanomaly import tracking
from medanomaly.config import Config, apply_overrides
from medanomaly.engine.scorer import AnomalyScorer
from medanomaly.networks import create_model

SERVER_START_TIMEOUT_S = 90
TINY_GENERATOR = {
    "channels": [8, 16, 32, 64],
    "bridge_channels": 64,
    "decoder_channels": [32, 16, 8],
    "head_channels": 8,
    "se_reduction": 4,
}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run torch on one thread: tiny networks gain nothing from more, and on a busy
    shared CPU the thread hand-offs slow them down many times."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(base: str, endpoint: str, **query) -> dict:
    url = f"{base}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """Run `mlflow server` on 127.0.0.1 with its store and artifacts in ``folder``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = folder / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "server-artifacts"),
    ]
    # The job runner starts a dozen worker processes that these checks do not use.
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "wb") as log:
        # A new session lets the finally block stop the server and the worker it starts.
        server = subprocess.Popen(command, cwd=folder, env=environment, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited with {server.returncode}:\n{log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer /health within {SERVER_START_TIMEOUT_S} s:\n"
                            f"{log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


def tiny_scorer() -> AnomalyScorer:
    torch.manual_seed(0)
    model = create_model("skipganomaly_pp", in_channels=1, image_size=16, generator=TINY_GENERATOR)
    kwargs = {"in_channels": 1, "image_size": 16, "generator": TINY_GENERATOR}
    return AnomalyScorer(model, threshold=0.3, meta={"image_size": 16, "in_channels": 1},
                         model_kwargs=kwargs)


@pytest.mark.slow
def test_registered_model_visible_over_rest(tmp_path, monkeypatch):
    config = apply_overrides(
        Config(),
        {"model.image_size": 16, "model.in_channels": 1, "data.source": "folder",
         "data.path": "/data/healthy", "tracking.experiment": "review"},
    )
    metrics = {"auroc": 0.81, "auprc": 0.7, "f1": 0.6, "sensitivity": 0.55, "specificity": 0.95,
               "threshold": 0.3}
    with mlflow_server(tmp_path) as base:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", base)
        with tracking.start_run(config, "train") as run:
            tracking.log_config(config)
            tracking.EpochLogger().on_epoch_end(1, {"loss_g": 3.0})
            tracking.log_metrics(metrics)
            model_uri = tracking.log_scorer(tiny_scorer(), in_channels=1, image_size=16)
            card = tracking.build_model_card(config, 0.3, metrics, run_id=run.info.run_id)
            tracking.register_scorer(model_uri, "ct-review", card, tags=metrics)

        registered = get_json(base, "registered-models/get", name="ct-review")["registered_model"]
        version = get_json(base, "model-versions/get", name="ct-review", version="1")["model_version"]
        run_data = get_json(base, "runs/get", run_id=run.info.run_id)["run"]["data"]
        loaded = tracking.load_scorer("models:/ct-review/1")

    version_tags = {tag["key"]: tag["value"] for tag in version["tags"]}
    run_metrics = {metric["key"]: metric["value"] for metric in run_data["metrics"]}
    assert "Research triage aid" in registered["description"]
    assert "## Intended use" in version["description"]
    assert "| auroc | 0.8100 |" in version["description"]
    assert version_tags["auroc"] == "0.81"
    assert version["run_id"] == run.info.run_id
    assert run_metrics["auroc"] == 0.81
    assert loaded.threshold == 0.3
    assert any((tmp_path / "server-artifacts").rglob("MLmodel"))
