"""The CIFAR-10 train, register and evaluate run at a small size, on the real tarball beside the checkout.

``medanomaly train --cifar10 TARBALL --abnormal-class frog --register cifar-frog``
on 300 training images for one epoch with narrow networks, then
``medanomaly evaluate --model models:/cifar-frog/1`` on 300 test images.
"""

import mlflow
import pytest

from medanomaly.cli import main

pytestmark = pytest.mark.slow

NARROW_CONFIG = """\
model:
  generator: {channels: [8, 16, 32, 64], bridge_channels: 64, decoder_channels: [32, 16, 8],
              head_channels: 8, se_reduction: 4}
  discriminator: {base_channels: 8}
train:
  amp: false
"""


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory, cifar10_tarball):
    root = tmp_path_factory.mktemp("cifar-frog")
    (root / "narrow.yaml").write_text(NARROW_CONFIG)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        patch.setenv("MEDANOMALY_CACHE_DIR", str(root / "cache"))
        patch.chdir(root)
        data = ["--cifar10", str(cifar10_tarball), "--abnormal-class", "frog", "--test-limit", "300"]
        train_code = main([
            "train", "--config", "narrow.yaml", *data, "--limit", "300", "--epochs", "1",
            "--batch-size", "32", "--device", "cpu", "--register", "cifar-frog", "--output-dir", "runs",
        ])  # fmt: skip
        evaluate_code = main(["evaluate", "--model", "models:/cifar-frog/1", *data, "--device", "cpu"])
    return {"root": root, "uri": uri, "codes": (train_code, evaluate_code)}


def test_train_and_evaluate_succeed(cifar_run):
    assert cifar_run["codes"] == (0, 0)


def test_registered_version_has_auroc(cifar_run):
    client = mlflow.MlflowClient(tracking_uri=cifar_run["uri"], registry_uri=cifar_run["uri"])
    version = client.get_model_version("cifar-frog", "1")
    train_run = client.get_run(version.run_id)
    assert train_run.data.params["data.abnormal_class"] == "frog"
    assert 0.0 <= train_run.data.metrics["auroc"] <= 1.0
    assert "frog" in version.description


def test_evaluate_logs_auroc_of_registered_model(cifar_run):
    client = mlflow.MlflowClient(tracking_uri=cifar_run["uri"], registry_uri=cifar_run["uri"])
    version = client.get_model_version("cifar-frog", "1")
    runs = client.search_runs(
        [client.get_run(version.run_id).info.experiment_id], order_by=["attributes.start_time DESC"]
    )
    evaluation = next(run for run in runs if run.info.run_id != version.run_id)
    train_auroc = client.get_run(version.run_id).data.metrics["auroc"]
    # The same weights on the same seeded 300-image test subset: the same AUROC.
    assert evaluation.data.metrics["auroc"] == pytest.approx(train_auroc, abs=1e-6)
