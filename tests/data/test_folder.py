"""Image folders: layouts, formats, skipped files, validation split and slices of volumes."""

import logging

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medanomaly.config import DataConfig
from medanomaly.data import build_dataset, build_splits
from medanomaly.data.datasets import dicom_roots, list_files
from medanomaly.data.folder import find_layout, folder_splits
from medanomaly.data.splits import find_overlap


def write_png(path, size=(12, 16), rgb=False, seed=0):
    rng = np.random.default_rng(seed)
    shape = (*size, 3) if rgb else size
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def write_dicom_series(folder, slices=3, size=16, seed=0):
    """Write a CT series of signed 16-bit slices with positions along z."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
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
        ds.InstanceNumber = number + 1
        ds.PixelData = rng.integers(-1000, 1000, (size, size), dtype=np.int16).tobytes()
        pydicom.dcmwrite(folder / f"slice-{number:03d}.dcm", ds, enforce_file_format=True)


def write_nifti(path, shape=(16, 12, 5), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)


@pytest.fixture
def image_folder(tmp_path):
    """10 training PNGs, 3 normal and 2 abnormal test images in mixed formats."""
    root = tmp_path / "images"
    for number in range(10):
        write_png(root / "train" / "0.normal" / f"{number:02d}.png", seed=number)
    write_png(root / "test" / "0.normal" / "a.png", seed=20)
    write_png(root / "test" / "0.normal" / "b.png", rgb=True, seed=21)
    (root / "test" / "1.abnormal").mkdir(parents=True)
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(root / "test" / "0.normal" / "c.bmp")
    Image.fromarray(np.full((12, 16), 0.5, np.float32), "F").save(root / "test" / "1.abnormal" / "d.tif")
    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(root / "test" / "1.abnormal" / "e.jpg")
    return root


def test_layout_counts(image_folder):
    splits = folder_splits(image_folder, 16, 1, val_fraction=0.2)
    counts = splits.info["counts"]
    assert counts["train"] == {"normal": 8}
    assert counts["val"] == {"normal": 2}
    assert counts["test"] == {"normal": 3, "abnormal": 2}
    assert splits.info["skipped"] == []


def test_item_contract(image_folder):
    splits = folder_splits(image_folder, 24, 3, val_fraction=0.2)
    for dataset in (splits.train, splits.val, splits.test):
        item = dataset[0]
        assert item["image"].dtype == torch.float32
        assert item["image"].shape == (3, 24, 24)
        assert 0.0 <= item["image"].min().item() <= item["image"].max().item() <= 1.0
        assert item["index"] == 0
        assert isinstance(item["path"], str)
    labels = sorted(splits.test[i]["label"] for i in range(len(splits.test)))
    assert labels == [0, 0, 0, 1, 1]


def test_splits_are_disjoint(image_folder):
    splits = folder_splits(image_folder, 16, 1, val_fraction=0.3)
    ids = {name: getattr(splits, name).identifiers() for name in ("train", "val", "test")}
    assert find_overlap(ids) == {}


def test_plain_class_folder_names(tmp_path):
    for number in range(4):
        write_png(tmp_path / "train" / "normal" / f"{number}.png", seed=number)
    write_png(tmp_path / "test" / "normal" / "n.png")
    write_png(tmp_path / "test" / "abnormal" / "a.png")
    splits = folder_splits(tmp_path, 8, 1, val_fraction=0.25)
    assert splits.info["counts"]["test"] == {"normal": 1, "abnormal": 1}


def test_missing_test_folder_gives_no_test(tmp_path):
    for number in range(4):
        write_png(tmp_path / "train" / "0.normal" / f"{number}.png", seed=number)
    splits = folder_splits(tmp_path, 8, 1)
    assert splits.test is None


def test_missing_train_folder_shows_layout(tmp_path):
    write_png(tmp_path / "images" / "a.png")
    with pytest.raises(ValueError, match="train/0.normal"):
        find_layout(tmp_path)


def test_both_folder_names_rejected(tmp_path):
    write_png(tmp_path / "train" / "0.normal" / "a.png")
    write_png(tmp_path / "train" / "normal" / "b.png")
    with pytest.raises(ValueError, match="keep only one"):
        find_layout(tmp_path)


def test_unreadable_files_skipped(image_folder, caplog):
    (image_folder / "train" / "0.normal" / "broken.png").write_bytes(b"\x89PNG truncated")
    (image_folder / "train" / "0.normal" / "notes.txt").write_text("scanner notes")
    with caplog.at_level(logging.WARNING):
        splits = folder_splits(image_folder, 16, 1, val_fraction=0.2)
    skipped = {item["path"].rsplit("/", 1)[-1]: item["reason"] for item in splits.info["skipped"]}
    assert set(skipped) == {"broken.png", "notes.txt"}
    assert "cannot decode" in skipped["broken.png"]
    assert "unsupported file type" in skipped["notes.txt"]
    assert len(splits.train) + len(splits.val) == 10
    assert "broken.png" in caplog.text


def test_hidden_files_ignored(image_folder):
    (image_folder / "train" / "0.normal" / ".DS_Store").write_bytes(b"\x00\x01")
    splits = folder_splits(image_folder, 16, 1, val_fraction=0.2)
    assert splits.info["skipped"] == []


def test_empty_training_folder_raises(tmp_path):
    (tmp_path / "train" / "0.normal").mkdir(parents=True)
    with pytest.raises(ValueError, match="No readable images"):
        folder_splits(tmp_path, 8, 1)


def test_uncached_items_match_cached(image_folder):
    cached = folder_splits(image_folder, 16, 3, val_fraction=0.2, cache=True)
    uncached = folder_splits(image_folder, 16, 3, val_fraction=0.2, cache=False)
    for position in range(len(cached.test)):
        assert torch.allclose(cached.test[position]["image"], uncached.test[position]["image"], atol=1e-3)


def test_limits_apply(image_folder):
    splits = folder_splits(image_folder, 8, 1, val_fraction=0.0, limit=4, test_limit=2)
    assert len(splits.train) == 4
    assert splits.info["counts"]["test"] == {"normal": 1, "abnormal": 1}


def test_build_splits_from_config(image_folder):
    cfg = DataConfig(source="folder", path=str(image_folder), val_fraction=0.2, resize_mode="pad")
    splits = build_splits(cfg, image_size=16, in_channels=1)
    assert len(splits.train) == 8
    assert splits.train[0]["image"].shape == (1, 16, 16)


def test_build_dataset_unlabelled_folder(image_folder):
    dataset, skipped = build_dataset("folder", image_folder / "test", 16, 3)
    assert len(dataset) == 5
    assert skipped == []
    assert {dataset[i]["label"] for i in range(len(dataset))} == {-1}


def test_build_dataset_labelled_folder(image_folder):
    dataset, _ = build_dataset("folder", image_folder, 16, 3, labelled=True)
    assert sorted(dataset.labels.tolist()) == [0, 0, 0, 1, 1]


def test_build_dataset_labelled_needs_class_folders(tmp_path):
    write_png(tmp_path / "scans" / "a.png")
    with pytest.raises(ValueError, match="1.abnormal"):
        build_dataset("folder", tmp_path / "scans", 16, 3, labelled=True)


def test_invalid_source_raises(image_folder):
    with pytest.raises(ValueError, match="source"):
        build_dataset("cifar", image_folder, 16, 3)


# ---------------------------------------------------------------- DICOM and NIfTI inside folders


def test_dicom_and_nifti_slices_become_items(tmp_path):
    train = tmp_path / "train" / "0.normal"
    write_dicom_series(train / "sub-1", slices=3)
    write_dicom_series(train / "sub-2", slices=4, seed=1)
    write_nifti(train / "sub-3.nii.gz", shape=(16, 12, 5))
    write_png(train / "extra.png")
    splits = folder_splits(tmp_path, 16, 1, val_fraction=0.0, preset="minmax")
    assert len(splits.train) == 3 + 4 + 5 + 1
    assert splits.info["series"] == 3
    nifti_indices = sorted(s.index for s in splits.train.samples if s.path.endswith(".nii.gz"))
    assert nifti_indices == [0, 1, 2, 3, 4]
    item = splits.train[0]
    assert item["image"].shape == (1, 16, 16)
    assert item["image"].dtype == torch.float32


def test_mixed_folder_reports_no_false_skips(tmp_path, caplog):
    train = tmp_path / "train" / "0.normal"
    write_dicom_series(train, slices=2)
    write_nifti(train / "volume.nii.gz", shape=(16, 12, 3))
    write_png(train / "photo.png")
    with caplog.at_level(logging.WARNING):
        splits = folder_splits(tmp_path, 8, 1, val_fraction=0.0)
    assert len(splits.train) == 2 + 3 + 1
    assert splits.info["skipped"] == []
    assert "not a DICOM file" not in caplog.text


def test_validation_split_keeps_series_together(tmp_path):
    train = tmp_path / "train" / "0.normal"
    for subject in range(6):
        write_dicom_series(train / f"sub-{subject}", slices=3, seed=subject)
    splits = folder_splits(tmp_path, 8, 1, val_fraction=0.34)
    train_series = {s.series for s in splits.train.samples}
    val_series = {s.series for s in splits.val.samples}
    assert val_series
    assert not train_series & val_series
    assert len(splits.val) == 6


def test_non_image_dicom_file_skipped(tmp_path):
    train = tmp_path / "train" / "0.normal"
    write_dicom_series(train / "sub-1", slices=2)
    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR, no pixel data
    report.SOPInstanceUID = generate_uid()
    report.file_meta.MediaStorageSOPClassUID = report.SOPClassUID
    report.file_meta.MediaStorageSOPInstanceUID = report.SOPInstanceUID
    report.Modality = "SR"
    pydicom.dcmwrite(train / "sub-1" / "report.dcm", report, enforce_file_format=True)
    splits = folder_splits(tmp_path, 8, 1, val_fraction=0.0)
    assert len(splits.train) == 2
    assert [item["path"].endswith("report.dcm") for item in splits.info["skipped"]] == [True]


def test_build_dataset_dicom_and_nifti(tmp_path):
    write_dicom_series(tmp_path / "ct", slices=3)
    write_nifti(tmp_path / "vol.nii.gz", shape=(16, 12, 5))
    dicom, skipped = build_dataset("dicom", tmp_path / "ct", 32, 1, preset="brain")
    nifti, _ = build_dataset("nifti", tmp_path / "vol.nii.gz", 32, 3, slice_axis=0)
    assert len(dicom) == 3
    assert skipped == []
    assert dicom[2]["index"] == 0
    assert len(nifti) == 16
    assert nifti[0]["image"].shape == (3, 32, 32)


def test_build_dataset_volumes_reject_labelled(tmp_path):
    write_nifti(tmp_path / "vol.nii.gz")
    with pytest.raises(ValueError, match="no labels"):
        build_dataset("nifti", tmp_path / "vol.nii.gz", 32, 1, labelled=True)


def test_build_splits_from_dicom_folder(tmp_path):
    for subject in range(4):
        write_dicom_series(tmp_path / "ct" / f"sub-{subject}", slices=2, seed=subject)
    cfg = DataConfig(source="dicom", path=str(tmp_path / "ct"), val_fraction=0.25)
    splits = build_splits(cfg, image_size=16, in_channels=1)
    assert len(splits.train) == 6
    assert len(splits.val) == 2
    assert splits.test is None
    assert set(splits.train.labels.tolist()) == {0}


def test_dicom_read_one_series_folder_at_a_time(tmp_path):
    write_dicom_series(tmp_path / "sub-1", slices=2)
    write_dicom_series(tmp_path / "sub-2", slices=2, seed=1)
    write_dicom_series(tmp_path / "loose", slices=2, seed=2)
    write_png(tmp_path / "loose" / "photo.png")
    files = list_files(tmp_path)
    dicom = {file for file in files if file.suffix == ".dcm"}
    roots = dicom_roots(tmp_path, files, dicom)
    loose = sorted(file for file in dicom if file.parent.name == "loose")
    assert roots == loose + [tmp_path / "sub-1", tmp_path / "sub-2"]
