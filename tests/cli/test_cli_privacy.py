"""No patient identifier from DICOM headers reaches MLflow or any output file."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medanomaly.cli import main

pytestmark = pytest.mark.slow

# Distinctive values, so a match in the outputs can only come from these headers.
IDENTIFIERS = {
    "PatientName": "ZZPRIVACY^DISTINCTIVE",
    "PatientID": "PIDX7351946",
    "PatientBirthDate": "19010203",
    "AccessionNumber": "ACCX8823105",
    "StudyDescription": "CONFIDENTIAL STUDY NOTE QX",
    "InstitutionName": "ZZ GENERAL HOSPITAL",
    "ReferringPhysicianName": "ZZREFERRER^DOCTOR",
}
TINY_CONFIG = """\
model:
  generator: {channels: [8, 16, 32, 64], bridge_channels: 64, decoder_channels: [32, 16, 8],
              head_channels: 8, se_reduction: 4}
  discriminator: {base_channels: 8}
data:
  val_fraction: 0.34
train:
  amp: false
"""


def write_ct_series(folder: Path, slices: int, lesion: bool, seed: int) -> None:
    """Write one 32 x 32 CT series in HU: soft tissue ellipse, optional hyperdense blob."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    series_uid, study_uid = generate_uid(), generate_uid()
    rows, columns = np.mgrid[0:32, 0:32]
    inside = ((rows - 16) / 12) ** 2 + ((columns - 16) / 10) ** 2 <= 1
    for number in range(slices):
        hu = np.where(inside, 35.0, -1000.0) + rng.normal(0, 3, (32, 32))
        if lesion:
            hu[12:18, 12:18] = 75.0
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        for key, value in IDENTIFIERS.items():
            setattr(ds, key, value)
        ds.Modality = "CT"
        ds.InstanceNumber = number + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(number * 5)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 5.0
        ds.Rows, ds.Columns = 32, 32
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        ds.PixelData = np.round(hu + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"slice{number:02d}.dcm", enforce_file_format=True)


def leaked(folder: Path) -> list[str]:
    """Return 'file: identifier' for every identifier found in the bytes of any file."""
    needles = {key: value.encode() for key, value in IDENTIFIERS.items()}
    needles.update({f"{key} (DICOM form)": value.replace("^", " ").encode()
                    for key, value in IDENTIFIERS.items() if "^" in value})
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found.extend(f"{path}: {key}" for key, needle in needles.items() if needle in data)
    return found


@pytest.fixture(autouse=True)
def single_thread():
    """Run torch on one thread; tiny tensors gain nothing from more (see the end-to-end tests)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_no_identifier_in_outputs(tmp_path, capsys):
    studies = tmp_path / "studies"
    for number in range(3):
        write_ct_series(studies / f"s{number}", slices=4, lesion=False, seed=number)
    write_ct_series(studies / "s3", slices=4, lesion=True, seed=3)
    (studies / "s3" / "broken.dcm").write_bytes(b"DICM but not really")
    (tmp_path / "healthy.csv").write_text(
        "path,label,group\nstudies/s0,normal,g0\nstudies/s1,normal,g1\nstudies/s2,normal,g2\n"
    )
    (tmp_path / "labelled.csv").write_text(
        "path,label,group\nstudies/s2,normal,g2\nstudies/s3/slice00.dcm,abnormal,g3\n"
        "studies/s3/slice01.dcm,abnormal,g3\n"
    )
    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG)

    assert main(["train", "--config", "tiny.yaml", "--manifest", "healthy.csv", "--preset", "brain",
                 "--epochs", "1", "--batch-size", "4", "--image-size", "16", "--channels", "1",
                 "--device", "cpu", "--register", "ct-privacy"]) == 0
    assert main(["evaluate", "--model", "models:/ct-privacy/1", "--manifest", "labelled.csv"]) == 0
    assert main(["score", "--model", "models:/ct-privacy/1", "--dicom-dir", "studies",
                 "--out", "scored", "--panels", "2"]) == 0
    assert main(["inspect", "--dicom-dir", "studies", "--preset", "brain", "--json"]) == 0
    captured = capsys.readouterr()

    with open(tmp_path / "scored" / "scores.csv", newline="") as handle:
        scored = list(csv.DictReader(handle))
    with open(tmp_path / "scored" / "series_summary.csv", newline="") as handle:
        series = list(csv.DictReader(handle))
    assert len(scored) == 16
    assert len(series) == 4
    assert "broken.dcm" in (tmp_path / "scored" / "skipped.csv").read_text()
    assert leaked(studies)  # the search finds what the inputs contain
    assert leaked(tmp_path / "runs") == []
    assert leaked(tmp_path / "mlartifacts") == []
    assert leaked(tmp_path / "scored") == []
    assert [f for f in leaked(tmp_path) if f.split(":")[0].endswith("mlflow.db")] == []
    for stream in (captured.out, captured.err):
        assert [value for value in IDENTIFIERS.values() if value in stream] == []
