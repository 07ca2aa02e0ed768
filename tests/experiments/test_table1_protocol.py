"""Paper-protocol ordering and callback, profiles and run configs of the Table 1 pipeline."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset

from medanomaly.config import Config
from medanomaly.engine import AnomalyScorer, make_eval_loader, score_loader
from medanomaly.experiments import table1
from medanomaly.experiments.table1 import (
    PaperProtocolCallback,
    RunSpec,
    build_run_config,
    load_profile,
    normals_first_order,
)
from medanomaly.networks import create_model

REPO_ROOT = Path(__file__).resolve().parents[2]


class LabelledImages(Dataset):
    """Random 16x16 RGB images with given labels, as medanomaly dataset items."""

    def __init__(self, labels):
        self.labels = np.asarray(labels)
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(len(labels), 3, 16, 16, generator=generator)
        # Abnormal images are brighter, so a model that reconstructs means can separate them.
        self.images[self.labels == 1] = self.images[self.labels == 1] * 0.3 + 0.7

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {
            "image": self.images[index],
            "label": int(self.labels[index]),
            "path": f"image{index}",
            "index": 0,
        }


# ---------------------------------------------------------------- ordering


def test_order_puts_normals_first():
    labels = np.array([1, 0, 1, 0, 0, 1, 0])
    order = normals_first_order(labels)
    assert labels[order].tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_order_keeps_dataset_order_within_label():
    order = normals_first_order(np.array([1, 0, 1, 0, 0]))
    assert order.tolist() == [1, 3, 4, 0, 2]


def test_order_is_permutation():
    labels = np.random.default_rng(3).integers(0, 2, 200)
    order = normals_first_order(labels, shuffle_within=True, seed=1)
    assert sorted(order.tolist()) == list(range(200))


def test_order_shuffle_within_keeps_normals_first():
    labels = np.array([0] * 50 + [1] * 30)
    order = normals_first_order(labels, shuffle_within=True, seed=1)
    assert labels[order].tolist() == [0] * 50 + [1] * 30
    assert order[:50].tolist() != list(range(50))


def test_order_shuffle_depends_on_seed_only():
    labels = np.array([0] * 20 + [1] * 20)
    first = normals_first_order(labels, shuffle_within=True, seed=5)
    second = normals_first_order(labels, shuffle_within=True, seed=5)
    assert first.tolist() == second.tolist()


def test_order_rejects_unknown_labels():
    with pytest.raises(ValueError, match="0/1 test labels"):
        normals_first_order(np.array([0, -1, 1]))


# ---------------------------------------------------------------- callback


@pytest.fixture
def scorer():
    torch.manual_seed(0)
    model = create_model("ganomaly", in_channels=3, image_size=16)
    return AnomalyScorer(model, threshold=0.0)


def test_callback_loader_order_and_batches():
    labels = [1, 0] * 50
    callback = PaperProtocolCallback(LabelledImages(labels))
    batches = list(callback.loader)
    assert [len(batch["label"]) for batch in batches] == [64, 36]
    seen = torch.cat([batch["label"] for batch in batches]).tolist()
    assert seen == [0] * 50 + [1] * 50


def test_callback_records_both_aurocs(scorer, tmp_path):
    callback = PaperProtocolCallback(LabelledImages([0] * 40 + [1] * 24), curve_path=tmp_path / "c.json")
    callback.on_epoch_end(1, {}, scorer)
    callback.on_epoch_end(2, {}, scorer)
    assert [entry["epoch"] for entry in callback.curve] == [1, 2]
    assert all(0.0 <= entry["paper_auroc"] <= 1.0 for entry in callback.curve)
    assert all(0.0 <= entry["eval_auroc"] <= 1.0 for entry in callback.curve)


def test_callback_leaves_scorer_in_eval_mode(scorer):
    callback = PaperProtocolCallback(LabelledImages([0] * 10 + [1] * 10))
    before = {key: value.clone() for key, value in scorer.state_dict().items()}
    callback.on_epoch_end(1, {}, scorer)
    assert not any(module.training for module in scorer.modules())
    changed = [key for key, value in scorer.state_dict().items() if not torch.equal(value, before[key])]
    assert changed == []


def test_callback_curve_survives_resume(scorer, tmp_path):
    dataset = LabelledImages([0] * 10 + [1] * 10)
    first = PaperProtocolCallback(dataset, curve_path=tmp_path / "curve.json")
    first.on_epoch_end(1, {}, scorer)
    second = PaperProtocolCallback(dataset, curve_path=tmp_path / "curve.json", resume=True)
    assert [entry["epoch"] for entry in second.curve] == [1]


def test_callback_fresh_run_ignores_old_curve(scorer, tmp_path):
    dataset = LabelledImages([0] * 10 + [1] * 10)
    PaperProtocolCallback(dataset, curve_path=tmp_path / "curve.json").on_epoch_end(1, {}, scorer)
    assert PaperProtocolCallback(dataset, curve_path=tmp_path / "curve.json").curve == []


def test_callback_best_prefers_earlier_epoch_on_tie():
    callback = PaperProtocolCallback(LabelledImages([0, 1]))
    callback.curve = [
        {"epoch": 1, "paper_auroc": 0.7, "eval_auroc": 0.5},
        {"epoch": 2, "paper_auroc": 0.9, "eval_auroc": 0.4},
        {"epoch": 3, "paper_auroc": 0.9, "eval_auroc": 0.6},
    ]
    assert callback.best()["epoch"] == 2


def test_callback_best_without_epochs_raises():
    with pytest.raises(ValueError, match="scored no epoch"):
        PaperProtocolCallback(LabelledImages([0, 1])).best()


def test_paper_scores_depend_on_batch_composition(scorer):
    # Batch norm in training mode: the same image scores differently in another batch.
    dataset = LabelledImages([0] * 64 + [1] * 64)
    shuffled = Subset(dataset, np.random.default_rng(0).permutation(128).tolist())
    ordered = score_loader(scorer, make_eval_loader(dataset, 64), batchnorm_mode="train")
    mixed = score_loader(scorer, make_eval_loader(shuffled, 64), batchnorm_mode="train")
    mixed_scores = dict(zip(mixed.paths, mixed.scores))
    differences = [abs(score - mixed_scores[path]) for path, score in zip(ordered.paths, ordered.scores)]
    assert max(differences) > 1e-6


# ---------------------------------------------------------------- profiles and configs


@pytest.mark.parametrize("name", ["cpu", "full"])
def test_shipped_profiles_load(name):
    profile = load_profile(REPO_ROOT / "configs" / "cifar10" / f"profile_{name}.yaml")
    assert set(profile) <= {"model", "data", "train", "tracking"}


def test_cpu_profile_sizes():
    profile = load_profile(REPO_ROOT / "configs" / "cifar10" / "profile_cpu.yaml")
    data = profile["data"]
    assert data["limit"] * (1 - data["val_fraction"]) == pytest.approx(4500)
    assert data["test_limit"] == 3000


def test_full_profile_uses_all_data():
    profile = load_profile(REPO_ROOT / "configs" / "cifar10" / "profile_full.yaml")
    assert profile["data"]["limit"] is None
    assert profile["data"]["test_limit"] is None
    assert profile["train"]["epochs"] == 15


def test_profile_unknown_key_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ValueError, match="bad.yaml.*epoch"):
        load_profile(path)


def test_profile_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="Profile file not found"):
        load_profile(tmp_path / "none.yaml")


def test_run_config_precedence(tmp_path):
    spec = RunSpec("skip_ganomaly", "ship", 3, "cpu")
    profile = {"data": {"limit": 100, "seed": 99}, "train": {"epochs": 4, "seed": 99}}
    config = build_run_config(
        spec, profile, tmp_path / "cifar", tmp_path / "runs", overrides={"train.epochs": 1}
    )
    assert isinstance(config, Config)
    assert config.model.name == "skip_ganomaly"
    assert config.data.abnormal_class == "ship"
    assert config.data.limit == 100
    # The run's seed wins over the profile's; explicit overrides win over everything.
    assert config.data.seed == 3
    assert config.train.seed == 3
    assert config.train.epochs == 1
    assert config.tracking.experiment == "cifar10-table1"
    assert config.tracking.run_name == spec.key


def test_run_spec_key():
    assert RunSpec("ganomaly", "automobile", 1, "cpu").key == "cpu__ganomaly__automobile__seed1"


def test_canonical_class_accepts_car():
    assert table1.canonical_class("car") == "automobile"


def test_published_table_has_every_class():
    for model, values in table1.PUBLISHED_AUROC.items():
        assert set(values) == set(table1.PUBLISHED_CLASS_ORDER), model
