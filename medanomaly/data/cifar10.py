"""CIFAR-10 anomaly detection splits.

Two on-disk forms are read, each as a folder or as a tar archive (``.tar`` or
``.tar.gz``, read in place):

- the Python release ``cifar-10-batches-py/`` with ``data_batch_1`` ..
  ``data_batch_5``, ``test_batch`` and ``batches.meta``,
- an image tree ``train/<class>/*`` and ``test/<class>/*`` (PNG, JPEG, ...), for
  example a JPEG re-encoding of CIFAR-10, possibly inside a ``cifar10-jpg/`` folder.

Decoding 60,000 JPEGs takes seconds, so decoded uint8 arrays are cached in an
``.npz`` file (see :func:`cache_dir`) keyed by the source path, size and
modification time.

Protocols:

- ``leave_one_out`` (Akcay et al., GANomaly 2018 and Skip-GANomaly 2019): class k is
  abnormal. Train on the 45,000 training images of the other nine classes. Test on
  their 9,000 test images (normal) plus the 5,000 training and 1,000 test images
  of class k (abnormal), 15,000 in all.
- ``one_vs_rest``: class k is normal. Train on its 5,000 training images. Test on
  the 10,000 test images, of which class k's 1,000 are normal.

Images are kept as one uint8 tensor (N, 3, 32, 32) and converted to the model
input per item or per batch (``__getitems__``), which keeps the data path far
faster than the networks.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from medanomaly.data.splits import (
    DataSplits,
    check_fraction,
    label_counts,
    stratified_holdout,
    stratified_sample,
)
from medanomaly.data.transforms import (
    IMAGE_SUFFIXES,
    check_model_shape,
    check_resize_mode,
    convert_channels,
    resize_batch,
    single_thread,
)

logger = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Short names used in the Skip-GANomaly++ results table and in torchvision docs.
CLASS_ALIASES = {"car": "automobile", "plane": "airplane"}

PROTOCOLS = ("leave_one_out", "one_vs_rest")

TRAIN, TEST = 0, 1
SPLIT_NAMES = ("train", "test")

PYTHON_FOLDER = "cifar-10-batches-py"
PYTHON_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
IMAGE_TREE_FOLDER = "cifar10-jpg"
ARCHIVE_NAMES = ("cifar10-jpg.tar.gz", "cifar-10-python.tar.gz")

EXPECTED_LAYOUT = (
    "a CIFAR-10 source: the Python release folder 'cifar-10-batches-py' (data_batch_1 "
    "to data_batch_5, test_batch, batches.meta), an image tree 'train/<class>/*' and "
    "'test/<class>/*' with the ten class folders (optionally inside 'cifar10-jpg/'), "
    f"or a tar archive of either ({', '.join(ARCHIVE_NAMES)})"
)

# Bump when the cache layout changes so that old cache files are ignored.
_CACHE_VERSION = 1
_IMAGE_SHAPE = (3, 32, 32)


def resolve_class(name: str | int) -> int:
    """Return the class index (0-9) for a CIFAR-10 class name, alias or index.

    Names are case-insensitive. "car" means "automobile" and "plane" means "airplane".
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if 0 <= int(name) < len(CIFAR10_CLASSES):
            return int(name)
    elif isinstance(name, str):
        key = name.strip().lower()
        key = CLASS_ALIASES.get(key, key)
        if key in CIFAR10_CLASSES:
            return CIFAR10_CLASSES.index(key)
        if key.isdigit() and int(key) < len(CIFAR10_CLASSES):
            return int(key)
    raise ValueError(
        f"Unknown CIFAR-10 class {name!r}; use one of {', '.join(CIFAR10_CLASSES)} "
        f"(aliases: car, plane) or an index 0-9."
    )


@dataclass
class Cifar10Arrays:
    """All 60,000 CIFAR-10 images decoded, in one array.

    Attributes:
        images: uint8 array (60000, 3, 32, 32), training images first.
        classes: int64 class index per image.
        splits: int8 source split per image, 0 = train, 1 = test.
        files: source file of each image, relative to ``source``.
        rows: row inside that file (Python release) or 0 (image files).
        source: the folder or archive read.
        layout: "python" or "images".
    """

    images: np.ndarray
    classes: np.ndarray
    splits: np.ndarray
    files: np.ndarray
    rows: np.ndarray
    source: str
    layout: str

    def __post_init__(self) -> None:
        # Computed once: path_of runs for every item served.
        if _is_archive_path(Path(self.source)):
            self._prefix = f"{self.source}::"
        else:
            self._prefix = self.source.rstrip(os.sep) + os.sep

    def path_of(self, position: int) -> str:
        """Return the source path of one image; archive members read ``archive::member``."""
        return self._prefix + str(self.files[position])


# ---------------------------------------------------------------- locating the source


def _is_archive_path(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar", ".tar.gz", ".tgz"))


def _is_image_tree(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def locate_source(path: str | Path) -> Path:
    """Return the folder or archive inside ``path`` that contains CIFAR-10.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` contains no known layout. The message lists the expected files.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"CIFAR-10 path not found: {path}. Expected {EXPECTED_LAYOUT}.")
    if path.is_file():
        if tarfile.is_tarfile(path):
            return path.resolve()
        raise ValueError(f"{path} is not a tar archive. Expected {EXPECTED_LAYOUT}.")

    candidates = [
        path,
        path / PYTHON_FOLDER,
        path / IMAGE_TREE_FOLDER,
    ]
    for folder in candidates:
        if (folder / "data_batch_1").is_file() or _is_image_tree(folder):
            return folder.resolve()
    for name in ARCHIVE_NAMES:
        if (path / name).is_file():
            return (path / name).resolve()
    found = sorted(p.name for p in path.iterdir())[:20]
    raise ValueError(f"No CIFAR-10 data in {path} (contains: {found}). Expected {EXPECTED_LAYOUT}.")


# ---------------------------------------------------------------- cache


def cache_dir() -> Path | None:
    """Return a writable folder for decoded-data caches, or None when there is none.

    Order: ``$MEDANOMALY_CACHE_DIR``, ``$XDG_CACHE_HOME/medanomaly``,
    ``~/.cache/medanomaly``.
    """
    override = os.environ.get("MEDANOMALY_CACHE_DIR")
    if override:
        candidates = [Path(override)]
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        candidates = [Path(base) / "medanomaly"]
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    return None


def _source_fingerprint(source: Path) -> list[Any]:
    """Describe the files behind ``source`` by relative path, size and mtime."""
    if source.is_file():
        stat = source.stat()
        return [[source.name, stat.st_size, stat.st_mtime_ns]]
    entries = []
    for folder, _, names in os.walk(source):
        for name in names:
            full = os.path.join(folder, name)
            stat = os.stat(full)
            entries.append([os.path.relpath(full, source), stat.st_size, stat.st_mtime_ns])
    entries.sort()
    return entries


def _cache_path(source: Path) -> Path | None:
    """Return the cache file for ``source``: in the cache folder, else next to the data."""
    key = json.dumps([_CACHE_VERSION, str(source), _source_fingerprint(source)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    name = f"cifar10-{digest}.npz"
    folder = cache_dir()
    if folder is None:
        folder = source.parent
        if not os.access(folder, os.W_OK):
            return None
    return folder / name


def _read_cache(cache_file: Path, source: Path) -> Cifar10Arrays | None:
    try:
        with np.load(cache_file, allow_pickle=False) as stored:
            arrays = Cifar10Arrays(
                images=stored["images"],
                classes=stored["classes"],
                splits=stored["splits"],
                files=stored["files"],
                rows=stored["rows"],
                source=str(source),
                layout=str(stored["layout"]),
            )
    except (OSError, KeyError, ValueError) as err:
        logger.warning("Ignoring unreadable CIFAR-10 cache %s (%s); decoding again.", cache_file, err)
        return None
    if arrays.images.shape[1:] != _IMAGE_SHAPE or arrays.images.dtype != np.uint8:
        logger.warning("Ignoring CIFAR-10 cache %s with unexpected shape; decoding again.", cache_file)
        return None
    return arrays


def _write_cache(cache_file: Path, arrays: Cifar10Arrays) -> None:
    # Write to a temporary file first so that concurrent runs never read half a cache.
    try:
        handle, temporary = tempfile.mkstemp(dir=cache_file.parent, suffix=".npz.tmp")
        with os.fdopen(handle, "wb") as stream:
            np.savez(
                stream,
                images=arrays.images,
                classes=arrays.classes,
                splits=arrays.splits,
                files=arrays.files,
                rows=arrays.rows,
                layout=np.array(arrays.layout),
            )
        os.replace(temporary, cache_file)
        logger.info("Cached decoded CIFAR-10 in %s", cache_file)
    except OSError as err:
        logger.warning("Could not write CIFAR-10 cache %s: %s", cache_file, err)


# ---------------------------------------------------------------- decoding


def _natural_key(name: str) -> list[Any]:
    """Sort key that orders "img2" before "img10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _decode_image(data: bytes, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB"))
    except OSError as err:
        raise ValueError(f"Cannot decode CIFAR-10 image {name}: {err}. Replace the file.") from err
    if array.shape != (32, 32, 3):
        raise ValueError(f"CIFAR-10 image {name} has shape {array.shape}; expected 32x32 RGB.")
    return array.transpose(2, 0, 1)


def _iter_folder(source: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (relative path, bytes) for every file under ``source``."""
    for folder, _, names in os.walk(source):
        for name in names:
            full = Path(folder) / name
            yield str(full.relative_to(source)).replace(os.sep, "/"), full.read_bytes()


def _iter_archive(source: Path) -> Iterator[tuple[str, bytes]]:
    """Yield (member name, bytes) in archive order; a gzip stream is read once."""
    with tarfile.open(source, "r:*") as archive:
        for member in archive:
            if member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    yield member.name, handle.read()


def _unpickle(data: bytes, name: str) -> dict:
    try:
        return pickle.loads(data, encoding="bytes")  # noqa: S301 - CIFAR-10's own format
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ValueError(f"Cannot read CIFAR-10 batch {name}: {err}. Replace the file.") from err


def _python_arrays(batches: dict[str, tuple[str, bytes]], source: Path) -> Cifar10Arrays:
    """Build arrays from the Python release; ``batches`` maps file name to (member, bytes)."""
    missing = [name for name in PYTHON_FILES if name not in batches]
    if missing:
        raise ValueError(
            f"Incomplete CIFAR-10 Python release in {source}: missing {missing}. "
            f"Expected {', '.join(PYTHON_FILES)}."
        )
    meta = _unpickle(batches["batches.meta"][1], "batches.meta")
    names = tuple(n.decode() if isinstance(n, bytes) else n for n in meta.get(b"label_names", []))
    if names != CIFAR10_CLASSES:
        raise ValueError(
            f"{source}: batches.meta lists classes {names}; expected {CIFAR10_CLASSES}."
        )

    images, classes, splits, files, rows = [], [], [], [], []
    for name in PYTHON_FILES[:-1]:
        member, data = batches[name]
        batch = _unpickle(data, member)
        pixels = np.asarray(batch.get(b"data"), dtype=np.uint8)
        labels = np.asarray(batch.get(b"labels"), dtype=np.int64)
        if pixels.ndim != 2 or pixels.shape[1] != 3072 or len(labels) != len(pixels):
            raise ValueError(
                f"{member}: expected 'data' of shape (N, 3072) and N labels, got "
                f"{pixels.shape} and {len(labels)} labels."
            )
        # Each row stores the 1024 red, then green, then blue values of a 32x32 image.
        images.append(pixels.reshape(-1, *_IMAGE_SHAPE))
        classes.append(labels)
        splits.append(np.full(len(labels), TEST if name == "test_batch" else TRAIN, np.int8))
        files.append(np.full(len(labels), member))
        rows.append(np.arange(len(labels), dtype=np.int64))
    return Cifar10Arrays(
        images=np.ascontiguousarray(np.concatenate(images)),
        classes=np.concatenate(classes),
        splits=np.concatenate(splits),
        files=np.concatenate(files),
        rows=np.concatenate(rows),
        source=str(source),
        layout="python",
    )


def _tree_arrays(members: list[tuple[str, bytes]], source: Path) -> Cifar10Arrays:
    """Build arrays from image files named ``<prefix>/<split>/<class>/<file>``."""
    prefixes = {name.rsplit("/", 3)[0] if name.count("/") >= 3 else "" for name, _ in members}
    if len(prefixes) > 1:
        raise ValueError(
            f"{source} contains several CIFAR-10 image trees ({sorted(prefixes)}); keep one."
        )
    found_classes = {name.split("/")[-2] for name, _ in members}
    unknown = sorted(found_classes - set(CIFAR10_CLASSES))
    missing = sorted(set(CIFAR10_CLASSES) - found_classes)
    if unknown or missing:
        raise ValueError(
            f"{source}: class folders do not match CIFAR-10 (missing: {missing}, "
            f"unknown: {unknown}). Expected train/<class> and test/<class> for "
            f"{', '.join(CIFAR10_CLASSES)}."
        )

    # Order by split, class and natural file name, so positions are stable across runs.
    def order(entry: tuple[str, bytes]) -> tuple[int, int, list[Any]]:
        parts = entry[0].split("/")
        return SPLIT_NAMES.index(parts[-3]), CIFAR10_CLASSES.index(parts[-2]), _natural_key(parts[-1])

    members = sorted(members, key=order)
    images = np.empty((len(members), *_IMAGE_SHAPE), dtype=np.uint8)
    classes = np.empty(len(members), dtype=np.int64)
    splits = np.empty(len(members), dtype=np.int8)
    for position, (name, data) in enumerate(members):
        parts = name.split("/")
        images[position] = _decode_image(data, name)
        classes[position] = CIFAR10_CLASSES.index(parts[-2])
        splits[position] = SPLIT_NAMES.index(parts[-3])
    return Cifar10Arrays(
        images=images,
        classes=classes,
        splits=splits,
        files=np.array([name for name, _ in members]),
        rows=np.zeros(len(members), dtype=np.int64),
        source=str(source),
        layout="images",
    )


def _decode_source(source: Path) -> Cifar10Arrays:
    """Read every file of ``source`` once and decode the layout found."""
    entries = _iter_archive(source) if source.is_file() else _iter_folder(source)
    batches: dict[str, tuple[str, bytes]] = {}
    tree: list[tuple[str, bytes]] = []
    for name, data in entries:
        parts = name.split("/")
        base = parts[-1]
        if base in PYTHON_FILES:
            batches[base] = (name, data)
        elif (
            len(parts) >= 3
            and parts[-3] in SPLIT_NAMES
            and Path(base).suffix.lower() in IMAGE_SUFFIXES
        ):
            tree.append((name, data))

    if "data_batch_1" in batches:
        return _python_arrays(batches, source)
    if tree:
        return _tree_arrays(tree, source)
    raise ValueError(f"No CIFAR-10 files found in {source}. Expected {EXPECTED_LAYOUT}.")


def load_cifar10(path: str | Path, cache: bool = True) -> Cifar10Arrays:
    """Decode CIFAR-10 from ``path`` (folder or archive), using the ``.npz`` cache when allowed.

    Args:
        path: the Python release folder, an image tree, a folder containing one of
            them, or a tar archive of either.
        cache: read and write the decoded-array cache.
    """
    source = locate_source(path)
    cache_file = _cache_path(source) if cache else None
    if cache_file is not None and cache_file.is_file():
        arrays = _read_cache(cache_file, source)
        if arrays is not None:
            logger.info("Loaded CIFAR-10 from cache %s", cache_file)
            return arrays

    logger.info("Decoding CIFAR-10 from %s", source)
    arrays = _decode_source(source)
    counts = np.bincount(arrays.splits.astype(np.int64) * 10 + arrays.classes, minlength=20)
    if counts.min() == 0:
        logger.warning("CIFAR-10 source %s has a class with no images in one split.", source)
    if cache_file is not None:
        _write_cache(cache_file, arrays)
    elif cache:
        logger.warning("No writable cache folder; set MEDANOMALY_CACHE_DIR to cache CIFAR-10.")
    return arrays


# ---------------------------------------------------------------- dataset


class Cifar10Dataset(Dataset):
    """Tensor-backed CIFAR-10 subset following the data item contract.

    Images stay uint8 in memory and become float32 (in_channels, image_size,
    image_size) in [0, 1] when fetched. ``__getitems__`` converts a whole batch at
    once, which ``torch.utils.data.DataLoader`` uses automatically.
    """

    def __init__(
        self,
        arrays: Cifar10Arrays,
        positions: np.ndarray,
        labels: np.ndarray,
        image_size: int = 32,
        in_channels: int = 3,
        resize_mode: str = "resize",
    ) -> None:
        check_model_shape(image_size, in_channels)
        if len(positions) != len(labels):
            raise ValueError(f"Got {len(positions)} positions but {len(labels)} labels.")
        self.arrays = arrays
        self.images = torch.from_numpy(arrays.images)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_size = image_size
        self.in_channels = in_channels
        self.resize_mode = check_resize_mode(resize_mode)

    def __len__(self) -> int:
        return len(self.positions)

    def _convert(self, positions: torch.Tensor) -> torch.Tensor:
        """Gather uint8 images at ``positions`` as float32 (B, in_channels, size, size) in [0, 1]."""
        with single_thread():
            return self._convert_batch(self.images.index_select(0, positions))

    def _convert_batch(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.float().div_(255.0)
        batch = resize_batch(batch, self.image_size, self.resize_mode)
        # Bilinear weights are non-negative and sum to 1, so values stay in [0, 1].
        # Only the luma sum can round a little above 1.
        if self.in_channels == 1:
            return convert_channels(batch, 1).clamp_(0.0, 1.0)
        return batch

    def _item(self, item: int, image: torch.Tensor) -> dict[str, Any]:
        position = int(self.positions[item])
        return {
            "image": image,
            "label": int(self.labels[item]),
            "path": self.arrays.path_of(position),
            "index": int(self.arrays.rows[position]),
        }

    def __getitem__(self, item: int) -> dict[str, Any]:
        position = torch.tensor([int(self.positions[item])])
        return self._item(item, self._convert(position)[0])

    def __getitems__(self, items: Sequence[int]) -> list[dict[str, Any]]:
        batch = self._convert(torch.from_numpy(self.positions[np.asarray(items, dtype=np.int64)]))
        return [self._item(item, image) for item, image in zip(items, batch)]

    def classes(self) -> np.ndarray:
        """Return the CIFAR-10 class index of every item."""
        return self.arrays.classes[self.positions]

    def identifiers(self) -> list[tuple[str, int]]:
        """Return (path, index) for every item without converting images."""
        return [(self.arrays.path_of(int(p)), int(self.arrays.rows[p])) for p in self.positions]


# ---------------------------------------------------------------- protocol


def _class_counts(classes: np.ndarray) -> dict[str, int]:
    counts = np.bincount(classes, minlength=len(CIFAR10_CLASSES))
    return {name: int(counts[i]) for i, name in enumerate(CIFAR10_CLASSES) if counts[i]}


def cifar10_splits(
    path: str | Path | Cifar10Arrays,
    abnormal_class: str | int | None = None,
    image_size: int = 32,
    in_channels: int = 3,
    protocol: str = "leave_one_out",
    normal_class: str | int | None = None,
    limit: int | None = None,
    test_limit: int | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    resize_mode: str = "resize",
    cache: bool = True,
) -> DataSplits:
    """Build train, validation and test datasets for one CIFAR-10 anomaly task.

    Args:
        path: a CIFAR-10 source (see :func:`load_cifar10`) or arrays already loaded.
        abnormal_class: the abnormal class for ``leave_one_out``.
        image_size: model input height and width.
        in_channels: model input channels, 1 or 3.
        protocol: ``leave_one_out`` or ``one_vs_rest``.
        normal_class: the normal class for ``one_vs_rest``.
        limit: keep this many normal training images (stratified by class) before
            the validation split takes its share.
        test_limit: keep this many test images, stratified by source split and
            class, so the normal/abnormal mix is kept.
        val_fraction: share of the normal training images held out for
            validation, stratified by class.
        seed: seed of the subsampling and the validation split.
        resize_mode: ``resize`` or ``pad`` (identical for square images).
        cache: use the decoded-array cache.

    Returns:
        DataSplits whose ``info`` has counts per split and label and, for the
        test split, per class.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Invalid CIFAR-10 protocol {protocol!r}; use one of {list(PROTOCOLS)}.")
    check_fraction(val_fraction)
    check_model_shape(image_size, in_channels)
    for name, value in (("limit", limit), ("test_limit", test_limit)):
        if value is not None and value < 1:
            raise ValueError(f"Invalid {name} {value!r}; expected a positive number or None.")
    if protocol == "leave_one_out":
        if abnormal_class is None:
            raise ValueError("The leave_one_out protocol needs abnormal_class, e.g. 'car'.")
        target = resolve_class(abnormal_class)
    else:
        if normal_class is None:
            raise ValueError("The one_vs_rest protocol needs normal_class, e.g. 'car'.")
        target = resolve_class(normal_class)

    arrays = path if isinstance(path, Cifar10Arrays) else load_cifar10(path, cache=cache)
    train_rng, val_rng, test_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    is_train = arrays.splits == TRAIN
    is_target = arrays.classes == target

    # Normal training pool, then the optional stratified limit.
    if protocol == "leave_one_out":
        normal_pool = np.flatnonzero(is_train & ~is_target)
    else:
        normal_pool = np.flatnonzero(is_train & is_target)
    if limit is not None:
        normal_pool = normal_pool[stratified_sample(arrays.classes[normal_pool], limit, train_rng)]
    train_indices, val_indices = stratified_holdout(arrays.classes[normal_pool], val_fraction, val_rng)
    train_positions, val_positions = normal_pool[train_indices], normal_pool[val_indices]

    # Test set: positions with their anomaly labels.
    if protocol == "leave_one_out":
        test_positions = np.flatnonzero(~is_train | is_target)
        test_labels = is_target[test_positions].astype(np.int64)
    else:
        test_positions = np.flatnonzero(~is_train)
        test_labels = (~is_target[test_positions]).astype(np.int64)
    if test_limit is not None:
        strata = arrays.splits[test_positions].astype(np.int64) * 10 + arrays.classes[test_positions]
        chosen = stratified_sample(strata, test_limit, test_rng)
        test_positions, test_labels = test_positions[chosen], test_labels[chosen]

    options = {"image_size": image_size, "in_channels": in_channels, "resize_mode": resize_mode}
    train = Cifar10Dataset(arrays, train_positions, np.zeros(len(train_positions)), **options)
    val = Cifar10Dataset(arrays, val_positions, np.zeros(len(val_positions)), **options)
    test = Cifar10Dataset(arrays, test_positions, test_labels, **options)

    info = {
        "source": "cifar10",
        "path": arrays.source,
        "layout": arrays.layout,
        "protocol": protocol,
        "abnormal_class" if protocol == "leave_one_out" else "normal_class": CIFAR10_CLASSES[target],
        "counts": {
            "train": label_counts(train.labels),
            "val": label_counts(val.labels),
            "test": label_counts(test.labels),
        },
        "test_classes": _class_counts(test.classes()),
        "skipped": [],
    }
    logger.info(
        "CIFAR-10 %s, %s %s: %d train, %d val, %d test (%d abnormal)",
        protocol,
        "abnormal" if protocol == "leave_one_out" else "normal",
        CIFAR10_CLASSES[target],
        len(train),
        len(val),
        len(test),
        int(test_labels.sum()),
    )
    return DataSplits(train=train, val=val, test=test, info=info)
