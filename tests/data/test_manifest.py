"""Manifest parsing, row checks, grouped validation split and slice selection."""

import logging

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medanomaly.config import DataConfig
from medanomaly.data import build_dataset, build_splits
from medanomaly.data.manifest import ManifestError, manifest_splits, read_manifest
from medanomaly.data.splits import find_overlap


def write_png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (10, 14), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_manifest(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def cohort(tmp_path):
    """Twelve PNGs of six subjects (two each) under tmp_path/study/images."""
    root = tmp_path / "study"
    for subject in range(6):
        for view in range(2):
            write_png(root / "images" / f"s{subject}-{view}.png", seed=subject * 2 + view)
    return root


def cohort_manifest(root, label="normal"):
    lines = ["path,label,group"]
    for subject in range(6):
        for view in range(2):
            lines.append(f"images/s{subject}-{view}.png,{label},sub-{subject}")
    return write_manifest(root / "train.csv", "\n".join(lines) + "\n")


def rejection(manifest, **options):
    with pytest.raises(ManifestError) as error:
        read_manifest(manifest, **options)
    return str(error.value)


def test_reads_rows_relative_to_manifest(cohort):
    rows = read_manifest(cohort_manifest(cohort), training=True)
    assert len(rows) == 12
    assert rows[0].row == 2
    assert rows[0].path == cohort / "images" / "s0-0.png"
    assert rows[0].group == "sub-0"
    assert rows[0].label == 0


def test_training_split_keeps_groups_together(cohort):
    splits = manifest_splits(cohort_manifest(cohort), 16, 1, val_fraction=0.34, seed=1)
    train_groups = {s.group for s in splits.train.samples}
    val_groups = {s.group for s in splits.val.samples}
    assert len(val_groups) == 2
    assert not train_groups & val_groups
    assert len(splits.train) + len(splits.val) == 12
    assert splits.test is None


def test_no_image_in_two_splits(cohort):
    splits = manifest_splits(cohort_manifest(cohort), 16, 1, val_fraction=0.5)
    ids = {"train": splits.train.identifiers(), "val": splits.val.identifiers()}
    assert find_overlap(ids) == {}


def test_info_counts(cohort):
    splits = manifest_splits(cohort_manifest(cohort), 16, 1, val_fraction=0.34, seed=1)
    assert splits.info["counts"]["train"] == {"normal": 8}
    assert splits.info["counts"]["val"] == {"normal": 4}
    assert splits.info["rows"] == 12
    assert splits.info["groups"] == {"train": 4, "val": 2}


def test_empty_label_means_normal(cohort):
    splits = manifest_splits(cohort_manifest(cohort, label=""), 16, 1)
    assert set(splits.train.labels.tolist()) == {0}


def test_abnormal_row_rejected_for_training(cohort):
    manifest = write_manifest(
        cohort / "bad.csv", "path,label\nimages/s0-0.png,normal\nimages/s0-1.png,abnormal\n"
    )
    message = rejection(manifest, training=True)
    assert "row 3" in message
    assert "abnormal" in message
    assert "test manifest" in message


def test_missing_path_column(cohort):
    manifest = write_manifest(cohort / "bad.csv", "file,label\nimages/s0-0.png,normal\n")
    message = rejection(manifest)
    assert "'path' column" in message


def test_empty_path(cohort):
    manifest = write_manifest(cohort / "bad.csv", "path,label\n,normal\n")
    assert "row 2: empty path" in rejection(manifest)


def test_missing_file(cohort):
    manifest = write_manifest(cohort / "bad.csv", "path\nimages/absent.png\n")
    message = rejection(manifest)
    assert "row 2: file not found" in message
    assert "absent.png" in message


def test_bad_label(cohort):
    manifest = write_manifest(cohort / "bad.csv", "path,label\nimages/s0-0.png,healthy\n")
    message = rejection(manifest)
    assert "row 2: invalid label 'healthy'" in message
    assert "normal, abnormal, 0, 1" in message


def test_bad_slice_selection(cohort):
    manifest = write_manifest(cohort / "bad.csv", "path,slices\nimages/s0-0.png,3-5\n")
    message = rejection(manifest)
    assert "row 2: invalid slice selection '3-5'" in message
    assert "start:stop" in message


def test_unknown_preset(cohort):
    manifest = write_manifest(cohort / "bad.csv", "path,preset\nimages/s0-0.png,brian\n")
    message = rejection(manifest)
    assert "row 2" in message
    assert "brian" in message
    assert "brain" in message


def test_too_many_values(cohort):
    manifest = write_manifest(cohort / "bad.csv", "path,label\nimages/s0-0.png,normal,extra\n")
    assert "more values than header columns" in rejection(manifest)


def test_all_bad_rows_listed(cohort):
    manifest = write_manifest(
        cohort / "bad.csv",
        "path,label,slices\nimages/s0-0.png,normal,\n,normal,\nimages/s0-1.png,maybe,\n"
        "images/s1-0.png,normal,a:b\n",
    )
    message = rejection(manifest)
    assert "row 3" in message
    assert "row 4" in message
    assert "row 5" in message
    assert "row 2" not in message
    assert "header as row 1" in message


def test_blank_lines_keep_spreadsheet_numbering(cohort):
    manifest = write_manifest(cohort / "bad.csv", "path\nimages/s0-0.png\n\nimages/absent.png\n")
    assert "row 4: file not found" in rejection(manifest)


def test_header_only_manifest(cohort):
    manifest = write_manifest(cohort / "empty.csv", "path,label\n")
    assert "no data rows" in rejection(manifest)


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "absent.csv")


def test_unknown_column_warns(cohort, caplog):
    manifest = write_manifest(cohort / "notes.csv", "path,comment\nimages/s0-0.png,looks fine\n")
    with caplog.at_level(logging.WARNING):
        read_manifest(manifest)
    assert "comment" in caplog.text


def test_byte_order_mark_and_case(cohort):
    manifest = cohort / "excel.csv"
    manifest.write_bytes("\ufeffPath,Label\nimages/s0-0.png,Normal\n".encode("utf-8"))
    rows = read_manifest(manifest)
    assert rows[0].label == 0


def test_duplicate_image_rejected(cohort):
    manifest = write_manifest(
        cohort / "dup.csv", "path,group\nimages/s0-0.png,a\nimages/s0-0.png,b\n"
    )
    with pytest.raises(ManifestError, match="row 3.*also listed in row 2"):
        manifest_splits(manifest, 8, 1)


def test_unreadable_file_skipped(cohort):
    (cohort / "images" / "broken.png").write_bytes(b"not a png")
    manifest = write_manifest(
        cohort / "train.csv", "path\nimages/s0-0.png\nimages/s0-1.png\nimages/broken.png\n"
    )
    splits = manifest_splits(manifest, 8, 1, val_fraction=0.0)
    assert len(splits.train) == 2
    assert [item["path"].endswith("broken.png") for item in splits.info["skipped"]] == [True]


def test_folder_row_reads_every_image(cohort):
    manifest = write_manifest(cohort / "folder.csv", "path,group\nimages,all\n")
    splits = manifest_splits(manifest, 8, 1, val_fraction=0.0)
    assert len(splits.train) == 12


def test_scoring_manifest_keeps_labels(cohort):
    manifest = write_manifest(
        cohort / "test.csv", "path,label\nimages/s0-0.png,abnormal\nimages/s0-1.png,\nimages/s1-0.png,0\n"
    )
    dataset, skipped = build_dataset("manifest", manifest, 16, 3)
    assert dataset.labels.tolist() == [1, -1, 0]
    assert skipped == []
    assert dataset[0]["image"].shape == (3, 16, 16)


def test_labelled_manifest_needs_every_label(cohort):
    manifest = write_manifest(cohort / "test.csv", "path,label\nimages/s0-0.png,abnormal\nimages/s0-1.png,\n")
    with pytest.raises(ManifestError, match="row 3: no label"):
        build_dataset("manifest", manifest, 16, 3, labelled=True)


def test_build_splits_from_config(cohort):
    cfg = DataConfig(source="manifest", path=str(cohort_manifest(cohort)), val_fraction=0.2)
    splits = build_splits(cfg, image_size=8, in_channels=3)
    assert len(splits.train) + len(splits.val) == 12
    assert splits.train[0]["image"].shape == (3, 8, 8)


# ---------------------------------------------------------------- volumes


def write_nifti(path, slices=6):
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.random.default_rng(0).normal(size=(12, 10, slices)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)


def test_slice_selection_on_volume(tmp_path):
    write_nifti(tmp_path / "vol" / "sub-1.nii.gz")
    write_nifti(tmp_path / "vol" / "sub-2.nii.gz")
    manifest = write_manifest(
        tmp_path / "test.csv",
        "path,label,slices,preset\nvol/sub-1.nii.gz,normal,1:3,minmax\nvol/sub-2.nii.gz,abnormal,0;5,\n",
    )
    dataset, _ = build_dataset("manifest", manifest, 16, 1, labelled=True)
    assert [(s.index, s.label) for s in dataset.samples] == [(1, 0), (2, 0), (0, 1), (5, 1)]


def test_slice_selection_outside_volume(tmp_path):
    write_nifti(tmp_path / "sub-1.nii.gz", slices=4)
    manifest = write_manifest(tmp_path / "train.csv", "path,slices\nsub-1.nii.gz,10:20\n")
    with pytest.raises(ManifestError, match="row 2: slice selection matches no slice"):
        manifest_splits(manifest, 8, 1)


def test_volume_slices_stay_in_one_split(tmp_path):
    for subject in range(4):
        write_nifti(tmp_path / f"sub-{subject}.nii.gz")
    lines = ["path"] + [f"sub-{subject}.nii.gz" for subject in range(4)]
    manifest = write_manifest(tmp_path / "train.csv", "\n".join(lines) + "\n")
    splits = manifest_splits(manifest, 8, 1, val_fraction=0.25)
    train_files = {s.path for s in splits.train.samples}
    val_files = {s.path for s in splits.val.samples}
    assert len(val_files) == 1
    assert not train_files & val_files
    assert len(splits.val) == 6


def test_slice_selection_on_dicom_series(tmp_path):
    from medanomaly.synthetic import write_cohort

    write_cohort(tmp_path, n_healthy=2, n_test_healthy=1, n_abnormal=1, slices_per_series=6, size=32,
                 formats=("dicom",))  # fmt: skip
    manifest = write_manifest(tmp_path / "part.csv", "path,label,slices\ndicom/train/sub-000,normal,2:4\n")
    dataset, _ = build_dataset("manifest", manifest, 16, 1, labelled=True)
    names = sorted(sample.path.rsplit("/", 1)[-1] for sample in dataset.samples)
    assert names == ["slice-002.dcm", "slice-003.dcm"]


def test_dicom_series_selection_names_positions(tmp_path):
    from medanomaly.synthetic import write_cohort

    write_cohort(tmp_path, n_healthy=2, n_test_healthy=1, n_abnormal=1, slices_per_series=6, size=32,
                 formats=("dicom",))  # fmt: skip
    manifest = write_manifest(tmp_path / "part.csv", "path,slices\ndicom/train/sub-000,8:9\n")
    with pytest.raises(ManifestError, match="it has slices 0 to 5"):
        manifest_splits(manifest, 16, 1)
