"""Model logging, registry model card and load_scorer, against a real sqlite store."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from medanomaly import tracking
from medanomaly.config import Config, apply_overrides
from medanomaly.engine.scorer import AnomalyScorer
from medanomaly.networks import create_model

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


def tiny_config() -> Config:
    return apply_overrides(
        Config(),
        {
            "model.image_size": 16,
            "model.in_channels": 1,
            "model.generator": TINY_GENERATOR,
            "data.source": "folder",
            "data.path": "/data/healthy",
            "tracking.experiment": "models",
        },
    )


def tiny_scorer(config: Config) -> AnomalyScorer:
    torch.manual_seed(0)
    model = create_model("skipganomaly_pp", in_channels=1, image_size=16, generator=TINY_GENERATOR)
    meta = {"image_size": 16, "in_channels": 1, "preset": None, "resize_mode": "resize",
            "config": config.to_dict()}
    model_kwargs = {"in_channels": 1, "image_size": 16, "generator": TINY_GENERATOR}
    return AnomalyScorer(model, threshold=0.25, meta=meta, model_kwargs=model_kwargs)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A scorer logged and registered as models:/tiny/1 in a store shared by this module."""
    store = tmp_path_factory.mktemp("store")
    config = tiny_config()
    config.tracking.tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
    scorer = tiny_scorer(config)
    metrics = {"auroc": 0.8, "auprc": 0.7, "f1": 0.6, "sensitivity": 0.5, "specificity": 0.95,
               "threshold": 0.25}
    with tracking.start_run(config, "train") as run:
        model_uri = tracking.log_scorer(scorer, in_channels=1, image_size=16)
        card = tracking.build_model_card(
            config, 0.25, metrics, {"train": {"normal": 38}, "val": {"normal": 2}}, run.info.run_id
        )
        version = tracking.register_scorer(model_uri, "tiny", card, tags=metrics)
    return {
        "scorer": scorer,
        "run_id": run.info.run_id,
        "version": version,
        "model_uri": model_uri,
        "tracking_uri": config.tracking.tracking_uri,
    }


@pytest.fixture
def logged(registered, monkeypatch):
    """The shared registered scorer, with MLflow pointed at its store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["tracking_uri"])
    tracking.use_tracking_store()
    return registered


def test_signature_is_float32_tensor(logged, tmp_path):
    info = mlflow.models.get_model_info(logged["model_uri"])
    inputs = info.signature.inputs.to_dict()[0]
    outputs = info.signature.outputs.to_dict()[0]
    assert inputs["tensor-spec"]["dtype"] == "float32"
    assert list(inputs["tensor-spec"]["shape"]) == [-1, 1, 16, 16]
    assert outputs["tensor-spec"]["dtype"] == "float32"
    assert list(outputs["tensor-spec"]["shape"]) == [-1]


def test_input_example_is_synthetic_float32(logged, tmp_path):
    folder = Path(mlflow.artifacts.download_artifacts(logged["model_uri"], dst_path=str(tmp_path / "m")))
    example = json.loads((folder / "input_example.json").read_text())
    array = np.asarray(example["inputs"] if isinstance(example, dict) else example, dtype=np.float32)
    assert array.shape == (2, 1, 16, 16)
    np.testing.assert_array_equal(array, tracking.synthetic_input_example(1, 16))


def test_registered_version_card_and_tags(logged):
    version = mlflow.MlflowClient().get_model_version("tiny", logged["version"].version)
    assert str(version.version) == "1"
    assert "Not a diagnostic device" in version.description
    assert "| auroc | 0.8000 |" in version.description
    assert "train: 38 normal" in version.description
    assert version.tags["auroc"] == "0.8"
    assert version.run_id == logged["run_id"]


def test_registered_model_described(logged):
    registered = mlflow.MlflowClient().get_registered_model("tiny")
    assert "Research triage aid" in registered.description


@pytest.mark.parametrize(
    "reference",
    ["models:/tiny/1", "models:/tiny/latest", "models:/tiny@champion", "runs:/{run_id}/model"],
)
def test_load_scorer_uris(logged, reference):
    mlflow.MlflowClient().set_registered_model_alias("tiny", "champion", "1")
    scorer = tracking.load_scorer(reference.format(run_id=logged["run_id"]))
    images = torch.from_numpy(tracking.synthetic_input_example(1, 16))
    expected = logged["scorer"](images)
    assert scorer.threshold == 0.25
    torch.testing.assert_close(scorer(images), expected)


def test_load_scorer_local_files(logged, tmp_path):
    checkpoint = logged["scorer"].save(tmp_path / "run" / "best.pt")
    model_folder = mlflow.artifacts.download_artifacts("models:/tiny/1", dst_path=str(tmp_path / "mlflow"))
    for reference in (checkpoint, checkpoint.parent, model_folder):
        assert tracking.load_scorer(reference).threshold == 0.25


def test_load_scorer_missing_version(logged):
    with pytest.raises(ValueError, match=r"models:/tiny/7.*not found.*MLFLOW_TRACKING_URI"):
        tracking.load_scorer("models:/tiny/7")


def test_load_scorer_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*models:/NAME/VERSION"):
        tracking.load_scorer(tmp_path / "nothing.pt")


def test_load_scorer_missing_store(tmp_path, monkeypatch):
    database = tmp_path / "elsewhere" / "mlflow.db"
    database.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    with pytest.raises(ValueError, match=r"models:/tiny/1.*no MLflow store at .*mlflow\.db.*MLFLOW_TRACKING_URI"):
        tracking.load_scorer("models:/tiny/1")
    # The failed lookup leaves no empty database behind.
    assert not database.exists()


def test_load_scorer_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="No model found in folder"):
        tracking.load_scorer(tmp_path)


def test_model_card_without_test_split():
    card = tracking.build_model_card(tiny_config(), 0.5, metrics=None)
    assert "sensitivity is unknown" in card
