"""train -> evaluate -> score through the command line, on a tiny PNG image folder,
with a real MLflow sqlite store in a temporary folder."""

import csv
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from medanomaly import tracking
from medanomaly.cli import main

pytestmark = pytest.mark.slow

# Narrow networks keep one epoch on 16 x 16 images to a few seconds on a CPU.
TINY_CONFIG = """\
model:
  generator: {channels: [8, 16, 32, 64], bridge_channels: 64, decoder_channels: [32, 16, 8],
              head_channels: 8, se_reduction: 4}
  discriminator: {base_channels: 8}
data:
  val_fraction: 0.2
train:
  amp: false
"""
REGISTERED = "tiny-folder"


def write_image_folder(root: Path) -> None:
    """Write train/0.normal (40), test/0.normal (8) and test/1.abnormal (8) 16 x 16 PNGs.

    Normal images are a smooth ramp with noise; abnormal ones add a bright square.
    """
    rng = np.random.default_rng(0)
    ramp = np.outer(np.linspace(0, 1, 16), np.linspace(0, 1, 16))
    for folder, count, abnormal in (("train/0.normal", 40, False), ("test/0.normal", 8, False),
                                    ("test/1.abnormal", 8, True)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            image = 0.3 + 0.4 * ramp + rng.normal(0, 0.02, ramp.shape)
            if abnormal:
                image[4:10, 5:11] = 1.0
            pixels = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / f"img{i:03d}.png")


def write_cifar10_release(folder: Path) -> None:
    """Write a CIFAR-10 python release with one random 32 x 32 image per class in each batch."""
    import pickle

    from medanomaly.data import CIFAR10_CLASSES

    rng = np.random.default_rng(1)
    folder.mkdir()
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {b"label_names": [name.encode() for name in CIFAR10_CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run torch on one thread: on 16 x 16 images, thread hand-offs cost more than they
    save, and on a busy shared CPU they slow an epoch down many times."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    """Train once for the module: 1 epoch, registered as tiny-folder version 1."""
    root = tmp_path_factory.mktemp("e2e")
    write_image_folder(root / "images")
    (root / "tiny.yaml").write_text(TINY_CONFIG)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)
        code = main([
            "train", "--config", "tiny.yaml", "--folder", "images", "--epochs", "1",
            "--batch-size", "8", "--image-size", "16", "--channels", "1", "--device", "cpu",
            "--register", REGISTERED, "--experiment", "e2e", "--output-dir", "runs",
        ])  # fmt: skip
    assert code == 0
    (run_dir,) = (root / "runs").iterdir()
    record = json.loads((run_dir / "mlflow_run.json").read_text())
    return {"root": root, "uri": uri, "run_dir": run_dir, "run_id": record["run_id"]}


@pytest.fixture
def store(trained, monkeypatch):
    """The module's trained run, with MLflow and the working directory pointed at it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    monkeypatch.chdir(trained["root"])
    tracking.use_tracking_store()
    return trained


def test_train_run_folder(store):
    names = {path.name for path in store["run_dir"].iterdir()}
    assert {"config.yaml", "best.pt", "last.pt", "history.json", "mlflow_run.json"} <= names
    assert "epochs: 1" in (store["run_dir"] / "config.yaml").read_text()


def test_train_logs_params_tags_metrics(store):
    client = mlflow.MlflowClient()
    run = client.get_run(store["run_id"])
    assert run.data.params["model.image_size"] == "16"
    assert run.data.params["data.source"] == "folder"
    assert run.data.tags["medanomaly.model"] == "skipganomaly_pp"
    assert run.data.tags["medanomaly.version"]
    for name in ("auroc", "auprc", "f1", "sensitivity", "specificity", "threshold"):
        assert name in run.data.metrics, name
    history = client.get_metric_history(store["run_id"], "loss_g")
    assert [metric.step for metric in history] == [1]


def test_train_logs_artifacts(store):
    client = mlflow.MlflowClient()
    top = {item.path for item in client.list_artifacts(store["run_id"])}
    evaluation = {item.path for item in client.list_artifacts(store["run_id"], "evaluation")}
    assert {"config.yaml", "reconstructions.png", "history.json"} <= top
    assert {"evaluation/roc_curve.png", "evaluation/score_histogram.png", "evaluation/scores.csv"} <= evaluation


def test_train_registers_model_card(store):
    version = mlflow.MlflowClient().get_model_version(REGISTERED, "1")
    assert "## Test metrics" in version.description
    assert "Not a diagnostic device" in version.description
    assert "auroc" in version.tags
    assert version.tags["intended_use"] == "research triage aid, not a diagnostic device"


def test_train_summary_printed(tmp_path, store, capsys):
    # The summary of the fixture's run went to pytest's capture; a resumed run prints its own.
    assert main(["train", "--resume", str(store["run_dir"]), "--epochs", "2"]) == 0
    output = capsys.readouterr().out
    assert f"MLflow run   {store['run_id']}" in output
    assert "Best epoch" in output
    assert f"models:/{REGISTERED}/2" in output
    history = mlflow.MlflowClient().get_metric_history(store["run_id"], "loss_g")
    assert [metric.step for metric in history] == [1, 2]


def test_evaluate_registered_model(store, capsys):
    assert main(["evaluate", "--model", f"models:/{REGISTERED}/1", "--folder", "images"]) == 0
    output = capsys.readouterr().out
    for name in ("auroc", "auprc", "f1", "sensitivity", "specificity"):
        assert name in output
    runs = mlflow.search_runs(
        experiment_names=["medanomaly"], filter_string="tags.`medanomaly.run_type` = 'evaluate'"
    )
    assert len(runs) == 1
    assert runs.iloc[0]["tags.medanomaly.model_ref"] == f"models:/{REGISTERED}/1"
    assert 0.0 <= runs.iloc[0]["metrics.auroc"] <= 1.0


def test_evaluate_cifar10_release(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDANOMALY_CACHE_DIR", str(tmp_path / "cache"))
    write_cifar10_release(tmp_path / "cifar")
    code = main(["evaluate", "--model", f"models:/{REGISTERED}/1", "--cifar10", str(tmp_path / "cifar"),
                 "--abnormal-class", "bird", "--experiment", "cifar-eval"])
    assert code == 0
    assert "15 image(s)" in capsys.readouterr().out


def test_inspect_folder_json(store, capsys):
    assert main(["inspect", "--folder", "images", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["train"] == {"normal": 40}
    assert report["counts"]["test"] == {"normal": 8, "abnormal": 8}


def test_score_outputs(store, capsys):
    scored = store["root"] / "scored"
    (store["root"] / "images" / "test" / "0.normal" / "broken.png").write_bytes(b"not a png")
    try:
        code = main(["score", "--model", f"models:/{REGISTERED}/1", "--folder", "images/test",
                     "--out", str(scored), "--panels", "3"])
    finally:
        (store["root"] / "images" / "test" / "0.normal" / "broken.png").unlink()
    captured = capsys.readouterr()
    assert code == 0
    rows = read_csv(scored / "scores.csv")
    assert len(rows) == 16
    assert list(rows[0]) == ["path", "frame_or_slice", "score", "threshold", "flagged"]
    assert len(read_csv(scored / "series_summary.csv")) == 16
    flagged = sum(int(row["flagged"]) for row in rows)
    assert len(list((scored / "panels").glob("*.png"))) == min(3, flagged)
    skipped = read_csv(scored / "skipped.csv")
    assert [Path(row["path"]).name for row in skipped] == ["broken.png"]
    assert "broken.png" in captured.err
    assert not list(scored.rglob(".*.tmp"))


def test_score_manifest_with_labels(store, capsys):
    manifest = store["root"] / "labelled.csv"
    manifest.write_text(
        "path,label\nimages/test/0.normal,normal\nimages/test/1.abnormal,abnormal\n"
        "images/train/0.normal/img000.png,\n"
    )
    scored = store["root"] / "scored-manifest"
    assert main(["score", "--model", str(store["run_dir"]), "--manifest", str(manifest),
                 "--out", str(scored), "--panels", "0"]) == 0
    assert "auroc" in capsys.readouterr().out
    rows = read_csv(scored / "scores.csv")
    assert {row["label"] for row in rows} == {"0", "1", "-1"}
    assert not (scored / "panels").exists()


def test_latest_uri_loads_newest_version(store):
    scorer = tracking.load_scorer(f"models:/{REGISTERED}/latest")
    assert scorer.meta["epoch"] in (1, 2)


def test_same_seed_same_weights(tmp_path):
    write_image_folder(tmp_path / "images")
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)
    weights = []
    for index in range(2):
        code = main([
            "train", "--config", "tiny.yaml", "--folder", "images", "--epochs", "1",
            "--batch-size", "8", "--image-size", "16", "--channels", "1", "--device", "cpu",
            "--seed", "3", "--output-dir", f"runs{index}",
        ])  # fmt: skip
        assert code == 0
        (run_dir,) = (tmp_path / f"runs{index}").iterdir()
        weights.append(torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False))
    first, second = (payload["state_dict"] for payload in weights)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
