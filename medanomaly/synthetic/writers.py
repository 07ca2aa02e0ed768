"""Writers for synthetic volumes: DICOM CT series (pydicom) and NIfTI (nibabel).

Both writers store the same int16 HU values. DICOM stores ``HU + 1024`` as
signed 16-bit pixels with RescaleSlope 1 and RescaleIntercept -1024; NIfTI
stores HU directly with scl_slope 1 and scl_inter 0.

The DICOM files carry made-up identifying attributes (patient name and ID,
birth date, accession number, institution, referring physician and free-text
descriptions). They exist so that de-identification checks have something to
find; they must never reach logs or outputs. The values are fixed here so a
test can search for them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from medanomaly.synthetic.phantom import SeriesGeometry

logger = logging.getLogger(__name__)

PATIENT_NAME_PREFIX = "DEMO^PHANTOM^"
PATIENT_ID_PREFIX = "SYN-"
ACCESSION_PREFIX = "SYNACC"
PATIENT_BIRTH_DATE = "19000101"
INSTITUTION_NAME = "MEDANOMALY SYNTHETIC HOSPITAL"
REFERRING_PHYSICIAN_NAME = "DEMO^REFERRER"
STUDY_DESCRIPTION = "SYNTHETIC HEAD CT PHANTOM"
SERIES_DESCRIPTION = "SYNTHETIC AXIAL BRAIN"
# A fixed date and time keep the files byte-identical from run to run.
STUDY_DATE = "20000101"
STUDY_TIME = "120000"

RESCALE_INTERCEPT = -1024
# Brain window (centre 40 HU, width 80 HU).
WINDOW_CENTER = 40
WINDOW_WIDTH = 80
# Namespace mixed into every generated UID, so other code hashing the same parts gets other UIDs.
UID_NAMESPACE = "medanomaly.synthetic"


def patient_name(subject_number: int) -> str:
    """Return the made-up DICOM PatientName of a subject, e.g. ``DEMO^PHANTOM^003``."""
    return f"{PATIENT_NAME_PREFIX}{subject_number:03d}"


def patient_id(seed: int, subject_number: int) -> str:
    """Return the made-up DICOM PatientID of a subject, e.g. ``SYN-0-003``."""
    return f"{PATIENT_ID_PREFIX}{seed}-{subject_number:03d}"


def deterministic_uid(*parts: object) -> str:
    """Return a DICOM UID derived only from ``parts`` (same parts, same UID)."""
    return str(generate_uid(entropy_srcs=[UID_NAMESPACE, *(str(p) for p in parts)]))


def _series_dataset(
    geometry: SeriesGeometry, seed: int, subject_number: int, series_key: str
) -> Dataset:
    """Build the attributes shared by every slice of a series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage

    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = STUDY_TIME

    ds.Modality = "CT"
    ds.Manufacturer = "medanomaly"
    ds.InstitutionName = INSTITUTION_NAME
    ds.ReferringPhysicianName = REFERRING_PHYSICIAN_NAME
    ds.StudyDescription = STUDY_DESCRIPTION
    ds.SeriesDescription = SERIES_DESCRIPTION
    ds.AccessionNumber = f"{ACCESSION_PREFIX}{subject_number:03d}"
    ds.PatientName = patient_name(subject_number)
    ds.PatientID = patient_id(seed, subject_number)
    ds.PatientBirthDate = PATIENT_BIRTH_DATE
    ds.PatientSex = "O"

    ds.BodyPartExamined = "HEAD"
    ds.SliceThickness = format_number_as_ds(geometry.slice_thickness_mm)
    ds.KVP = "120"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"

    ds.StudyInstanceUID = deterministic_uid("study", seed, subject_number)
    ds.SeriesInstanceUID = deterministic_uid("series", seed, subject_number, series_key)
    ds.StudyID = f"{subject_number + 1}"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = deterministic_uid("frame", seed, subject_number)
    ds.PositionReferenceIndicator = ""

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = geometry.size
    ds.PixelSpacing = [format_number_as_ds(geometry.pixel_spacing_mm)] * 2
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1

    ds.WindowCenter = WINDOW_CENTER
    ds.WindowWidth = WINDOW_WIDTH
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"

    return ds


def write_dicom_series(
    folder: str | Path,
    hu: np.ndarray,
    geometry: SeriesGeometry,
    *,
    seed: int,
    subject_number: int,
    series_key: str = "full",
    slice_indices: list[int] | None = None,
) -> list[Path]:
    """Write slices of an int16 HU volume as a CT Image Storage series, one file per slice.

    Files are named ``slice-NNN.dcm`` after the slice index in the volume, and
    InstanceNumber is that index plus one, so a partial series keeps the
    positions and numbers of the full volume.

    Args:
        folder: output folder, created when missing.
        hu: int16 HU volume (S, H, W).
        geometry: grid of the volume.
        seed: cohort seed, part of every UID and of the PatientID.
        subject_number: subject index, part of every UID and of the made-up patient.
        series_key: distinguishes series of one subject (``"full"``, ``"lesion"``).
        slice_indices: slices to write; all when None.

    Returns:
        The written file paths in slice order.

    Raises:
        ValueError: if ``hu`` is not int16 of shape (S, size, size) matching ``geometry``.
    """
    expected = (geometry.n_slices, geometry.size, geometry.size)
    if hu.dtype != np.int16 or hu.shape != expected:
        raise ValueError(
            f"hu must be int16 with shape {expected}, got {hu.dtype} {hu.shape}. "
            "Convert float HU with medanomaly.synthetic.phantom.quantize_hu."
        )
    indices = range(geometry.n_slices) if slice_indices is None else slice_indices
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    template = _series_dataset(geometry, seed, subject_number, series_key)
    x0, y0 = geometry.first_pixel_xy_mm
    stored = (hu.astype(np.int32) - RESCALE_INTERCEPT).astype("<i2")
    paths = []
    for index in indices:
        z = geometry.slice_positions_mm[index]
        ds = template.copy()
        ds.SOPInstanceUID = deterministic_uid("instance", seed, subject_number, series_key, index)
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [format_number_as_ds(v) for v in (x0, y0, z)]
        ds.SliceLocation = format_number_as_ds(z)
        ds.PixelData = stored[index].tobytes()

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta

        path = folder / f"slice-{index:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def nifti_affine(geometry: SeriesGeometry) -> np.ndarray:
    """Return the RAS+ voxel-to-world affine of ``to_nifti_array``'s layout (mm).

    World coordinates are the DICOM patient coordinates with x and y negated
    (LPS to RAS), so both files of a subject describe the same space.
    """
    px = geometry.pixel_spacing_mm
    half = (geometry.size - 1) / 2 * px
    affine = np.diag([px, px, geometry.slice_thickness_mm, 1.0])
    affine[:3, 3] = (-half, -half, geometry.slice_positions_mm[0])
    return affine


def to_nifti_array(hu: np.ndarray) -> np.ndarray:
    """Reorder a (S, H, W) DICOM-ordered volume to the (X, Y, Z) RAS+ NIfTI layout.

    DICOM columns run towards the patient's left and rows towards posterior,
    while RAS+ voxel axes run towards right and anterior, so both in-plane axes
    are reversed: ``nifti[i, j, k] == hu[k, H - 1 - j, W - 1 - i]``.
    """
    return np.ascontiguousarray(hu[:, ::-1, ::-1].transpose(2, 1, 0))


def from_nifti_array(data: np.ndarray) -> np.ndarray:
    """Undo ``to_nifti_array``: (X, Y, Z) RAS+ back to (S, H, W) DICOM order."""
    return np.ascontiguousarray(data.transpose(2, 1, 0)[:, ::-1, ::-1])


def write_nifti(path: str | Path, volume: np.ndarray, geometry: SeriesGeometry) -> Path:
    """Write a (S, H, W) volume as NIfTI-1 in RAS+ orientation; slices along axis 2.

    int16 volumes are HU and uint8 volumes are label masks, both stored with
    scl_slope 1 and scl_inter 0. The file is gzip-compressed when ``path`` ends
    in ``.gz``. nibabel 5 writes a zero gzip timestamp, so the bytes depend only
    on the data and the file name.

    Raises:
        ValueError: if ``volume`` does not match ``geometry``.
    """
    expected = (geometry.n_slices, geometry.size, geometry.size)
    if volume.shape != expected:
        raise ValueError(f"volume shape must be {expected}, got {volume.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    image = nib.Nifti1Image(to_nifti_array(volume), nifti_affine(geometry))
    header = image.header
    header.set_data_dtype(volume.dtype)
    header.set_xyzt_units("mm")
    header.set_slope_inter(1.0, 0.0)
    # Scanner-based coordinates, the same as the DICOM patient space.
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    nib.save(image, path)
    return path
