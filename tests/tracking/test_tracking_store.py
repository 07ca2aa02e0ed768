"""Tracking store selection and run contents, against a real sqlite store in tmp_path."""

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from medanomaly import tracking
from medanomaly.config import Config, apply_overrides


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory):
    """One sqlite store for the module: creating a store runs its migrations, a second each."""
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def store(shared_store, monkeypatch):
    """Point MLflow at the module's store and return its folder."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{shared_store / 'mlflow.db'}")
    return shared_store


def test_uri_default_is_sqlite_in_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri = tracking.resolve_tracking_uri()
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_uri_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.resolve_tracking_uri() == "http://127.0.0.1:5999"


def test_uri_config_wins_over_environment(tmp_path):
    configured = f"sqlite:///{tmp_path / 'other.db'}"
    assert tracking.resolve_tracking_uri(configured) == configured


@pytest.mark.parametrize("uri", ["./mlruns", "file:///tmp/mlruns", "/abs/mlruns"])
def test_uri_file_store_rejected(uri):
    with pytest.raises(ValueError, match="file store"):
        tracking.resolve_tracking_uri(uri)


def test_artifacts_beside_sqlite_db(tmp_path):
    location = tracking.default_artifact_location(f"sqlite:///{tmp_path / 'db' / 'x.db'}")
    assert location == (tmp_path / "db" / "mlartifacts").as_uri()


def test_artifacts_left_to_server():
    assert tracking.default_artifact_location("http://127.0.0.1:5000") is None


def test_experiment_artifacts_stay_local(store):
    uri = tracking.use_tracking_store()
    experiment_id = tracking.get_or_create_experiment("local", uri)
    experiment = mlflow.MlflowClient().get_experiment(experiment_id)
    assert experiment.artifact_location == (store / "mlartifacts").as_uri()


def test_experiment_reused(store):
    uri = tracking.use_tracking_store()
    first = tracking.get_or_create_experiment("again", uri)
    assert tracking.get_or_create_experiment("again", uri) == first


def test_deleted_experiment_explained(store):
    uri = tracking.use_tracking_store()
    experiment_id = tracking.get_or_create_experiment("gone", uri)
    mlflow.MlflowClient().delete_experiment(experiment_id)
    with pytest.raises(ValueError, match="was deleted"):
        tracking.get_or_create_experiment("gone", uri)


def test_flatten_config_keys():
    config = Config()
    config.model.generator = {"channels": [8, 16]}
    flat = tracking.flatten_config(config.to_dict())
    assert flat["train.epochs"] == "15"
    assert flat["model.generator.channels"] == "[8, 16]"
    assert flat["data.path"] == "null"
    assert flat["model.discriminator"] == "{}"


def test_numeric_metrics_filter():
    values = tracking.numeric_metrics(
        {"loss g": torch.tensor(1.5), "auroc": np.float32(0.75), "name": "x", "flag": True, "bad:key": 2}
    )
    assert values == {"loss g": 1.5, "auroc": 0.75, "bad_key": 2.0}


def test_run_logs_config_tags_and_steps(store, tmp_path):
    manifest = tmp_path / "healthy.csv"
    manifest.write_text("path\na.png\n")
    config = apply_overrides(
        Config(), {"data.source": "manifest", "data.path": str(manifest), "tracking.experiment": "runs"}
    )
    with tracking.start_run(config, "train") as run:
        tracking.log_config(config)
        tracking.EpochLogger().on_epoch_end(1, {"loss_g": 2.0, "val_score_mean": 0.5})
        tracking.EpochLogger().on_epoch_end(2, {"loss_g": 1.0, "val_score_mean": 0.4})
        tracking.log_metrics({"auroc": 0.9})
    client = mlflow.MlflowClient()
    data = client.get_run(run.info.run_id).data
    assert data.params["data.source"] == "manifest"
    assert data.tags["medanomaly.manifest_sha256"] == tracking.file_sha256(manifest)
    assert data.tags["medanomaly.run_type"] == "train"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_g")] == [1, 2]
    assert data.metrics["auroc"] == 0.9
    artifacts = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "dl")))
    assert "epochs: 15" in artifacts.read_text()


def test_resumed_run_keeps_first_param(store, caplog):
    config = apply_overrides(Config(), {"tracking.experiment": "resumed"})
    with tracking.start_run(config, "train") as run:
        tracking.log_config(config)
    changed = apply_overrides(config, {"train.epochs": 30})
    with tracking.start_run(changed, "train", run_id=run.info.run_id):
        tracking.log_config(changed)
    params = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    assert params["train.epochs"] == "15"
    assert "train.epochs changed from 15 to 30" in caplog.text


def test_failed_run_marked_failed(store):
    config = apply_overrides(Config(), {"tracking.experiment": "failed"})
    with pytest.raises(RuntimeError):
        with tracking.start_run(config, "train") as run:
            raise RuntimeError("boom")
    assert mlflow.MlflowClient().get_run(run.info.run_id).info.status == "FAILED"
