"""A 1-channel model trained on real MR volumes scores every sample file of the pydicom and nibabel wheels.

``pipelines/wheel_samples.py`` runs once at a tiny setting (one epoch, 32 x 32).
The checks: every decodable pydicom sample has a score, every file that cannot
give an image is listed in skipped.csv instead of stopping the run, and the
model was registered.
"""

import csv
import importlib.util
import math
from pathlib import Path

import mlflow
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_pipeline():
    return load_module("wheel_samples", REPO_ROOT / "pipelines" / "wheel_samples.py")


# The pydicom sample list and the files that cannot give an image, shared with
# tests/data/test_pydicom_samples.py.
_samples = load_module("pydicom_samples", REPO_ROOT / "tests" / "data" / "test_pydicom_samples.py")
SAMPLES, CANNOT_DECODE = _samples.SAMPLES, _samples.CANNOT_DECODE


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wheel")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{workdir / 'mlflow.db'}")
    monkeypatch.chdir(workdir)
    pipeline = load_pipeline()
    out = workdir / "out"
    try:
        assert pipeline.main(["--out", str(out), "--epochs", "1", "--image-size", "32", "--device", "cpu"]) == 0
    finally:
        monkeypatch.undo()
    return pipeline, workdir, out


def test_manifest_lists_mr_volumes(run):
    pipeline, _, out = run
    rows = read_rows(out / "healthy.csv")
    assert [Path(row["path"]).name for row in rows] == list(pipeline.MR_VOLUMES)
    assert {row["label"] for row in rows} == {"normal"}
    assert len({row["group"] for row in rows}) == len(rows)


def test_every_decodable_pydicom_sample_scored(run):
    _, _, out = run
    rows = read_rows(out / "scores_pydicom" / "scores.csv")
    scored = {Path(row["path"]).name for row in rows}
    expected = {path.name for path in SAMPLES} - set(CANNOT_DECODE)
    assert expected <= scored, f"not scored: {sorted(expected - scored)}"
    assert all(math.isfinite(float(row["score"])) for row in rows)


def test_unreadable_pydicom_samples_listed(run):
    _, _, out = run
    skipped = {Path(row["path"]).name: row["reason"] for row in read_rows(out / "scores_pydicom" / "skipped.csv")}
    for name, reason in CANNOT_DECODE.items():
        assert name in skipped, f"{name} is neither scored nor listed as skipped"
        assert reason in skipped[name], f"{name}: {skipped[name]!r} lacks {reason!r}"


def test_nibabel_folder_scored_and_cifti_listed(run):
    pipeline, _, out = run
    scored = {Path(row["path"]).name for row in read_rows(out / "scores_nibabel" / "scores.csv")}
    skipped = {Path(row["path"]).name for row in read_rows(out / "scores_nibabel" / "skipped.csv")}
    assert set(pipeline.MR_VOLUMES) <= scored
    assert "row_major.dconn.nii" in skipped


def test_model_registered_one_channel(run):
    _, workdir, _ = run
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    # Both URIs: a registry URI that another test set globally would win otherwise.
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions("name='wheel-mr'")
    assert [int(version.version) for version in versions] == [1]
    run_params = client.get_run(versions[0].run_id).data.params
    assert run_params["model.in_channels"] == "1"
    assert run_params["data.preset"] == "percentile"


def test_missing_volume_named(tmp_path, monkeypatch):
    pipeline = load_pipeline()
    monkeypatch.setattr(pipeline, "MR_VOLUMES", ("anatomical.nii", "no_such_volume.nii"))
    with pytest.raises(FileNotFoundError, match="no_such_volume.nii"):
        pipeline.write_manifest(tmp_path / "healthy.csv")
