"""End-to-end run of the Table 1 pipeline on a tiny synthetic CIFAR-10 Python release.

One sweep (two models, two abnormal classes, one seed, two epochs on 16x16
images) runs once per module; the tests below check what it wrote.
"""

import csv
import importlib.util
import json
import pickle
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest

from medanomaly.data import CIFAR10_CLASSES
from medanomaly.engine.device import cpu_model

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_PER_CLASS = 10  # 2 per class in each of the 5 training batches
TEST_PER_CLASS = 4
LABEL = "tiny"
# 16x16 inputs keep the sweep within seconds; every model accepts that size.
PROFILE_YAML = """\
model:
  image_size: 16
data:
  limit: 36
  val_fraction: 0.25
train:
  epochs: 2
  batch_size: 8
tracking:
  log_model: false
"""
RECORD_NAMES = [
    f"{LABEL}__ganomaly__bird__seed0.json",
    f"{LABEL}__ganomaly__ship__seed0.json",
    f"{LABEL}__skipganomaly_pp__bird__seed0.json",
    f"{LABEL}__skipganomaly_pp__ship__seed0.json",
]


def load_pipeline():
    """Import pipelines/cifar10_table1.py, which is a script and not a package module."""
    path = REPO_ROOT / "pipelines" / "cifar10_table1.py"
    spec = importlib.util.spec_from_file_location("cifar10_table1", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_python_release(root: Path) -> Path:
    """Write a miniature ``cifar-10-batches-py`` folder whose classes differ in mean colour."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_batch = TRAIN_PER_CLASS // 5
    batches = {
        f"data_batch_{n}": [c for c in range(10) for _ in range(per_batch)] for n in range(1, 6)
    }
    batches["test_batch"] = [c for c in range(10) for _ in range(TEST_PER_CLASS)]
    for name, labels in batches.items():
        means = np.asarray(labels)[:, None] * 20 + 30
        data = np.clip(means + rng.normal(0, 25, (len(labels), 3072)), 0, 255).astype(np.uint8)
        with open(folder / name, "wb") as stream:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, stream)
    with open(folder / "batches.meta", "wb") as stream:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10_CLASSES]}, stream)
    return folder


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Run the sweep once; return its arguments, folders, MLflow store and exit status."""
    root = tmp_path_factory.mktemp("table1")
    profile = root / "profile_tiny.yaml"
    profile.write_text(PROFILE_YAML)
    args = [
        "--models", "skipganomaly_pp,ganomaly",
        "--classes", "ship,bird",
        "--seeds", "0",
        "--profile-file", str(profile),
        "--label", LABEL,
        "--cifar10", str(write_python_release(root / "data")),
        "--out", str(root / "results"),
        "--runs-dir", str(root / "runs"),
        # Tiny tensors: a second thread only adds synchronisation cost on a busy CPU.
        "--threads", "1",
        "-q",
    ]
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    # The suite's autouse fixture is per test, so this module-wide run sets its own store.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        patch.setenv("MEDANOMALY_CACHE_DIR", str(root / "cache"))
        patch.chdir(root)
        started = time.perf_counter()
        status = load_pipeline().main(args)
        seconds = time.perf_counter() - started
    return {
        "args": args,
        "out": root / "results",
        "tracking_uri": tracking_uri,
        "status": status,
        "seconds": seconds,
    }


def read_page(sweep) -> str:
    return (sweep["out"] / "table1.md").read_text()


def read_record(sweep, name: str) -> dict:
    return json.loads((sweep["out"] / "runs" / name).read_text())


@pytest.mark.slow
def test_sweep_succeeds(sweep):
    assert sweep["status"] == 0


@pytest.mark.slow
def test_sweep_writes_one_record_per_run(sweep):
    names = sorted(path.name for path in (sweep["out"] / "runs").glob("*.json"))
    assert names == RECORD_NAMES


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["table1.md", "table1.csv", f"table1_{LABEL}.png", f"table1_curves_{LABEL}.png"]
)
def test_sweep_writes_table_file(sweep, name):
    assert (sweep["out"] / name).is_file()


@pytest.mark.slow
def test_page_has_both_protocol_columns(sweep):
    header = next(line for line in read_page(sweep).splitlines() if line.startswith("| model |"))
    assert "ours, honest" in header
    assert "ours, paper protocol" in header


@pytest.mark.slow
def test_page_states_profile_is_reduced(sweep):
    assert "This is not the full protocol" in read_page(sweep)


@pytest.mark.slow
@pytest.mark.parametrize(
    "row_start, published",
    [
        ("| Skip-GANomaly++ | bird |", "0.819"),
        ("| Skip-GANomaly++ | ship |", "0.998"),
        ("| GANomaly | bird |", "0.510"),
        ("| GANomaly | ship |", "0.616"),
        # Mean over the same two classes: (0.819 + 0.998) / 2.
        ("| Skip-GANomaly++ | **mean of 2** |", "0.908"),
    ],
)
def test_page_shows_published_value(sweep, row_start, published):
    rows = [line for line in read_page(sweep).splitlines() if line.startswith(row_start)]
    assert rows, row_start
    assert f"| {published} |" in rows[0]


@pytest.mark.slow
def test_page_quotes_authors_code_reference(sweep):
    assert "0.047 | 0.807 | 0.861 | 0.849 | 0.845" in read_page(sweep)


@pytest.mark.slow
def test_csv_has_class_and_mean_rows(sweep):
    with open(sweep["out"] / "table1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["model"], row["abnormal_class"]) for row in rows] == [
        ("skipganomaly_pp", "bird"),
        ("skipganomaly_pp", "ship"),
        ("skipganomaly_pp", "mean"),
        ("ganomaly", "bird"),
        ("ganomaly", "ship"),
        ("ganomaly", "mean"),
    ]
    assert all(row["honest_auroc_mean"] and row["paper_auroc_mean"] for row in rows)


@pytest.mark.slow
def test_record_has_both_curves(sweep):
    record = read_record(sweep, RECORD_NAMES[-1])
    assert [row["epoch"] for row in record["epochs"]] == [1, 2]
    assert all(0.0 <= row["paper_auroc"] <= 1.0 for row in record["epochs"])
    assert all(0.0 <= row["eval_auroc"] <= 1.0 for row in record["epochs"])
    assert record["data"]["train_images"] + record["data"]["val_images"] == 36


@pytest.mark.slow
def test_record_names_processor(sweep):
    record = read_record(sweep, RECORD_NAMES[-1])
    assert record["environment"]["processor"] == cpu_model()


@pytest.mark.slow
def test_record_honest_matches_eval_curve(sweep):
    # The eval-mode test AUROC of the validation-selected epoch is the honest figure.
    record = read_record(sweep, RECORD_NAMES[-1])
    epoch = record["honest"]["best_epoch"]
    assert record["epochs"][epoch - 1]["eval_auroc"] == pytest.approx(
        record["honest"]["auroc"], abs=1e-6
    )


@pytest.mark.slow
def test_record_paper_is_best_epoch(sweep):
    record = read_record(sweep, RECORD_NAMES[-1])
    assert record["paper"]["auroc"] == max(row["paper_auroc"] for row in record["epochs"])


@pytest.mark.slow
def test_mlflow_run_tags(sweep):
    client = mlflow.MlflowClient(tracking_uri=sweep["tracking_uri"])
    experiment = client.get_experiment_by_name("cifar10-table1")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`medanomaly.model` = 'ganomaly'"
    )
    tags = {(run.data.tags["medanomaly.abnormal_class"], run.data.tags["medanomaly.seed"]) for run in runs}
    assert tags == {("bird", "0"), ("ship", "0")}
    assert {run.data.tags["medanomaly.profile"] for run in runs} == {LABEL}
    assert {run.data.tags["medanomaly.evaluation_protocols"] for run in runs} == {"honest,paper"}


@pytest.mark.slow
def test_mlflow_logs_per_epoch_test_auroc(sweep):
    client = mlflow.MlflowClient(tracking_uri=sweep["tracking_uri"])
    run_id = read_record(sweep, RECORD_NAMES[0])["mlflow"]["run_id"]
    for name in ("paper_test_auroc", "eval_test_auroc", "loss_g"):
        steps = [point.step for point in client.get_metric_history(run_id, name)]
        assert steps == [1, 2], name
    assert "honest_auroc" in client.get_run(run_id).data.metrics


@pytest.mark.slow
def test_skip_existing_trains_nothing(sweep):
    record = sweep["out"] / "runs" / RECORD_NAMES[0]
    before = record.read_text()
    (sweep["out"] / "table1.md").unlink()

    assert load_pipeline().main(sweep["args"] + ["--skip-existing"]) == 0
    assert record.read_text() == before
    assert (sweep["out"] / "table1.md").is_file()


def with_options(args: list[str], **options: str) -> list[str]:
    """Return ``args`` with the values of ``--option`` flags replaced (``test_limit`` -> ``--test-limit``)."""
    args = list(args)
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return args


@pytest.mark.slow
def test_rerun_without_skip_trains_again(sweep):
    args = with_options(sweep["args"], models="ganomaly", classes="ship")
    name = f"{LABEL}__ganomaly__ship__seed0.json"
    before = read_record(sweep, name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sweep["tracking_uri"])
        assert load_pipeline().main(args) == 0
    after = read_record(sweep, name)
    assert after["mlflow"]["run_id"] != before["mlflow"]["run_id"]
    assert [row["epoch"] for row in after["epochs"]] == [1, 2]


@pytest.mark.slow
def test_interrupted_run_resumes(sweep):
    args = with_options(sweep["args"], models="ganomaly", classes="bird", label="resumed", epochs="1")
    record = sweep["out"] / "runs" / "resumed__ganomaly__bird__seed0.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", sweep["tracking_uri"])
        assert load_pipeline().main(args) == 0
        first = json.loads(record.read_text())
        # Losing the record leaves last.pt after epoch 1, as an interruption would.
        record.unlink()
        assert load_pipeline().main(with_options(args, epochs="2")) == 0
    second = json.loads(record.read_text())
    assert [row["epoch"] for row in second["epochs"]] == [1, 2]
    assert second["epochs"][0]["paper_auroc"] == first["epochs"][0]["paper_auroc"]
    assert second["mlflow"]["run_id"] == first["mlflow"]["run_id"]


@pytest.mark.slow
def test_report_only_rebuilds_table(sweep):
    (sweep["out"] / "table1.csv").unlink()
    assert load_pipeline().main(["--report-only", "--out", str(sweep["out"]), "-q"]) == 0
    assert (sweep["out"] / "table1.csv").is_file()


def test_report_only_without_records_fails(tmp_path):
    assert load_pipeline().main(["--report-only", "--out", str(tmp_path / "empty"), "-q"]) == 1


def test_unknown_model_rejected(tmp_path):
    assert load_pipeline().main(["--models", "anogan", "--out", str(tmp_path), "-q"]) == 2


def test_unknown_class_rejected(tmp_path):
    assert load_pipeline().main(["--classes", "zebra", "--out", str(tmp_path), "-q"]) == 2


def test_invalid_profile_file_rejected(tmp_path):
    profile = tmp_path / "bad.yaml"
    profile.write_text("train:\n  epoch: 3\n")
    data = write_python_release(tmp_path / "data")
    args = ["--profile-file", str(profile), "--cifar10", str(data), "--out", str(tmp_path), "-q"]
    assert load_pipeline().main(args) == 2
