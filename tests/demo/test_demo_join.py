"""Joining scores.csv with manifest labels, and the demo's printed summary."""

import csv
from pathlib import Path

import numpy as np
import pytest

from medanomaly.demo import (
    DemoSummary,
    auroc_by_lesion_type,
    format_summary,
    join_scores_with_labels,
    mlflow_ui_command,
    registry_url,
)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def series(tmp_path):
    """Two series folders with two files each, and a manifest labelling the folders."""
    for name in ("healthy/sub-001", "abnormal/sub-002"):
        folder = tmp_path / "dicom" / name
        folder.mkdir(parents=True)
        for index in range(2):
            (folder / f"slice-{index:03d}.dcm").write_bytes(b"")
    manifest = write_csv(
        tmp_path / "test.csv",
        ["path", "label", "group"],
        [["dicom/healthy/sub-001", "normal", "sub-001"], ["dicom/abnormal/sub-002", "abnormal", "sub-002"]],
    )
    return tmp_path, manifest


def write_scores(path: Path, rows: list[tuple[str, float]]) -> Path:
    header = ["path", "frame_or_slice", "score", "threshold", "flagged"]
    return write_csv(path, header, [[file, 0, score, 0.5, int(score > 0.5)] for file, score in rows])


def test_join_labels_each_slice(series):
    root, manifest = series
    scores = write_scores(
        root / "scores.csv",
        [
            ("dicom/abnormal/sub-002/slice-000.dcm", 0.9),
            ("dicom/healthy/sub-001/slice-000.dcm", 0.1),
            ("dicom/healthy/sub-001/slice-001.dcm", 0.2),
        ],
    )
    joined = join_scores_with_labels(scores, manifest)
    assert joined.labels.tolist() == [1, 0, 0]
    assert joined.groups == ["sub-002", "sub-001", "sub-001"]
    np.testing.assert_allclose(joined.scores, [0.9, 0.1, 0.2])


def test_auroc_per_lesion_type(series):
    import json

    root, manifest = series
    lesions = {
        "subjects": [
            {"subject": "sub-001", "dicom": "dicom/healthy/sub-001", "lesions": []},
            {
                "subject": "sub-002",
                "dicom": "dicom/abnormal/sub-002",
                "lesions": [{"type": "infarct", "slices": [0, 1]}, {"type": "haemorrhage", "slices": [1]}],
            },
        ]
    }
    (root / "lesions.json").write_text(json.dumps(lesions))
    scores = write_scores(
        root / "scores.csv",
        [
            ("dicom/abnormal/sub-002/slice-000.dcm", 0.15),
            ("dicom/abnormal/sub-002/slice-001.dcm", 0.9),
            ("dicom/healthy/sub-001/slice-000.dcm", 0.1),
            ("dicom/healthy/sub-001/slice-001.dcm", 0.2),
        ],
    )
    by_type = auroc_by_lesion_type(join_scores_with_labels(scores, manifest), root / "lesions.json")
    assert list(by_type) == ["haemorrhage", "infarct"]
    assert by_type["haemorrhage"] == {"auroc": 1.0, "slices": 1}
    # Infarct slices 0.15 and 0.9 against normals 0.1 and 0.2: 3 of 4 pairs ranked right.
    assert by_type["infarct"] == {"auroc": 0.75, "slices": 2}


def test_join_accepts_absolute_paths(series):
    root, manifest = series
    file = root / "dicom/abnormal/sub-002/slice-001.dcm"
    joined = join_scores_with_labels(write_scores(root / "scores.csv", [(str(file), 0.7)]), manifest)
    assert joined.labels.tolist() == [1]


def test_join_rejects_unlisted_file(series):
    root, manifest = series
    (root / "dicom/other").mkdir()
    scores = write_scores(root / "scores.csv", [("dicom/other/slice-000.dcm", 0.3)])
    with pytest.raises(ValueError, match=r"row 2: dicom/other/slice-000.dcm is in no row"):
        join_scores_with_labels(scores, manifest)


def test_join_rejects_missing_columns(series):
    root, manifest = series
    scores = write_csv(root / "scores.csv", ["path", "score"], [["dicom/healthy/sub-001/slice-000.dcm", 1]])
    with pytest.raises(ValueError, match="frame_or_slice"):
        join_scores_with_labels(scores, manifest)


def test_join_missing_table(series):
    root, manifest = series
    with pytest.raises(FileNotFoundError, match="medanomaly score"):
        join_scores_with_labels(root / "absent.csv", manifest)


def test_ui_command_quotes_path():
    command = mlflow_ui_command("sqlite:////tmp/my demo/mlflow.db")
    assert command == "mlflow ui --backend-store-uri 'sqlite:////tmp/my demo/mlflow.db'"


def test_registry_url():
    assert registry_url("demo-ct-head") == "http://127.0.0.1:5000/#/models/demo-ct-head"


def test_summary_lists_locations(tmp_path):
    summary = DemoSummary(
        cohort_dir=tmp_path / "cohort",
        run_dir=tmp_path / "runs" / "run-1",
        scores_dir=tmp_path / "scores",
        panel_paths=[tmp_path / "scores" / "panels" / "0001_a.png"],
        model_uri="models:/demo-ct-head/latest",
        tracking_uri="sqlite:////tmp/mlflow.db",
        metrics={"auroc": 0.95, "n_normal": 64, "n_abnormal": 30, "sensitivity": 0.8, "specificity": 0.9},
        seconds={"train": 10.0},
    )
    text = format_summary(summary, "demo-ct-head", "mlflow ui --backend-store-uri sqlite:////tmp/mlflow.db")
    assert f"run folder   {tmp_path / 'runs' / 'run-1'}" in text
    assert "AUROC        0.950 on 64 healthy and 30 lesion slices" in text
    assert f"top panel    {tmp_path / 'scores' / 'panels' / '0001_a.png'}" in text
    assert "  mlflow ui --backend-store-uri sqlite:////tmp/mlflow.db" in text
    assert "http://127.0.0.1:5000/#/models/demo-ct-head" in text
