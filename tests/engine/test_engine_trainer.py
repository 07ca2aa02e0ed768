"""Trainer: short real fits, checkpoints, resume, selection and guards."""

import json
import logging

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from medanomaly.config import Config, ModelConfig, TrainConfig
from medanomaly.engine.checkpoint import load_checkpoint
from medanomaly.engine.scorer import AnomalyScorer
from medanomaly.engine.scoring import score_loader
from medanomaly.engine.trainer import (
    NonFiniteLossError,
    Trainer,
    make_eval_loader,
    make_train_loader,
)
from medanomaly.networks import create_model

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


class ImageDataset(Dataset):
    """Smooth random images that follow the medanomaly item contract."""

    def __init__(self, count: int, seed: int, labels=None, fill=None) -> None:
        generator = torch.Generator().manual_seed(seed)
        coarse = torch.rand(count, 1, 4, 4, generator=generator)
        self.images = torch.nn.functional.interpolate(coarse, size=16, mode="bilinear")
        if fill is not None:
            self.images.fill_(fill)
        self.labels = labels if labels is not None else [0] * count

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": self.images[i],
            "label": self.labels[i],
            "path": f"n{i:02d}.png",
            "index": 0,
        }


def make_config(name: str = "skip_ganomaly", **train) -> Config:
    train.setdefault("epochs", 2)
    train.setdefault("batch_size", 8)
    train.setdefault("deterministic", True)
    train.setdefault("device", "cpu")
    return Config(
        model=ModelConfig(
            name=name,
            image_size=16,
            in_channels=1,
            generator=TINY_GENERATORS[name],
            discriminator={"base_channels": 8},
        ),
        train=TrainConfig(**train),
    )


def build_model(config: Config, seed: int = 0):
    torch.manual_seed(seed)
    model = config.model
    return create_model(
        model.name,
        model.in_channels,
        model.image_size,
        generator=model.generator,
        discriminator=model.discriminator,
    )


def loaders(config: Config, train_count: int = 32, val_count: int = 24, val_labels=None):
    train = make_train_loader(ImageDataset(train_count, seed=1), config.train.batch_size, seed=7)
    val = make_eval_loader(ImageDataset(val_count, seed=2, labels=val_labels), 8)
    return train, val


class StopAfter:
    """Callback that interrupts training after an epoch, as a crash would."""

    class Interrupted(Exception):
        pass

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch, metrics, scorer):
        if epoch == self.epoch:
            raise self.Interrupted(f"stopped after epoch {epoch}")


class Recorder:
    def __init__(self) -> None:
        self.epochs = []
        self.results = []

    def on_epoch_end(self, epoch, metrics, scorer):
        self.epochs.append((epoch, dict(metrics), scorer))

    def on_fit_end(self, result):
        self.results.append(result)


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_short_fit(name, tmp_path):
    config = make_config(name)
    train, val = loaders(config)
    result = Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")

    assert [row["epoch"] for row in result.history] == [1, 2]
    for row in result.history:
        for key in ("loss_g", "loss_d", "val_rec_error", "val_score_mean", "threshold"):
            assert np.isfinite(row[key]), key
    assert result.best_epoch == min(result.history, key=lambda row: row["val_rec_error"])["epoch"]
    for file_name in ("last.pt", "best.pt", "config.yaml", "history.json"):
        assert (result.run_dir / file_name).is_file(), file_name
    assert len(json.loads((result.run_dir / "history.json").read_text())) == 2

    loaded = AnomalyScorer.load(result.run_dir / "best.pt")
    x = val.dataset.images[:5]
    assert torch.allclose(loaded(x), result.scorer(x), rtol=1e-6, atol=0)
    assert loaded.meta["epoch"] == result.best_epoch
    assert loaded.meta["model_name"] == name
    assert loaded.meta["in_channels"] == 1
    assert loaded.meta["image_size"] == 16
    assert loaded.meta["target_fpr"] == 0.05
    assert loaded.meta["resize_mode"] == "resize"
    assert "preset" in loaded.meta
    assert loaded.meta["config"]["model"]["name"] == name
    assert set(loaded.meta["score_stats"]) >= {"mean", "std", "q50", "q95"}


def test_threshold_is_val_quantile(tmp_path):
    config = make_config(target_fpr=0.1)
    train, val = loaders(config)
    result = Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")
    val_scores = score_loader(result.scorer, val).scores
    assert result.scorer.threshold == pytest.approx(np.quantile(val_scores, 0.9), rel=1e-9)
    assert result.scorer.meta["score_stats"]["mean"] == pytest.approx(val_scores.mean(), rel=1e-9)


def test_resume_matches_uninterrupted(tmp_path):
    config = make_config(epochs=3)
    train, val = loaders(config)
    full = Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "full")
    full_state = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]

    train, val = loaders(config)
    with pytest.raises(StopAfter.Interrupted):
        Trainer(config, callbacks=[StopAfter(2)]).fit(
            build_model(config), train, val, run_dir=tmp_path / "resumed"
        )
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 2

    # A new process would build a fresh model and fresh loaders.
    train, val = loaders(config)
    resumed = Trainer(config).fit(
        build_model(config, seed=123), train, val, run_dir=tmp_path / "resumed", resume=True
    )
    resumed_state = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["model"]

    for key, value in full_state.items():
        assert torch.equal(value, resumed_state[key]), key
    assert [row["loss_g"] for row in resumed.history] == [row["loss_g"] for row in full.history]
    assert resumed.best_epoch == full.best_epoch
    assert resumed.scorer.threshold == full.scorer.threshold


def test_resume_when_already_complete(tmp_path):
    config = make_config()
    train, val = loaders(config)
    first = Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")
    again = Trainer(config).fit(
        build_model(config), train, val, run_dir=tmp_path / "run", resume=True
    )
    assert again.best_epoch == first.best_epoch
    assert len(again.history) == 2


def test_existing_run_needs_resume(tmp_path):
    config = make_config(epochs=1)
    train, val = loaders(config)
    Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")
    with pytest.raises(FileExistsError, match="resume"):
        Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")


def test_resume_without_checkpoint(tmp_path):
    config = make_config()
    train, val = loaders(config)
    with pytest.raises(FileNotFoundError, match="last.pt"):
        Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run", resume=True)


def test_non_finite_loss_names_epoch_step(tmp_path):
    config = make_config()
    train = make_train_loader(ImageDataset(16, seed=1, fill=float("nan")), 8, seed=0)
    val = make_eval_loader(ImageDataset(8, seed=2), 8)
    with pytest.raises(NonFiniteLossError) as caught:
        Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")
    assert caught.value.epoch == 1
    assert caught.value.step == 1
    assert caught.value.loss_name in str(caught.value)
    assert "epoch 1, step 1" in str(caught.value)


def test_abnormal_validation_image_rejected(tmp_path):
    config = make_config(epochs=1)
    labels = [0] * 23 + [1]
    train, val = loaders(config, val_labels=labels)
    with pytest.raises(ValueError, match="n23.png"):
        Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")


def test_callbacks_called_each_epoch(tmp_path):
    config = make_config()
    train, val = loaders(config)
    recorder = Recorder()
    result = Trainer(config, callbacks=[recorder]).fit(
        build_model(config), train, val, run_dir=tmp_path / "run"
    )
    assert [epoch for epoch, _, _ in recorder.epochs] == [1, 2]
    metrics = recorder.epochs[0][1]
    assert {"loss_g", "loss_d", "val_rec_error", "threshold", "best_epoch"} <= set(metrics)
    assert isinstance(recorder.epochs[0][2], AnomalyScorer)
    assert recorder.epochs[0][2].threshold == metrics["threshold"]
    assert recorder.results == [result]


def test_selection_on_mean_score(tmp_path):
    config = make_config(epochs=3)
    train, val = loaders(config)
    trainer = Trainer(config, selection_metric="val_score_mean")
    result = trainer.fit(build_model(config), train, val, run_dir=tmp_path / "run")
    best_row = min(result.history, key=lambda row: row["val_score_mean"])
    assert result.best_epoch == best_row["epoch"]
    assert result.scorer.meta["selection_metric"] == "val_score_mean"


def test_model_must_match_config(tmp_path):
    config = make_config()
    train, val = loaders(config)
    wider = create_model("skip_ganomaly", 1, 16, generator={"base_channels": 16})
    with pytest.raises(ValueError, match="config.model"):
        Trainer(config).fit(wider, train, val, run_dir=tmp_path / "run")
    other = create_model("ganomaly", 1, 16, generator={"base_channels": 8})
    with pytest.raises(ValueError, match="differs"):
        Trainer(config).fit(other, train, val, run_dir=tmp_path / "run")


def test_invalid_train_config():
    with pytest.raises(ValueError, match="target_fpr"):
        Trainer(make_config(target_fpr=0.0))
    with pytest.raises(ValueError, match="epochs"):
        Trainer(make_config(epochs=0))
    with pytest.raises(ValueError, match="selection_metric"):
        Trainer(make_config(), selection_metric="test_auroc")


def test_train_loader_drop_last_rule():
    assert make_train_loader(ImageDataset(20, seed=0), 8).drop_last
    assert not make_train_loader(ImageDataset(8, seed=0), 8).drop_last
    assert not make_train_loader(ImageDataset(5, seed=0), 8).drop_last


def test_loader_order_follows_seed():
    def first_batch_paths(seed):
        loader = make_train_loader(ImageDataset(20, seed=0), 4, seed=seed)
        return next(iter(loader))["path"]

    assert first_batch_paths(3) == first_batch_paths(3)
    assert first_batch_paths(3) != first_batch_paths(4)


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_follows_config(channels_last, tmp_path):
    config = make_config(epochs=1, channels_last=channels_last)
    train, val = loaders(config)
    result = Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")
    # 1x1 kernels and single-input-channel kernels are contiguous in both layouts.
    weights = [
        param
        for param in result.scorer.parameters()
        if param.ndim == 4 and param.shape[1] > 1 and param.shape[2] * param.shape[3] > 1
    ]
    assert weights
    layouts = {param.is_contiguous(memory_format=torch.channels_last) for param in weights}
    assert layouts == {channels_last}


def test_fit_restores_determinism_setting(tmp_path):
    config = make_config(epochs=1, deterministic=True)
    train, val = loaders(config)
    before = torch.are_deterministic_algorithms_enabled()
    Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")
    assert torch.are_deterministic_algorithms_enabled() == before


def test_logs_device_and_split_sizes(tmp_path, caplog):
    config = make_config(epochs=1)
    train, val = loaders(config)
    with caplog.at_level(logging.INFO, logger="medanomaly.engine.trainer"):
        Trainer(config).fit(build_model(config), train, val, run_dir=tmp_path / "run")
    assert "on cpu" in caplog.text
    assert "32 training and 24 validation images" in caplog.text


def test_build_model_follows_seed():
    from medanomaly.engine import build_model as build_seeded_model

    first = build_seeded_model(make_config(seed=5)).state_dict()
    torch.manual_seed(123)  # the global generator's state before the call must not matter
    second = build_seeded_model(make_config(seed=5)).state_dict()
    other = build_seeded_model(make_config(seed=6)).state_dict()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert any(not torch.equal(first[key], other[key]) for key in first)
