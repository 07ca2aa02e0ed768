"""Data source reports: counts, series, shapes, value ranges and skipped files."""

import json
import pickle

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medanomaly.data import CIFAR10_CLASSES
from medanomaly.data.inspect import format_report, inspect_source


def write_png(path, size=(10, 14), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_ct_series(folder, slices=3, size=20):
    """Write a CT series whose values span -1000 to 1000 HU."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for number in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "CT"
        ds.PatientName = "Doe^Jane"
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = 1
        ds.RescaleIntercept = 0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, float(number)]
        pixels = np.linspace(-1000, 1000, size * size).reshape(size, size).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        pydicom.dcmwrite(folder / f"{number:03d}.dcm", ds, enforce_file_format=True)


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "folder"
    for number in range(5):
        write_png(root / "train" / "0.normal" / f"{number}.png", seed=number)
    write_png(root / "test" / "0.normal" / "n.png", size=(20, 30))
    write_png(root / "test" / "1.abnormal" / "a.png", size=(20, 30))
    (root / "test" / "1.abnormal" / "broken.png").write_bytes(b"broken")
    return root


def test_folder_report(image_folder):
    report = inspect_source("folder", image_folder)
    assert report["counts"] == {"train": {"normal": 5}, "test": {"normal": 1, "abnormal": 1}}
    assert report["shapes"] == {"1x10x14": 5, "1x20x30": 2}
    assert report["files_read"] == 7
    assert [item["path"].endswith("broken.png") for item in report["skipped"]] == [True]
    assert 0.0 <= report["value_range"][0] < report["value_range"][1] <= 1.0


def test_report_is_json_serialisable(image_folder):
    report = inspect_source("folder", image_folder)
    assert json.loads(json.dumps(report)) == report


def test_text_report(image_folder):
    text = format_report(inspect_source("folder", image_folder))
    assert "train: normal 5" in text
    assert "test: normal 1, abnormal 1" in text
    assert "1x20x30 (2)" in text
    assert "broken.png" in text


def test_manifest_report_shows_training_split(image_folder):
    manifest = image_folder / "train.csv"
    lines = ["path,group"] + [f"train/0.normal/{n}.png,s{n}" for n in range(5)]
    manifest.write_text("\n".join(lines) + "\n")
    report = inspect_source("manifest", manifest, val_fraction=0.2)
    assert report["counts"]["all"] == {"unknown": 5}
    assert report["counts"]["train"] == {"normal": 4}
    assert report["counts"]["val"] == {"normal": 1}
    assert report["rows"] == 5
    assert report["groups"] == 5


def test_labelled_manifest_report(image_folder):
    manifest = image_folder / "test.csv"
    manifest.write_text("path,label\ntest/0.normal/n.png,normal\ntest/1.abnormal/a.png,abnormal\n")
    report = inspect_source("manifest", manifest)
    assert report["counts"] == {"all": {"normal": 1, "abnormal": 1}}


def test_dicom_report_after_preset(tmp_path):
    write_ct_series(tmp_path / "ct", slices=3)
    report = inspect_source("dicom", tmp_path / "ct", preset="window:2000:0")
    assert report["counts"] == {"all": {"unknown": 3}}
    assert len(report["series"]) == 1
    series = report["series"][0]
    assert series["slices"] == 3
    assert series["files"] == 3
    assert series["shapes"] == {"1x20x20": 3}
    assert series["value_range"] == [pytest.approx(0.0), pytest.approx(1.0)]


def test_dicom_report_has_no_patient_name(tmp_path):
    write_ct_series(tmp_path / "ct", slices=2)
    text = json.dumps(inspect_source("dicom", tmp_path / "ct")) + format_report(
        inspect_source("dicom", tmp_path / "ct")
    )
    assert "Doe" not in text


def test_nifti_report(tmp_path):
    volume = np.random.default_rng(0).normal(size=(16, 12, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "vol.nii.gz")
    report = inspect_source("nifti", tmp_path / "vol.nii.gz", preset="minmax")
    assert report["counts"] == {"all": {"unknown": 4}}
    assert report["images"] == 4
    assert report["value_range"] == [pytest.approx(0.0), pytest.approx(1.0)]


def test_cifar10_report(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{n}" for n in range(1, 6)] + ["test_batch"]:
        labels = list(range(10))
        data = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as stream:
            pickle.dump({b"data": data, b"labels": labels}, stream)
    with open(folder / "batches.meta", "wb") as stream:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, stream)
    report = inspect_source("cifar10", folder, abnormal_class="car", val_fraction=0.0, cache=False)
    assert report["counts"]["test"] == {"normal": 9, "abnormal": 6}
    assert report["shapes"] == {"3x32x32": 60}
    assert "Abnormal class: automobile" in format_report(report)
    assert json.loads(json.dumps(report)) == report


def test_unknown_source_raises(tmp_path):
    with pytest.raises(ValueError, match="source"):
        inspect_source("png", tmp_path)


def test_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        inspect_source("folder", tmp_path / "absent")
