"""AnomalyScorer and score_loader: invariance, maps, paper mode, persistence."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from medanomaly.engine.scorer import AnomalyScorer
from medanomaly.engine.scoring import NonFiniteScoreError, evaluate_loader, score_loader
from medanomaly.engine.trainer import make_eval_loader
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

TOLERANCE = {"rtol": 1e-5, "atol": 1e-7}


class ImageDataset(Dataset):
    """Random images that follow the medanomaly item contract."""

    def __init__(self, images: torch.Tensor, labels=None, offset: int = 0) -> None:
        self.images = images
        self.labels = labels if labels is not None else [0] * len(images)
        self.offset = offset

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {
            "image": self.images[i],
            "label": self.labels[i],
            "path": f"image-{self.offset + i:03d}.png",
            "index": 0,
        }


def tiny_scorer(name: str, in_channels: int = 1, image_size: int = 16) -> AnomalyScorer:
    """Build a scorer whose batch-norm running statistics are not the defaults."""
    torch.manual_seed(0)
    kwargs = {
        "in_channels": in_channels,
        "image_size": image_size,
        "generator": TINY_GENERATORS[name],
        "discriminator": {"base_channels": 8},
    }
    model = create_model(name, **kwargs)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            batch = torch.rand(8, in_channels, image_size, image_size)
            fake = model.generator(batch)
            model.discriminator(fake[0] if isinstance(fake, tuple) else fake)
    return AnomalyScorer(model, threshold=0.05, meta={"note": "test"}, model_kwargs=kwargs)


def images(count: int, channels: int = 1, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_scores_independent_of_batch_size(name):
    scorer = tiny_scorer(name)
    dataset = ImageDataset(images(15))
    by_size = {
        size: torch.from_numpy(score_loader(scorer, make_eval_loader(dataset, size)).scores)
        for size in (1, 7, 15)
    }
    assert torch.allclose(by_size[1], by_size[15], **TOLERANCE)
    assert torch.allclose(by_size[7], by_size[15], **TOLERANCE)


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_scores_independent_of_order(name):
    scorer = tiny_scorer(name)
    data = images(15)
    order = torch.randperm(15, generator=torch.Generator().manual_seed(3))
    plain = score_loader(scorer, make_eval_loader(ImageDataset(data), 4))
    shuffled = score_loader(scorer, make_eval_loader(ImageDataset(data[order]), 4))
    restored = np.empty_like(shuffled.scores)
    restored[order.numpy()] = shuffled.scores
    assert torch.allclose(torch.from_numpy(restored), torch.from_numpy(plain.scores), **TOLERANCE)


def test_single_image_scored_alone():
    scorer = tiny_scorer("skipganomaly_pp")
    data = images(6)
    batch_scores = scorer(data)
    alone = scorer.score_image(data[2])
    assert alone == pytest.approx(float(batch_scores[2]), rel=1e-5)
    assert scorer(data[2:3]).shape == (1,)


def test_skip_score_formula():
    scorer = tiny_scorer("skip_ganomaly")
    x = images(5)
    scores, residual, reconstruction = scorer.score_with_maps(x)
    with torch.no_grad():
        _, features_real = scorer.model.discriminator(x)
        _, features_fake = scorer.model.discriminator(reconstruction)
    pixel = (reconstruction - x).pow(2).mean(dim=(1, 2, 3))
    feature = (features_fake - features_real).pow(2).mean(dim=1)
    assert torch.allclose(scores, 0.9 * pixel + 0.1 * feature, **TOLERANCE)
    assert residual.shape == (5, 1, 16, 16)
    assert torch.allclose(residual, (reconstruction - x).pow(2).mean(dim=1, keepdim=True))


def test_ganomaly_score_is_latent_distance():
    scorer = tiny_scorer("ganomaly")
    x = images(5)
    scores = scorer(x)
    with torch.no_grad():
        _, z, z_hat = scorer.model.generator(x)
    assert torch.allclose(scores, (z - z_hat).pow(2).mean(dim=1), **TOLERANCE)


def test_rgb_scoring_shapes():
    scorer = tiny_scorer("skipganomaly_pp", in_channels=3, image_size=32)
    scores, residual, reconstruction = scorer.score_with_maps(images(3, channels=3, size=32))
    assert scores.shape == (3,)
    assert residual.shape == (3, 1, 32, 32)
    assert reconstruction.shape == (3, 3, 32, 32)


def test_score_loader_fields_and_maps():
    scorer = tiny_scorer("skipganomaly_pp")
    dataset = ImageDataset(images(5), labels=[0, 1, 0, 1, -1], offset=10)
    result = score_loader(scorer, make_eval_loader(dataset, 2), keep_maps=True)
    assert len(result) == 5
    assert result.labels.tolist() == [0, 1, 0, 1, -1]
    assert result.paths[0] == "image-010.png"
    assert result.indices.tolist() == [0] * 5
    assert result.maps.shape == (5, 1, 16, 16)
    assert np.allclose(result.maps.mean(axis=(1, 2, 3)), result.pixel_errors, rtol=1e-5)
    assert score_loader(scorer, make_eval_loader(dataset, 2)).maps is None


def test_paper_mode_leaves_scorer_unchanged():
    scorer = tiny_scorer("skipganomaly_pp")
    before = {key: value.clone() for key, value in scorer.state_dict().items()}
    loader = make_eval_loader(ImageDataset(images(12)), 4)
    eval_scores = score_loader(scorer, loader).scores

    paper = score_loader(scorer, loader, batchnorm_mode="train")

    after = scorer.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert all(not module.training for module in scorer.modules())
    assert np.array_equal(score_loader(scorer, loader).scores, eval_scores)
    # Batch statistics differ from running statistics, so paper scores must too.
    assert not np.allclose(paper.scores, eval_scores)


def test_paper_mode_depends_on_batch():
    scorer = tiny_scorer("skip_ganomaly")
    dataset = ImageDataset(images(12))
    by_four = score_loader(scorer, make_eval_loader(dataset, 4), batchnorm_mode="train").scores
    by_six = score_loader(scorer, make_eval_loader(dataset, 6), batchnorm_mode="train").scores
    assert not np.allclose(by_four, by_six)


def test_unknown_batchnorm_mode():
    scorer = tiny_scorer("skip_ganomaly")
    with pytest.raises(ValueError, match="batchnorm_mode"):
        score_loader(scorer, make_eval_loader(ImageDataset(images(2)), 2), batchnorm_mode="paper")


def test_non_finite_score_names_image():
    scorer = tiny_scorer("skip_ganomaly")
    data = images(4)
    data[2, 0, 3, 3] = float("nan")
    with pytest.raises(NonFiniteScoreError, match="image-002.png"):
        score_loader(scorer, make_eval_loader(ImageDataset(data), 4))


def test_scorer_stays_in_eval_mode():
    scorer = tiny_scorer("skip_ganomaly")
    scorer.train()
    assert not any(module.training for module in scorer.modules())


def test_scorer_rejects_wrong_input():
    scorer = tiny_scorer("skip_ganomaly")
    with pytest.raises(ValueError, match="channel"):
        scorer(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="16x16"):
        scorer(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="score_image"):
        scorer(torch.rand(1, 16, 16))


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_save_load_round_trip(name, tmp_path):
    scorer = tiny_scorer(name)
    path = scorer.save(tmp_path / "best.pt")
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {
        "format_version",
        "model_name",
        "model_kwargs",
        "state_dict",
        "threshold",
        "meta",
    }
    loaded = AnomalyScorer.load(path, map_location="cpu")
    x = images(4)
    assert torch.equal(loaded(x), scorer(x))
    assert loaded.threshold == scorer.threshold
    assert loaded.meta["note"] == "test"
    assert loaded.model_name == name


def test_load_rejects_foreign_payload(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="missing key"):
        AnomalyScorer.load(path)


def test_scorer_pickles_as_module(tmp_path):
    scorer = tiny_scorer("skipganomaly_pp")
    x = images(3)
    copy = pickle.loads(pickle.dumps(scorer))
    assert torch.equal(copy(x), scorer(x))
    path = tmp_path / "scorer.pt"
    torch.save(scorer, path)
    loaded = torch.load(path, weights_only=False)
    assert torch.equal(loaded(x), scorer(x))


def test_meta_rejects_objects():
    model = create_model("skip_ganomaly", 1, 16, generator={"base_channels": 8})
    with pytest.raises(TypeError, match="plain data"):
        AnomalyScorer(model, threshold=0.1, meta={"bad": object()})


def test_evaluate_loader_metrics():
    scorer = tiny_scorer("skip_ganomaly")
    dataset = ImageDataset(images(6), labels=[0, 0, 0, 1, 1, 1])
    result, metrics = evaluate_loader(scorer, make_eval_loader(dataset, 3))
    flagged = result.scores > scorer.threshold
    assert metrics["tp"] == int(flagged[3:].sum())
    assert metrics["fp"] == int(flagged[:3].sum())
    assert 0.0 <= metrics["auroc"] <= 1.0
