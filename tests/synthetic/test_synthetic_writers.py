"""Tests for the DICOM and NIfTI writers: read back with pydicom and nibabel."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from medanomaly.synthetic.phantom import make_geometry
from medanomaly.synthetic.writers import (
    PATIENT_ID_PREFIX,
    PATIENT_NAME_PREFIX,
    from_nifti_array,
    nifti_affine,
    patient_id,
    patient_name,
    to_nifti_array,
    write_dicom_series,
    write_nifti,
)

GEOMETRY = make_geometry(size=32, n_slices=4)


@pytest.fixture
def hu():
    rng = np.random.default_rng(0)
    return rng.integers(-1024, 3072, size=(4, 32, 32)).astype(np.int16)


@pytest.fixture
def series(tmp_path, hu):
    paths = write_dicom_series(tmp_path / "series", hu, GEOMETRY, seed=5, subject_number=3)
    return [pydicom.dcmread(p) for p in paths]


def test_dicom_hu_round_trip(series, hu):
    for index, ds in enumerate(series):
        recovered = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(recovered, hu[index])


def test_dicom_ct_attributes(series):
    ds = series[0]

    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPClassUID == CTImageStorage
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Modality == "CT"
    assert (ds.Rows, ds.Columns) == (32, 32)
    assert [float(v) for v in ds.PixelSpacing] == [7.5, 7.5]
    assert float(ds.SliceThickness) == pytest.approx(GEOMETRY.slice_thickness_mm)
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, 1)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert float(ds.RescaleIntercept) == -1024
    assert float(ds.RescaleSlope) == 1
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert "WindowCenter" in ds
    assert "WindowWidth" in ds


def test_dicom_positions_increase(series):
    z = [float(ds.ImagePositionPatient[2]) for ds in series]

    assert np.allclose(z, GEOMETRY.slice_positions_mm)
    assert (np.diff(z) > 0).all()
    assert [ds.InstanceNumber for ds in series] == [1, 2, 3, 4]


def test_dicom_uids_per_series(series):
    assert len({ds.SeriesInstanceUID for ds in series}) == 1
    assert len({ds.StudyInstanceUID for ds in series}) == 1
    assert len({ds.SOPInstanceUID for ds in series}) == 4


def test_dicom_uids_deterministic(tmp_path, hu, series):
    again = write_dicom_series(tmp_path / "again", hu, GEOMETRY, seed=5, subject_number=3)
    other = write_dicom_series(tmp_path / "other", hu, GEOMETRY, seed=6, subject_number=3)

    assert pydicom.dcmread(again[0]).SOPInstanceUID == series[0].SOPInstanceUID
    assert pydicom.dcmread(other[0]).SOPInstanceUID != series[0].SOPInstanceUID
    assert again[0].read_bytes() == (tmp_path / "series" / "slice-000.dcm").read_bytes()


def test_dicom_patient_constants(series):
    ds = series[0]
    raw = Path(ds.filename).read_bytes()

    assert str(ds.PatientName) == patient_name(3)
    assert ds.PatientID == patient_id(5, 3)
    assert str(ds.PatientName).startswith(PATIENT_NAME_PREFIX)
    assert ds.PatientID.startswith(PATIENT_ID_PREFIX)
    assert PATIENT_NAME_PREFIX.encode() in raw
    assert PATIENT_ID_PREFIX.encode() in raw


def test_dicom_partial_series_keeps_numbers(tmp_path, hu):
    paths = write_dicom_series(
        tmp_path / "part", hu, GEOMETRY, seed=0, subject_number=0, slice_indices=[1, 2]
    )
    datasets = [pydicom.dcmread(p) for p in paths]
    z = float(datasets[0].ImagePositionPatient[2])

    assert [p.name for p in paths] == ["slice-001.dcm", "slice-002.dcm"]
    assert [ds.InstanceNumber for ds in datasets] == [2, 3]
    assert z == pytest.approx(GEOMETRY.slice_positions_mm[1])


def test_dicom_rejects_float_volume(tmp_path, hu):
    with pytest.raises(ValueError, match="must be int16"):
        write_dicom_series(tmp_path, hu.astype(np.float32), GEOMETRY, seed=0, subject_number=0)


def test_nifti_hu_round_trip(tmp_path, hu):
    path = write_nifti(tmp_path / "volume.nii.gz", hu, GEOMETRY)

    image = nib.load(path)

    assert image.get_data_dtype() == np.int16
    assert (image.dataobj.slope, image.dataobj.inter) == (1.0, 0.0)
    assert np.array_equal(from_nifti_array(np.asarray(image.dataobj)), hu)
    assert np.array_equal(from_nifti_array(image.get_fdata()), hu)


def test_nifti_affine_is_ras(tmp_path, hu):
    image = nib.load(write_nifti(tmp_path / "volume.nii", hu, GEOMETRY))

    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    assert np.allclose(image.header.get_zooms(), (7.5, 7.5, GEOMETRY.slice_thickness_mm))
    assert image.header.get_xyzt_units()[0] == "mm"


def test_nifti_and_dicom_share_space(series):
    # DICOM pixel (row 5, column 9) of slice 2, in LPS patient coordinates.
    ds = series[2]
    x0, y0, z = (float(v) for v in ds.ImagePositionPatient)
    lps = np.array([x0 + 9 * 7.5, y0 + 5 * 7.5, z])

    # The same pixel in the NIfTI layout: both in-plane axes reversed.
    voxel = np.array([32 - 1 - 9, 32 - 1 - 5, 2, 1])
    ras = nifti_affine(GEOMETRY) @ voxel

    assert np.allclose(ras[:3], lps * [-1, -1, 1])


def test_nifti_layout_round_trip(hu):
    data = to_nifti_array(hu)

    assert data.shape == (32, 32, 4)
    assert data[0, 0, 1] == hu[1, 31, 31]
    assert np.array_equal(from_nifti_array(data), hu)


def test_nifti_mask_keeps_uint8(tmp_path):
    mask = np.zeros((4, 32, 32), dtype=np.uint8)
    mask[1, 10:14, 10:14] = 2

    image = nib.load(write_nifti(tmp_path / "mask.nii.gz", mask, GEOMETRY))

    assert image.get_data_dtype() == np.uint8
    assert np.array_equal(from_nifti_array(np.asarray(image.dataobj)), mask)


def test_nifti_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="volume shape must be"):
        write_nifti(tmp_path / "bad.nii", np.zeros((3, 32, 32), np.int16), GEOMETRY)
