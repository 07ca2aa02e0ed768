"""NIfTI reading: scaling, orientation, slicing, volumes and background slices."""

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medanomaly.data.nifti import LoadResult, SliceImage, load_nifti
from medanomaly.data.readers import is_nifti_path

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"

# Data offset of a NIfTI-1 file without extensions: the 348-byte header plus
# the 4-byte extension flag.
VOX_OFFSET = 352


def write_nifti(path, raw, affine=None, slope=np.nan, inter=np.nan):
    """Write raw voxel values with exactly the given scl_slope and scl_inter."""
    header = nib.Nifti1Header()
    header.set_data_shape(raw.shape)
    header.set_data_dtype(raw.dtype)
    affine = np.eye(4) if affine is None else affine
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header["scl_slope"] = slope
    header["scl_inter"] = inter
    header.set_data_offset(VOX_OFFSET)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as stream:
        header.write_to(stream)
        stream.write(b"\0" * (VOX_OFFSET - stream.tell()))
        stream.write(np.asarray(raw, dtype=raw.dtype.newbyteorder("<")).tobytes(order="F"))
    return Path(path)


def ramp_volume(shape=(6, 5, 4), dtype=np.int16):
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape, order="F") % 80


def axial(volume, index):
    """The expected image of axial slice ``index`` of a RAS+ volume."""
    return volume[:, :, index].T[::-1]


def test_scaling_applied_once(tmp_path):
    raw = ramp_volume()
    path = write_nifti(tmp_path / "scaled.nii", raw, slope=2.0, inter=10.0)
    result = load_nifti(path, preset="window:400:200")
    for item in result.slices:
        expected = axial(raw * 2.0 + 10.0, item.index) / 400.0
        np.testing.assert_allclose(item.array[0], expected, atol=1e-6)


@pytest.mark.parametrize("slope", [0.0, np.nan])
def test_zero_or_nan_slope_means_unscaled(tmp_path, slope):
    raw = ramp_volume()
    path = write_nifti(tmp_path / "unscaled.nii.gz", raw, slope=slope, inter=50.0)
    result = load_nifti(path, preset="window:400:200")
    expected = axial(raw.astype(float), 1) / 400.0
    np.testing.assert_allclose(result.slices[1].array[0], expected, atol=1e-6)


def test_two_dimensional_file(tmp_path):
    raw = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = load_nifti(write_nifti(tmp_path / "flat.nii", raw), preset="minmax")
    assert len(result.slices) == 1
    assert result.slices[0].index == 0
    np.testing.assert_allclose(result.slices[0].array[0], raw.T[::-1] / 11.0, atol=1e-6)


@pytest.mark.parametrize("axis, count, shape", [(0, 6, (4, 5)), (1, 5, (4, 6)), (2, 4, (5, 6))])
def test_slice_axis(tmp_path, axis, count, shape):
    path = write_nifti(tmp_path / "v.nii", ramp_volume())
    result = load_nifti(path, slice_axis=axis)
    assert len(result.slices) == count
    assert result.slices[0].array.shape == (1, *shape)
    assert [item.index for item in result.slices] == list(range(count))


def test_four_dimensional_volume_index(tmp_path):
    first = ramp_volume(dtype=np.int16)
    data = np.stack([first, first + 100], axis=-1)
    path = write_nifti(tmp_path / "fmri.nii.gz", data)
    for index in (0, 1):
        result = load_nifti(path, preset="window:400:200", volume_index=index)
        expected = axial(data[..., index].astype(float), 2) / 400.0
        np.testing.assert_allclose(result.slices[2].array[0], expected, atol=1e-6)


def test_volume_index_out_of_range(tmp_path):
    path = write_nifti(tmp_path / "fmri.nii", np.zeros((3, 3, 2, 2), dtype=np.int16))
    result = load_nifti(path, volume_index=2)
    assert result.slices == []
    assert "volume_index 2 out of range" in result.skipped[0].reason


@pytest.mark.parametrize(
    "selection, expected",
    [
        ((1, 3), [1, 2]),
        (slice(2, None), [2, 3]),
        ("1:3", [1, 2]),
        ("0;3", [0, 3]),
        ([3, 1], [3, 1]),
    ],
)
def test_slice_range(tmp_path, selection, expected):
    path = write_nifti(tmp_path / "v.nii", ramp_volume())
    result = load_nifti(path, slice_range=selection)
    assert [item.index for item in result.slices] == expected


def test_slice_index_out_of_range(tmp_path):
    path = write_nifti(tmp_path / "v.nii", ramp_volume())
    result = load_nifti(path, slice_range=[1, 9])
    assert result.slices == []
    assert "slice index 9 out of range" in result.skipped[0].reason


@pytest.mark.parametrize(
    "arguments",
    [
        {"slice_axis": 3},
        {"volume_index": -1},
        {"foreground_threshold": 1.5},
        {"slice_range": "a-b"},
        {"slice_range": (1, 2, 3)},
        {"slice_range": [-1]},
        {"preset": "brian"},
    ],
)
def test_invalid_arguments_raise(tmp_path, arguments):
    path = write_nifti(tmp_path / "v.nii", ramp_volume())
    with pytest.raises(ValueError, match="Invalid|Unknown"):
        load_nifti(path, **arguments)


def test_foreground_threshold(tmp_path, caplog):
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 3, (20, 20, 6)).astype(np.float32)  # background noise
    volume[5:15, 5:15, 3:] = 500.0  # a quarter of each of slices 3-5
    path = write_nifti(tmp_path / "head.nii", volume)
    with caplog.at_level(logging.INFO, logger="medanomaly.data.nifti"):
        result = load_nifti(path, foreground_threshold=0.2)
    assert [item.index for item in result.slices] == [3, 4, 5]
    assert "3 background slices skipped" in caplog.text
    assert len(load_nifti(path, foreground_threshold=0.3).slices) == 0
    assert len(load_nifti(path).slices) == 6


def test_reoriented_to_ras(tmp_path):
    rng = np.random.default_rng(1)
    ras = rng.integers(0, 1000, (5, 4, 3)).astype(np.int16)
    # The same voxels stored with the x axis reversed (LAS), with the matching affine.
    las_affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    las_affine[0, 3] = 4.0
    first = load_nifti(write_nifti(tmp_path / "ras.nii", ras))
    second = load_nifti(write_nifti(tmp_path / "las.nii", ras[::-1].copy(), affine=las_affine))
    for one, two in zip(first.slices, second.slices):
        np.testing.assert_array_equal(one.array, two.array)


def test_axial_display_convention(tmp_path):
    volume = np.zeros((4, 5, 3), dtype=np.int16)
    volume[0, 4, 1] = 100  # patient's left (x = 0), most anterior (y = 4)
    result = load_nifti(write_nifti(tmp_path / "marker.nii", volume), slice_range=[1])
    image = result.slices[0].array[0]
    assert image.shape == (5, 4)
    assert image[0, 0] == 1.0
    assert image.sum() == 1.0


def test_constant_slice_flagged(tmp_path, caplog):
    volume = ramp_volume().astype(np.float32) + 1
    volume[:, :, 0] = 0.0
    path = write_nifti(tmp_path / "v.nii", volume)
    with caplog.at_level(logging.WARNING, logger="medanomaly.data.nifti"):
        result = load_nifti(path)
    assert [item.constant for item in result.slices] == [True, False, False, False]
    assert str(path) in caplog.text
    assert "slice index 0" in caplog.text


def test_corrupt_file_skipped(tmp_path):
    write_nifti(tmp_path / "good.nii", ramp_volume())
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(40))
    (tmp_path / "short.nii").write_bytes(bytes(100))
    (tmp_path / "notes.json").write_text("{}")
    result = load_nifti(tmp_path)
    reasons = {Path(item.path).name: item.reason for item in result.skipped}
    assert set(reasons) == {"broken.nii.gz", "short.nii"}
    assert all("unreadable NIfTI file" in reason for reason in reasons.values())
    assert result.files_read == 1
    assert len(result.slices) == 4


def test_nibabel_example4d():
    path = NIBABEL_DATA / "example4d.nii.gz"
    first = load_nifti(path, volume_index=0)
    second = load_nifti(path, volume_index=1)
    assert isinstance(first, LoadResult)
    assert len(first.slices) == 24
    assert first.slices[0].array.shape == (1, 96, 128)
    assert not all(
        np.array_equal(a.array, b.array) for a, b in zip(first.slices, second.slices)
    )


def test_nibabel_anatomical_is_flipped():
    path = NIBABEL_DATA / "anatomical.nii"
    image = nib.load(path)
    assert nib.aff2axcodes(image.affine) == ("L", "A", "S")
    ras = image.get_fdata()[::-1]
    result = load_nifti(path, preset="minmax", slice_range=[12])
    expected = axial(ras, 12)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(result.slices[0].array[0], expected, atol=1e-6)


def test_nibabel_samples_folder():
    result = load_nifti(NIBABEL_DATA, foreground_threshold=0.05)
    names = {Path(item.path).name for item in result.slices}
    assert {"anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "functional.nii",
            "standard.nii.gz"} <= names
    assert [Path(item.path).name for item in result.skipped] == ["row_major.dconn.nii"]
    assert "Cifti2Image" in result.skipped[0].reason
    for item in result.slices:
        assert isinstance(item, SliceImage)
        assert item.array.dtype == np.float32
        assert np.isfinite(item.array).all()
        assert item.array.min() >= 0.0
        assert item.array.max() <= 1.0
        assert item.series.startswith("volume-")


def test_is_nifti_path():
    assert is_nifti_path("a/b.nii")
    assert is_nifti_path("B.NII.GZ")
    assert not is_nifti_path("b.nii.bak")
    assert not is_nifti_path("b.gz")
