"""Tests for write_cohort: determinism, manifests, slice labels and the on-disk layout."""

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medanomaly.synthetic import PATIENT_ID_PREFIX, PATIENT_NAME_PREFIX, write_cohort
from medanomaly.synthetic.writers import from_nifti_array

SMALL = dict(n_healthy=3, n_test_healthy=2, n_abnormal=3, slices_per_series=6, size=64)


def _read_manifest(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cohort"), seed=3, **SMALL)


def test_same_seed_identical_files(cohort, tmp_path):
    again = write_cohort(tmp_path / "again", seed=3, **SMALL)

    first, second = _files(cohort.out_dir), _files(again.out_dir)

    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_different_seed_differs(cohort, tmp_path):
    other = write_cohort(tmp_path / "other", seed=4, formats=("dicom",), **SMALL)
    name = "dicom/train/sub-000/slice-002.dcm"

    first = pydicom.dcmread(cohort.out_dir / name).pixel_array
    second = pydicom.dcmread(other.out_dir / name).pixel_array

    assert not np.array_equal(first, second)


def test_subjects_differ_within_cohort(cohort):
    first = pydicom.dcmread(cohort.out_dir / "dicom/train/sub-000/slice-002.dcm").pixel_array
    second = pydicom.dcmread(cohort.out_dir / "dicom/train/sub-001/slice-002.dcm").pixel_array

    assert not np.array_equal(first, second)


def test_healthy_manifest_normal_only(cohort):
    columns, rows = _read_manifest(cohort.healthy_manifest)

    assert columns == ["path", "label", "group"]
    assert len(rows) == 3
    assert {row["label"] for row in rows} == {"normal"}
    assert len({row["group"] for row in rows}) == 3
    for row in rows:
        assert (cohort.out_dir / row["path"]).is_dir()
        assert row["group"].startswith("sub-")


def test_test_manifest_labels(cohort):
    columns, rows = _read_manifest(cohort.test_manifest)
    labels = [row["label"] for row in rows]

    assert columns == ["path", "label", "group"]
    assert labels.count("normal") == 2
    assert labels.count("abnormal") == 3
    for row in rows:
        assert (cohort.out_dir / row["path"]).is_dir()


def test_groups_do_not_span_manifests(cohort):
    _, train = _read_manifest(cohort.healthy_manifest)
    _, test = _read_manifest(cohort.test_manifest)

    assert not {r["group"] for r in train} & {r["group"] for r in test}


def test_abnormal_series_only_lesion_slices(cohort):
    _, rows = _read_manifest(cohort.test_manifest)
    for row in (r for r in rows if r["label"] == "abnormal"):
        record = next(s for s in cohort.subjects if s.subject == row["group"])
        mask = from_nifti_array(np.asarray(nib.load(record.mask_path).dataobj))
        files = sorted((cohort.out_dir / row["path"]).glob("*.dcm"))
        indices = [pydicom.dcmread(f).InstanceNumber - 1 for f in files]

        assert indices == list(record.lesion_slices)
        for index in indices:
            assert mask[index].any(), f"{row['path']} slice {index} has no lesion"


def test_normal_series_have_no_lesions(cohort):
    for record in cohort.subjects:
        if record.label == "normal":
            assert record.lesion_slices == ()
            assert record.mask_path is None
            assert len(list(record.dicom_dir.glob("*.dcm"))) == 6


def test_nifti_manifests_select_lesion_slices(cohort):
    columns, rows = _read_manifest(cohort.nifti_test_manifest)
    records = {s.subject: s for s in cohort.subjects}

    assert columns == ["path", "label", "group", "slices"]
    for row in rows:
        record = records[row["group"]]
        expected = ";".join(map(str, record.lesion_slices)) if row["label"] == "abnormal" else ""
        assert row["slices"] == expected
        assert (cohort.out_dir / row["path"]).is_file()


def test_nifti_matches_dicom(cohort):
    record = cohort.subjects[0]
    volume = from_nifti_array(nib.load(record.nifti_path).get_fdata())
    ds = pydicom.dcmread(record.dicom_dir / "slice-004.dcm")

    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)

    assert volume.shape == (6, 64, 64)
    assert np.array_equal(volume[4], hu)


def test_lesions_json_matches_records(cohort):
    document = json.loads(cohort.lesions_json.read_text())
    listed = {s["subject"]: s for s in document["subjects"]}
    abnormal = [s for s in cohort.subjects if s.label == "abnormal"]

    assert document["seed"] == 3
    assert document["slice_index_base"] == 0
    assert set(listed) == {s.subject for s in abnormal}
    for record in abnormal:
        entry = listed[record.subject]
        assert entry["lesion_slices"] == list(record.lesion_slices)
        assert {lesion["type"] for lesion in entry["lesions"]} <= {"haemorrhage", "infarct"}
        for lesion in entry["lesions"]:
            assert set(lesion) >= {"type", "hu", "centre_mm", "centre_pixel", "radius_mm", "slices"}


def test_both_lesion_kinds_present(cohort):
    kinds = {lesion.kind for s in cohort.subjects for lesion in s.lesions}

    assert kinds == {"haemorrhage", "infarct"}


def test_slice_counts(cohort):
    assert cohort.n_train_slices == 18
    assert cohort.n_test_normal_slices == 12
    assert cohort.n_test_abnormal_slices == sum(len(s.lesion_slices) for s in cohort.subjects)
    assert cohort.n_test_abnormal_slices >= 3


def test_patient_constants_in_dicom(cohort):
    raw = (cohort.out_dir / "dicom/test/healthy/sub-003/slice-000.dcm").read_bytes()

    assert PATIENT_NAME_PREFIX.encode() in raw
    assert f"{PATIENT_ID_PREFIX}3-003".encode() in raw


def test_no_patient_constants_in_manifests(cohort):
    for path in (cohort.healthy_manifest, cohort.test_manifest, cohort.lesions_json):
        text = path.read_text()
        assert PATIENT_NAME_PREFIX not in text
        assert PATIENT_ID_PREFIX not in text


def test_existing_cohort_rejected(cohort):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_cohort(cohort.out_dir, seed=3, **SMALL)


def test_overwrite_replaces_cohort(tmp_path):
    write_cohort(
        tmp_path, n_healthy=2, n_test_healthy=0, n_abnormal=0, slices_per_series=2, size=32
    )
    (tmp_path / "notes.txt").write_text("kept")

    info = write_cohort(
        tmp_path, n_healthy=1, n_test_healthy=0, n_abnormal=1, slices_per_series=2, size=32,
        overwrite=True,
    )

    assert not (tmp_path / "dicom/train/sub-001").exists()
    assert (tmp_path / "notes.txt").read_text() == "kept"
    assert len(info.subjects) == 2


def test_nifti_only_cohort(tmp_path):
    info = write_cohort(
        tmp_path, formats="nifti", n_healthy=2, n_test_healthy=1, n_abnormal=1,
        slices_per_series=4, size=32,
    )
    columns, rows = _read_manifest(info.healthy_manifest)

    assert not (tmp_path / "dicom").exists()
    assert columns == ["path", "label", "group", "slices"]
    assert all(row["path"].endswith(".nii.gz") for row in rows)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"n_healthy": 0}, "n_healthy"),
        ({"n_test_healthy": -1}, "n_test_healthy"),
        ({"n_abnormal": -1}, "n_abnormal"),
        ({"slices_per_series": 0}, "slices_per_series"),
        ({"size": 8}, "size"),
        ({"seed": -1}, "seed"),
        ({"formats": ("png",)}, "formats"),
        ({"formats": ()}, "formats"),
    ],
)
def test_bad_arguments_rejected(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        write_cohort(tmp_path, **arguments)
