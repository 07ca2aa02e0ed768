"""Aggregation of run records into Table 1 rows, and the CSV and Markdown writers."""

import csv
import json
import math

import pytest

from medanomaly.experiments import table1
from medanomaly.experiments.table1 import aggregate, load_records, write_record, write_report


def make_record(model="skipganomaly_pp", name="bird", seed=0, honest=0.6, paper=0.8, profile="cpu"):
    """Return a minimal run record with a two-epoch curve."""
    return {
        "schema_version": table1.RECORD_SCHEMA_VERSION,
        "model": model,
        "abnormal_class": name,
        "seed": seed,
        "profile": profile,
        "finished_at": "2026-12-04T12:00:00+00:00",
        "data": {
            "source": "cifar10-jpg.tar.gz",
            "sha256": None,
            "layout": "images",
            "train_images": 4500,
            "val_images": 500,
            "test_normal": 1800,
            "test_abnormal": 1200,
        },
        "settings": {
            "epochs": 2,
            "batch_size": 64,
            "limit": 5000,
            "test_limit": 3000,
            "val_fraction": 0.1,
            "paper_batch_size": 64,
        },
        "honest": {"auroc": honest, "best_epoch": 2, "selection_metric": "val_rec_error"},
        "paper": {"auroc": paper, "best_epoch": 1, "eval_auroc_at_best_epoch": honest - 0.1},
        "epochs": [
            {"epoch": 1, "paper_auroc": paper, "eval_auroc": honest - 0.1},
            {"epoch": 2, "paper_auroc": paper - 0.2, "eval_auroc": honest},
        ],
        "timing": {"total_seconds": 600.0, "train_seconds": 500.0, "epoch_seconds_mean": 250.0},
        "environment": {"device": "cpu", "torch_threads": 2, "load_average_at_start": 1.0},
    }


def find_row(rows, model, name):
    return next(row for row in rows if row.model == model and row.abnormal_class == name)


def test_single_seed_has_no_std():
    rows = aggregate([make_record()])
    row = find_row(rows, "skipganomaly_pp", "bird")
    assert row.honest_mean == pytest.approx(0.6)
    assert math.isnan(row.honest_std)
    assert math.isnan(row.paper_std)


def test_mean_and_std_over_seeds():
    records = [
        make_record(seed=0, honest=0.5, paper=0.7),
        make_record(seed=1, honest=0.7, paper=0.9),
        make_record(seed=2, honest=0.6, paper=0.8),
    ]
    row = find_row(aggregate(records), "skipganomaly_pp", "bird")
    assert row.seeds == [0, 1, 2]
    assert row.honest_mean == pytest.approx(0.6)
    assert row.honest_std == pytest.approx(0.1)  # sample standard deviation, ddof 1
    assert row.paper_mean == pytest.approx(0.8)
    assert row.paper_std == pytest.approx(0.1)
    assert row.gap == pytest.approx(0.2)


def test_gap_splits_into_two_effects():
    row = find_row(aggregate([make_record(honest=0.6, paper=0.8)]), "skipganomaly_pp", "bird")
    assert row.batchnorm_effect == pytest.approx(0.3)  # 0.8 - eval AUROC 0.5 at epoch 1
    assert row.selection_effect == pytest.approx(-0.1)  # 0.5 - honest 0.6
    assert row.batchnorm_effect + row.selection_effect == pytest.approx(row.gap)


def test_mean_row_averages_classes():
    records = [
        make_record(name="bird", honest=0.4, paper=0.6),
        make_record(name="ship", honest=0.8, paper=0.9),
    ]
    row = find_row(aggregate(records), "skipganomaly_pp", "mean")
    assert row.classes == ["bird", "ship"]
    assert row.honest_mean == pytest.approx(0.6)
    assert row.paper_mean == pytest.approx(0.75)
    assert row.published == pytest.approx((0.819 + 0.998) / 2)


def test_mean_row_std_over_complete_seeds():
    records = [
        make_record(name="bird", seed=0, honest=0.4),
        make_record(name="ship", seed=0, honest=0.6),  # seed 0 class mean 0.5
        make_record(name="bird", seed=1, honest=0.6),
        make_record(name="ship", seed=1, honest=0.8),  # seed 1 class mean 0.7
        make_record(name="bird", seed=2, honest=0.9),  # seed 2 lacks ship
    ]
    row = find_row(aggregate(records), "skipganomaly_pp", "mean")
    assert row.honest_std == pytest.approx(math.sqrt(0.02))  # std of 0.5 and 0.7


def test_rows_follow_table_order():
    records = [
        make_record(model="ganomaly", name="ship"),
        make_record(model="ganomaly", name="bird"),
        make_record(model="skipganomaly_pp", name="automobile"),
    ]
    order = [(row.model, row.abnormal_class) for row in aggregate(records)]
    assert order == [
        ("skipganomaly_pp", "automobile"),
        ("skipganomaly_pp", "mean"),
        ("ganomaly", "bird"),
        ("ganomaly", "ship"),
        ("ganomaly", "mean"),
    ]


def test_profiles_kept_apart():
    records = [make_record(profile="cpu", honest=0.5), make_record(profile="full", honest=0.9)]
    rows = [row for row in aggregate(records) if row.abnormal_class == "bird"]
    assert [(row.profile, row.honest_mean) for row in rows] == [("cpu", 0.5), ("full", 0.9)]


def test_published_uses_car_column_for_automobile():
    row = find_row(aggregate([make_record(name="automobile")]), "skipganomaly_pp", "automobile")
    assert row.published == pytest.approx(0.891)


def test_record_round_trip(tmp_path):
    write_record(tmp_path / "a.json", make_record())
    assert load_records(tmp_path) == [make_record()]


def test_record_write_leaves_no_temporary(tmp_path):
    write_record(tmp_path / "a.json", make_record())
    assert [path.name for path in tmp_path.iterdir()] == ["a.json"]


def test_unreadable_record_skipped(tmp_path):
    write_record(tmp_path / "good.json", make_record())
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "old.json").write_text(json.dumps({"schema_version": 0}))
    assert len(load_records(tmp_path)) == 1


def test_report_csv_values(tmp_path):
    records_dir = tmp_path / "runs"
    write_record(records_dir / "a.json", make_record(seed=0, honest=0.5, paper=0.7))
    write_record(records_dir / "b.json", make_record(seed=1, honest=0.7, paper=0.9))
    write_report(records_dir, tmp_path)
    with open(tmp_path / "table1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    bird = rows[0]
    assert bird["abnormal_class"] == "bird"
    assert bird["seeds"] == "0;1"
    assert bird["published_auroc"] == "0.8190"
    assert bird["honest_auroc_mean"] == "0.6000"
    assert bird["honest_auroc_std"] == "0.1414"
    assert bird["paper_minus_honest"] == "0.2000"


def test_report_markdown_shows_spread(tmp_path):
    records_dir = tmp_path / "runs"
    write_record(records_dir / "a.json", make_record(seed=0, honest=0.5, paper=0.7))
    write_record(records_dir / "b.json", make_record(seed=1, honest=0.7, paper=0.9))
    write_report(records_dir, tmp_path)
    page = (tmp_path / "table1.md").read_text()
    assert "| 0.600 ± 0.141 | 0.800 ± 0.141 | +0.200 | 0, 1 |" in page


def test_report_names_processors(tmp_path):
    records_dir = tmp_path / "runs"
    old = make_record(seed=0)
    new = make_record(seed=1)
    newer = make_record(seed=2)
    new["environment"]["processor"] = "CPU A"
    newer["environment"]["processor"] = "CPU A"
    for name, record in (("a", old), ("b", new), ("c", newer)):
        write_record(records_dir / f"{name}.json", record)
    write_report(records_dir, tmp_path)
    page = (tmp_path / "table1.md").read_text()
    assert "- Hardware: cpu (CPU A (2 runs); not recorded for 1 run), torch threads 2" in page


def test_report_without_processors_omits_them(tmp_path):
    write_record(tmp_path / "runs" / "a.json", make_record())
    write_report(tmp_path / "runs", tmp_path)
    page = (tmp_path / "table1.md").read_text()
    assert "- Hardware: cpu, torch threads 2" in page


def test_report_without_records_raises(tmp_path):
    with pytest.raises(ValueError, match="No run records"):
        write_report(tmp_path / "runs", tmp_path)
