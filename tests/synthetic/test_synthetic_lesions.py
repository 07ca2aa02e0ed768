"""Tests for lesion placement, masks and contrast."""

import numpy as np
import pytest

from medanomaly.synthetic.lesions import (
    HAEMORRHAGE,
    INFARCT,
    LESION_HU_RANGES,
    paint_lesions,
    sample_lesion,
)
from medanomaly.synthetic.phantom import make_geometry, render_volume, sample_head


@pytest.fixture(scope="module")
def volume():
    head = sample_head(np.random.default_rng(11))
    return render_volume(head, make_geometry(size=96, n_slices=8))


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    grown = mask.copy()
    for _ in range(steps):
        padded = np.pad(grown, 1)
        grown = (
            padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1]
            | padded[1:-1, :-2] | padded[1:-1, 2:]
        )
    return grown


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", [HAEMORRHAGE, INFARCT])
def test_lesion_inside_brain(volume, kind, seed):
    lesion = sample_lesion(np.random.default_rng(seed), volume, kind)

    _, mask = paint_lesions(volume, [lesion])

    assert mask.any()
    assert not (mask.astype(bool) & ~volume.brain).any()
    assert (volume.parenchyma[mask.astype(bool)] >= 0.5).all()


@pytest.mark.parametrize("seed", range(6))
def test_haemorrhage_brighter_than_parenchyma(volume, seed):
    lesion = sample_lesion(np.random.default_rng(seed), volume, HAEMORRHAGE)

    hu, mask = paint_lesions(volume, [lesion])

    for index in lesion.slices:
        inside = mask[index] == 1
        ring = _dilate(inside, 3) & ~inside & (volume.parenchyma[index] >= 0.99)
        assert hu[index][inside].mean() > volume.hu[index][inside].mean()
        assert hu[index][inside].mean() > hu[index][ring].mean()


@pytest.mark.parametrize("seed", range(6))
def test_infarct_darker_than_parenchyma(volume, seed):
    lesion = sample_lesion(np.random.default_rng(seed), volume, INFARCT)

    hu, mask = paint_lesions(volume, [lesion])

    for index in lesion.slices:
        inside = mask[index] == 1
        ring = _dilate(inside, 3) & ~inside & (volume.parenchyma[index] >= 0.99)
        assert hu[index][inside].mean() < volume.hu[index][inside].mean()
        assert hu[index][inside].mean() < hu[index][ring].mean()


@pytest.mark.parametrize("kind", [HAEMORRHAGE, INFARCT])
def test_lesion_hu_in_range(volume, kind):
    low, high = LESION_HU_RANGES[kind]

    values = [sample_lesion(np.random.default_rng(s), volume, kind).hu for s in range(10)]

    assert min(values) >= low
    assert max(values) <= high


def test_lesion_slices_are_adjacent(volume):
    for seed in range(10):
        lesion = sample_lesion(np.random.default_rng(seed), volume)

        _, mask = paint_lesions(volume, [lesion])
        painted = np.flatnonzero(mask.any(axis=(1, 2))).tolist()

        assert painted == list(lesion.slices)
        assert painted == list(range(painted[0], painted[-1] + 1))


def test_lesions_vary(volume):
    lesions = [sample_lesion(np.random.default_rng(s), volume) for s in range(10)]

    assert len({lesion.kind for lesion in lesions}) == 2
    assert len({lesion.centre_mm for lesion in lesions}) == 10
    assert np.ptp([lesion.radius_mm for lesion in lesions]) > 3.0


def test_two_lesions_get_own_labels(volume):
    rng = np.random.default_rng(3)
    lesions = [sample_lesion(rng, volume, HAEMORRHAGE), sample_lesion(rng, volume, INFARCT)]

    _, mask = paint_lesions(volume, lesions)

    assert set(np.unique(mask).tolist()) <= {0, 1, 2}
    assert (mask == 2).any()


def test_paint_keeps_volume_unchanged(volume):
    before = volume.hu.copy()
    lesion = sample_lesion(np.random.default_rng(0), volume)

    paint_lesions(volume, [lesion])

    assert np.array_equal(volume.hu, before)


def test_unknown_kind_rejected(volume):
    with pytest.raises(ValueError, match="invalid lesion kind 'tumour'"):
        sample_lesion(np.random.default_rng(0), volume, "tumour")
