"""Published numbers of Table 1 and the order of its columns (classes) and rows (models)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from medanomaly.data import CIFAR10_CLASSES
from medanomaly.data.cifar10 import resolve_class


PUBLISHED_SOURCE = "Park et al., Skip-GANomaly++ (AAAI-24 student abstract), Table 1"
# Column order of Table 1; the abstract writes "car" for automobile.
PUBLISHED_CLASS_ORDER = (
    "bird",
    "automobile",
    "truck",
    "ship",
    "cat",
    "deer",
    "frog",
    "horse",
    "airplane",
    "dog",
)
PUBLISHED_CLASS_NAMES = {"automobile": "car"}
MODEL_ORDER = ("skipganomaly_pp", "skip_ganomaly", "ganomaly")
MODEL_LABELS = {
    "skipganomaly_pp": "Skip-GANomaly++",
    "skip_ganomaly": "Skip-GANomaly",
    "ganomaly": "GANomaly",
}


def _published_row(values: Sequence[float]) -> dict[str, float]:
    return dict(zip(PUBLISHED_CLASS_ORDER, values))


# AUROC per abnormal class, in PUBLISHED_CLASS_ORDER. Table 1 also lists EGBAD
# and AnoGAN, which medanomaly does not implement.
PUBLISHED_AUROC = {
    "ganomaly": _published_row((0.510, 0.631, 0.617, 0.616, 0.587, 0.593, 0.683, 0.605, 0.633, 0.628)),
    "skip_ganomaly": _published_row(
        (0.448, 0.953, 0.907, 0.659, 0.607, 0.602, 0.931, 0.788, 0.797, 0.615)
    ),
    "skipganomaly_pp": _published_row(
        (0.819, 0.891, 0.892, 0.998, 0.907, 0.998, 0.999, 0.832, 0.984, 0.818)
    ),
}

# Test AUROC per epoch (1-5) of Skip-GANomaly++ measured by this project on the
# authors' public code: 4,500 training images, 3,000 test images, 2 CPU cores,
# 2026-12-04. "bn_train" is their evaluation, "eval" the same weights in eval mode.
AUTHORS_CODE_REFERENCE = {
    "ship": {
        "bn_train": (0.047, 0.807, 0.861, 0.849, 0.845),
        "eval": (0.448, 0.352, 0.295, 0.541, 0.308),
    },
    "bird": {
        "bn_train": (0.731, 0.408, 0.275, 0.373, 0.344),
        "eval": (0.564, 0.524, 0.592, 0.518, 0.508),
    },
}


def canonical_class(name: str) -> str:
    """Return the CIFAR-10 class name for a name, alias ("car", "plane") or index."""
    return CIFAR10_CLASSES[resolve_class(name)]


def published_class_name(name: str) -> str:
    """Return the column name that Table 1 uses for a CIFAR-10 class."""
    return PUBLISHED_CLASS_NAMES.get(name, name)


def sort_classes(classes: Iterable[str]) -> list[str]:
    """Sort canonical class names in the column order of Table 1."""
    return sorted(set(classes), key=PUBLISHED_CLASS_ORDER.index)


def sort_models(models: Iterable[str]) -> list[str]:
    """Sort model names as the rows of Table 1 (proposed model first), unknown names last."""
    order = {name: position for position, name in enumerate(MODEL_ORDER)}
    return sorted(set(models), key=lambda name: (order.get(name, len(order)), name))
