"""CIFAR-10 readers, protocols and splits on small synthetic releases and on the real data."""

import logging
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from medanomaly.config import DataConfig
from medanomaly.data import CIFAR10_CLASSES, build_splits
from medanomaly.data import cifar10 as cifar10_module
from medanomaly.data.cifar10 import (
    cifar10_splits,
    load_cifar10,
    locate_source,
    resolve_class,
)
from medanomaly.data.splits import find_overlap

TRAIN_PER_CLASS = 10  # 2 per class in each of the 5 training batches
TEST_PER_CLASS = 4


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDANOMALY_CACHE_DIR", str(tmp_path / "cache"))


def write_python_release(root, seed=0):
    """Write a miniature Python release; return (train pixels, train labels, test pixels, test labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    per_batch = TRAIN_PER_CLASS // 5
    batches = {}
    for number in range(1, 6):
        labels = [c for c in range(10) for _ in range(per_batch)]
        batches[f"data_batch_{number}"] = labels
    batches["test_batch"] = [c for c in range(10) for _ in range(TEST_PER_CLASS)]
    pixels = {}
    for name, labels in batches.items():
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        pixels[name] = data
        with open(folder / name, "wb") as stream:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, stream)
    meta = {b"label_names": [name.encode() for name in CIFAR10_CLASSES]}
    with open(folder / "batches.meta", "wb") as stream:
        pickle.dump(meta, stream)
    train = np.concatenate([pixels[f"data_batch_{n}"] for n in range(1, 6)])
    train_labels = np.concatenate([batches[f"data_batch_{n}"] for n in range(1, 6)])
    return train, train_labels, pixels["test_batch"], np.asarray(batches["test_batch"])


def write_image_tree(root, train_per_class=3, test_per_class=2):
    """Write train/<class>/*.png and test/<class>/*.png with 32x32 RGB images."""
    rng = np.random.default_rng(1)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name in CIFAR10_CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for number in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{number:04d}.png")


@pytest.fixture
def python_release(tmp_path):
    return tmp_path / "cifar-10-batches-py", write_python_release(tmp_path)


def identifiers(splits):
    return {name: getattr(splits, name).identifiers() for name in ("train", "val", "test")}


# ---------------------------------------------------------------- class names


def test_class_aliases():
    assert resolve_class("car") == CIFAR10_CLASSES.index("automobile")
    assert resolve_class("plane") == CIFAR10_CLASSES.index("airplane")
    assert resolve_class("Ship") == CIFAR10_CLASSES.index("ship")
    assert resolve_class(3) == 3


def test_unknown_class_lists_names():
    with pytest.raises(ValueError) as error:
        resolve_class("giraffe")
    for name in CIFAR10_CLASSES:
        assert name in str(error.value)


# ---------------------------------------------------------------- Python release


def test_leave_one_out_counts(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "car", val_fraction=0.1)
    counts = splits.info["counts"]
    assert counts["train"] == {"normal": 81}
    assert counts["val"] == {"normal": 9}
    assert counts["test"] == {"normal": 9 * TEST_PER_CLASS, "abnormal": TRAIN_PER_CLASS + TEST_PER_CLASS}
    assert splits.info["abnormal_class"] == "automobile"


def test_abnormal_class_not_in_training(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "car", val_fraction=0.1)
    automobile = CIFAR10_CLASSES.index("automobile")
    assert automobile not in set(splits.train.classes())
    assert automobile not in set(splits.val.classes())
    abnormal = splits.test.labels == 1
    assert set(splits.test.classes()[abnormal]) == {automobile}


def test_one_vs_rest_counts(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, protocol="one_vs_rest", normal_class="ship", val_fraction=0.1)
    counts = splits.info["counts"]
    assert counts["train"] == {"normal": 9}
    assert counts["val"] == {"normal": 1}
    assert counts["test"] == {"normal": TEST_PER_CLASS, "abnormal": 9 * TEST_PER_CLASS}
    assert set(splits.train.classes()) == {CIFAR10_CLASSES.index("ship")}


def test_protocol_needs_its_class(python_release):
    path, _ = python_release
    with pytest.raises(ValueError, match="abnormal_class"):
        cifar10_splits(path)
    with pytest.raises(ValueError, match="normal_class"):
        cifar10_splits(path, protocol="one_vs_rest")
    with pytest.raises(ValueError, match="protocol"):
        cifar10_splits(path, "car", protocol="paper")


def test_no_image_in_two_splits(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "cat", val_fraction=0.2)
    assert find_overlap(identifiers(splits)) == {}


def test_identifiers_are_unique(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "cat", val_fraction=0.0)
    everything = splits.train.identifiers() + splits.test.identifiers()
    assert len(set(everything)) == 10 * (TRAIN_PER_CLASS + TEST_PER_CLASS)


def test_validation_split_is_stratified(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "frog", val_fraction=0.2)
    counts = np.bincount(splits.val.classes(), minlength=10)
    frog = CIFAR10_CLASSES.index("frog")
    assert counts[frog] == 0
    assert set(np.delete(counts, frog)) == {2}


def test_zero_val_fraction_gives_empty_val(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "frog", val_fraction=0.0)
    assert len(splits.val) == 0
    assert len(splits.train) == 9 * TRAIN_PER_CLASS


def test_split_depends_on_seed_only(python_release):
    path, _ = python_release
    first = cifar10_splits(path, "dog", val_fraction=0.2, seed=3).val.identifiers()
    again = cifar10_splits(path, "dog", val_fraction=0.2, seed=3).val.identifiers()
    other = cifar10_splits(path, "dog", val_fraction=0.2, seed=4).val.identifiers()
    assert first == again
    assert first != other


def test_limit_keeps_class_mix(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "deer", limit=45, val_fraction=0.0)
    counts = np.bincount(splits.train.classes(), minlength=10)
    assert len(splits.train) == 45
    assert set(np.delete(counts, CIFAR10_CLASSES.index("deer"))) == {5}


def test_test_limit_keeps_mix(python_release):
    path, _ = python_release
    # 36 normal (4 per class) + 14 abnormal (10 train + 4 test); half of each stratum.
    splits = cifar10_splits(path, "deer", test_limit=25, val_fraction=0.0)
    assert len(splits.test) == 25
    assert splits.info["counts"]["test"] == {"normal": 18, "abnormal": 7}
    per_class = np.bincount(splits.test.classes(), minlength=10)
    assert set(np.delete(per_class, CIFAR10_CLASSES.index("deer"))) == {2}


def test_item_contract_and_pixels(python_release):
    path, (train_pixels, train_labels, _, _) = python_release
    splits = cifar10_splits(path, "truck", val_fraction=0.0)
    item = splits.train[0]
    assert item["image"].dtype == torch.float32
    assert item["image"].shape == (3, 32, 32)
    assert item["label"] == 0
    assert item["path"].endswith("data_batch_1")
    assert item["index"] == 0
    expected = train_pixels[0].reshape(3, 32, 32) / 255.0
    assert np.allclose(item["image"].numpy(), expected, atol=1e-6)


def test_batch_fetch_matches_single_items(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "truck", image_size=48, in_channels=1, val_fraction=0.0)
    batch = splits.test.__getitems__([3, 0, 7])
    for position, item in zip([3, 0, 7], batch):
        single = splits.test[position]
        assert torch.allclose(item["image"], single["image"], atol=1e-6)
        assert item["path"] == single["path"]
        assert item["label"] == single["label"]


def test_dataloader_batch_shapes(python_release):
    path, _ = python_release
    splits = cifar10_splits(path, "truck", image_size=64, in_channels=1, val_fraction=0.0)
    batch = next(iter(DataLoader(splits.test, batch_size=8, shuffle=True)))
    assert batch["image"].shape == (8, 1, 64, 64)
    assert batch["image"].dtype == torch.float32
    assert batch["label"].shape == (8,)
    assert len(batch["path"]) == 8
    assert batch["image"].min().item() >= 0.0
    assert batch["image"].max().item() <= 1.0


def test_python_release_archive(tmp_path):
    write_python_release(tmp_path / "extracted")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as stream:
        stream.add(tmp_path / "extracted" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    splits = cifar10_splits(archive, "bird", val_fraction=0.0)
    assert len(splits.train) == 9 * TRAIN_PER_CLASS
    assert "::cifar-10-batches-py/" in splits.test[0]["path"]


def test_incomplete_release_names_missing_files(tmp_path):
    write_python_release(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(ValueError, match="test_batch"):
        load_cifar10(tmp_path)


# ---------------------------------------------------------------- image tree


def test_image_tree_counts(tmp_path):
    write_image_tree(tmp_path / "cifar10-jpg")
    splits = cifar10_splits(tmp_path, "car", val_fraction=0.0)
    assert splits.info["layout"] == "images"
    assert splits.info["counts"]["train"] == {"normal": 27}
    assert splits.info["counts"]["test"] == {"normal": 18, "abnormal": 5}
    assert splits.train[0]["path"].endswith(os.path.join("train", "airplane", "0000.png"))


def test_image_tree_archive(tmp_path):
    write_image_tree(tmp_path / "tree")
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as stream:
        stream.add(tmp_path / "tree", arcname="cifar10-jpg")
    from_archive = cifar10_splits(archive, "car", val_fraction=0.0)
    from_folder = cifar10_splits(tmp_path / "tree", "car", val_fraction=0.0)
    # Test items: 3 training automobiles, then the test images in class order.
    assert torch.equal(from_archive.test[5]["image"], from_folder.test[5]["image"])
    assert from_archive.test[5]["path"].endswith("::cifar10-jpg/test/automobile/0000.png")


def test_image_tree_missing_class(tmp_path):
    write_image_tree(tmp_path)
    for file in (tmp_path / "train" / "horse").iterdir():
        file.unlink()
    (tmp_path / "train" / "horse").rmdir()
    (tmp_path / "test" / "horse").rename(tmp_path / "test" / "pony")
    with pytest.raises(ValueError, match="horse"):
        load_cifar10(tmp_path)


def test_unknown_folder_lists_expected_files(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ValueError) as error:
        locate_source(tmp_path)
    assert "data_batch_1" in str(error.value)
    assert "train/<class>" in str(error.value)


def test_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_cifar10(tmp_path / "absent")


# ---------------------------------------------------------------- cache


def test_cache_is_written_and_reused(python_release, tmp_path, monkeypatch, caplog):
    path, _ = python_release
    first = load_cifar10(path)
    assert list((tmp_path / "cache").glob("cifar10-*.npz"))

    def fail(source):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(cifar10_module, "_decode_source", fail)
    with caplog.at_level(logging.INFO, logger="medanomaly.data.cifar10"):
        second = load_cifar10(path)
    assert np.array_equal(first.images, second.images)
    assert "from cache" in caplog.text


def test_cache_invalidated_when_source_changes(python_release):
    path, _ = python_release
    first = load_cifar10(path)
    batch = path / "data_batch_1"
    with open(batch, "rb") as stream:
        content = pickle.load(stream, encoding="bytes")
    content[b"data"] = np.zeros_like(content[b"data"])
    with open(batch, "wb") as stream:
        pickle.dump(content, stream)
    os.utime(batch, ns=(1, 1))
    second = load_cifar10(path)
    assert not np.array_equal(first.images, second.images)
    assert second.images[:20].max() == 0


def test_cache_can_be_disabled(python_release, tmp_path):
    path, _ = python_release
    load_cifar10(path, cache=False)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_build_splits_from_config(python_release):
    path, _ = python_release
    cfg = DataConfig(source="cifar10", path=str(path), abnormal_class="plane", val_fraction=0.1)
    splits = build_splits(cfg, image_size=16, in_channels=3)
    assert len(splits.train) == 81
    assert splits.train[0]["image"].shape == (3, 16, 16)


# ---------------------------------------------------------------- real data


@pytest.fixture(scope="session")
def real_cifar10(cifar10_tarball):
    """Decode the real tarball once per session.

    The decoded-array cache is used only when MEDANOMALY_CACHE_DIR names a folder,
    so a plain test run writes nothing outside its temporary folders.
    """
    return load_cifar10(cifar10_tarball, cache=bool(os.environ.get("MEDANOMALY_CACHE_DIR")))


def test_real_data_decodes_all_images(real_cifar10):
    assert real_cifar10.images.shape == (60000, 3, 32, 32)
    assert np.bincount(real_cifar10.classes[real_cifar10.splits == 0]).tolist() == [5000] * 10
    assert np.bincount(real_cifar10.classes[real_cifar10.splits == 1]).tolist() == [1000] * 10


@pytest.mark.parametrize("abnormal", list(CIFAR10_CLASSES))
def test_real_leave_one_out_counts(real_cifar10, abnormal):
    splits = cifar10_splits(real_cifar10, abnormal)
    counts = splits.info["counts"]
    assert counts["train"]["normal"] + counts["val"]["normal"] == 45000
    assert counts["val"] == {"normal": 2250}
    assert counts["test"] == {"normal": 9000, "abnormal": 6000}
    assert splits.info["test_classes"][abnormal] == 6000


def test_real_one_vs_rest_counts(real_cifar10):
    splits = cifar10_splits(real_cifar10, protocol="one_vs_rest", normal_class="car")
    counts = splits.info["counts"]
    assert counts["train"]["normal"] + counts["val"]["normal"] == 5000
    assert counts["test"] == {"normal": 1000, "abnormal": 9000}


def test_real_splits_are_disjoint(real_cifar10):
    splits = cifar10_splits(real_cifar10, "car")
    ids = identifiers(splits)
    assert find_overlap(ids) == {}
    assert len(set(ids["train"]) | set(ids["val"]) | set(ids["test"])) == 60000


def test_real_subsample_counts(real_cifar10):
    splits = cifar10_splits(real_cifar10, "ship", limit=4500, test_limit=1500)
    counts = splits.info["counts"]
    assert counts["train"]["normal"] + counts["val"]["normal"] == 4500
    assert counts["test"] == {"normal": 900, "abnormal": 600}
    per_class = np.bincount(np.concatenate([splits.train.classes(), splits.val.classes()]), minlength=10)
    assert sorted(set(per_class)) == [0, 500]


def test_one_vs_rest_from_config(python_release):
    path, _ = python_release
    cfg = DataConfig(
        source="cifar10", path=str(path), protocol="one_vs_rest", normal_class="car", val_fraction=0.0
    )
    splits = build_splits(cfg, image_size=32, in_channels=3)
    assert splits.info["normal_class"] == "automobile"
    assert len(splits.train) == TRAIN_PER_CLASS
