"""Intensity presets: CT windows, percentiles, min-max and preset names."""

import logging

import numpy as np
import pytest
from monai.transforms import ScaleIntensityRange, ScaleIntensityRangePercentiles
from pydicom.data import get_testdata_file

from medanomaly.data import intensity
from medanomaly.data.dicom import load_dicom
from medanomaly.data.intensity import (
    DEFAULT_PRESET,
    PRESETS,
    MinMax,
    Percentile,
    Window,
    apply_preset,
    percentile_pair,
    resolve_preset,
)


def test_ct_window_values():
    expected = {
        "brain": (80, 40),
        "subdural": (200, 80),
        "lung": (1500, -600),
        "abdomen": (400, 50),
        "bone": (1800, 400),
    }
    for name, (width, level) in expected.items():
        assert PRESETS[name] == Window(width=width, level=level), name


def test_default_is_percentile():
    assert DEFAULT_PRESET == "percentile"
    assert resolve_preset(None) == Percentile(0.5, 99.5)


def test_brain_window_maps_hu():
    hu = np.array([-1000.0, 0.0, 20.0, 40.0, 80.0, 1000.0])
    out = apply_preset(hu, "brain")
    np.testing.assert_allclose(out, [0.0, 0.0, 0.25, 0.5, 1.0, 1.0], atol=1e-7)


def test_output_float32_in_unit_range():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 500, (32, 48)).astype(np.float64)
    before = image.copy()
    for name in PRESETS:
        out = apply_preset(image, name)
        assert out.dtype == np.float32, name
        assert out.shape == image.shape, name
        assert out.min() >= 0.0, name
        assert out.max() <= 1.0, name
    np.testing.assert_array_equal(image, before)


def test_window_matches_monai():
    rng = np.random.default_rng(1)
    image = rng.uniform(-1200, 2000, (64, 64)).astype(np.float32)
    for name in ("brain", "lung", "bone"):
        window = PRESETS[name]
        low, high = window.bounds(image)
        reference = ScaleIntensityRange(low, high, 0.0, 1.0, clip=True)(image)
        np.testing.assert_allclose(apply_preset(image, name), np.asarray(reference), atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint16])
def test_percentile_matches_monai(dtype):
    rng = np.random.default_rng(2)
    image = rng.normal(300, 200, (61, 47)).clip(0, 4000).astype(dtype)
    reference = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)(
        image.astype(np.float32)
    )
    out = apply_preset(image, "percentile")
    np.testing.assert_allclose(out, np.asarray(reference), atol=1e-5)


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(3).normal(0, 1, 10007).astype(np.float32),
        np.random.default_rng(4).integers(-1024, 3000, 5000).astype(np.int16),
        np.random.default_rng(5).integers(0, 2**31 - 1, 999).astype(np.int64),
        np.array([7], dtype=np.int32),
    ],
    ids=["float", "int16-histogram", "wide-int-partition", "single"],
)
def test_percentile_pair_matches_numpy(values):
    for lower, upper in [(0.5, 99.5), (0.0, 100.0), (1.0, 99.0), (25.0, 75.0)]:
        expected = np.percentile(values.astype(np.float64), [lower, upper])
        np.testing.assert_allclose(
            percentile_pair(values, lower, upper), expected, rtol=1e-6, atol=1e-6
        )


def test_minmax_maps_extremes():
    out = apply_preset(np.array([[3.0, 5.0], [7.0, 11.0]]), "minmax")
    np.testing.assert_allclose(out, [[0.0, 0.25], [0.5, 1.0]])


def test_constant_image_maps_to_zero():
    for name in ("percentile", "minmax"):
        out = apply_preset(np.full((8, 8), 42.0), name)
        assert not out.any(), name


def test_degenerate_percentile_is_binary():
    image = np.zeros((100, 100), dtype=np.float32)
    image[0, :5] = 9.0
    out = apply_preset(image, "percentile")
    assert set(np.unique(out)) == {0.0, 1.0}
    assert out[0, :5].all()


def test_integer_and_float_agree():
    rng = np.random.default_rng(6)
    image = rng.integers(-1024, 2000, (40, 40)).astype(np.int32)
    for name in ("percentile", "minmax", "brain"):
        np.testing.assert_allclose(
            apply_preset(image, name), apply_preset(image.astype(np.float32), name), atol=1e-6
        )


def test_non_finite_values():
    image = np.array([0.0, 50.0, 100.0, np.nan, np.inf, -np.inf])
    out = apply_preset(image, "minmax")
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0, 0.0, 1.0, 0.0])


def test_all_nan_gives_zeros():
    out = apply_preset(np.full((3, 3), np.nan), "percentile")
    assert not out.any()


def test_rgb_shares_one_range():
    image = np.zeros((4, 4, 3), dtype=np.float32)
    image[..., 0] = 200.0
    image[..., 1] = 100.0
    out = apply_preset(image, "minmax")
    assert out[..., 0].max() == 1.0
    assert out[..., 1].max() == 0.5
    assert out[..., 2].max() == 0.0


def test_custom_window_and_percentile():
    assert resolve_preset("window:350:40") == Window(width=350, level=40)
    assert resolve_preset("percentile:1:99") == Percentile(1.0, 99.0)
    assert resolve_preset(" Brain ") == PRESETS["brain"]
    assert resolve_preset(MinMax()) == MinMax()


@pytest.mark.parametrize(
    "name",
    ["bran", "window:-5:3", "window:abc:1", "window:1:2:3", "percentile:50:10", "percentile:5"],
)
def test_invalid_preset_raises(name):
    with pytest.raises(ValueError, match="Valid presets|expected|must"):
        resolve_preset(name)


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError) as info:
        apply_preset(np.zeros((2, 2)), "headcase")
    for name in ("brain", "lung", "percentile", "minmax"):
        assert name in str(info.value)


def test_window_on_mr_warns_once(caplog):
    image = np.arange(16.0).reshape(4, 4)
    with caplog.at_level(logging.WARNING, logger="medanomaly.data.intensity"):
        apply_preset(image, "liver", modality="MR")
        apply_preset(image, "liver", modality="MR")
        apply_preset(image, "liver", modality="CT")
    warnings = [record for record in caplog.records if "not HU" in record.getMessage()]
    assert len(warnings) == 1


def test_window_warning_names_dicom_file(caplog, monkeypatch):
    monkeypatch.setattr(intensity, "_warned_window_modality", set())
    path = get_testdata_file("MR_small.dcm")
    with caplog.at_level(logging.WARNING, logger="medanomaly.data.intensity"):
        load_dicom(path, preset="brain")
    warnings = [record.getMessage() for record in caplog.records if "not HU" in record.getMessage()]
    assert len(warnings) == 1
    assert path in warnings[0]
    assert "MR" in warnings[0]
