"""Command-line parsing, help, models listing and error reporting."""

import json

import pytest

import medanomaly
from medanomaly.cli import main


def error_lines(text: str) -> list[str]:
    """Return the stderr lines that are not log records (INFO:, WARNING: ...)."""
    assert "Traceback" not in text
    log_prefixes = ("DEBUG:", "INFO:", "WARNING:")
    return [line for line in text.splitlines() if line.strip() and not line.startswith(log_prefixes)]


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    output = capsys.readouterr().out
    for command in ("models", "inspect", "train", "evaluate", "score"):
        assert command in output


@pytest.mark.parametrize("command", ["models", "inspect", "train", "evaluate", "score"])
def test_subcommand_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert f"usage: medanomaly {command}" in capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"medanomaly {medanomaly.__version__}"


def test_models_json(capsys):
    assert main(["models", "--json", "--image-size", "16", "--channels", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [row["name"] for row in rows]
    assert names == ["skipganomaly_pp", "skip_ganomaly", "ganomaly"]
    assert all(row["ok"] for row in rows)
    assert all(row["parameters"]["total"] > 0 for row in rows)


def test_models_rejected_size(capsys):
    assert main(["models", "--json", "--image-size", "24"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["skipganomaly_pp"]["ok"]
    assert not rows["ganomaly"]["ok"]


def test_models_table(capsys):
    assert main(["models"]) == 0
    assert "skipganomaly_pp" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, named",
    [
        (["train", "--epochs", "abc"], "'abc'"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--model", "resnet"], "'resnet'"),
        (["train", "--manifest", "missing.csv"], "missing.csv"),
        (["train", "--channels", "2"], "--channels"),
        (["train", "--preset", "sunset"], "'sunset'"),
        (["score", "--model", "nothing.pt", "--folder", ".", "--out", "o"], "nothing.pt"),
        (["score", "--model", "models:/x/1", "--out", "o"], "--dicom-dir"),
        (["evaluate", "--model", "models:/x/1", "--folder", ".", "--manifest", "a.csv"], "--manifest"),
        (["inspect", "--folder", "no-such-folder"], "no-such-folder"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_usage_error_one_line(argv, named, capsys):
    assert main(argv) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert named in lines[0]


def test_train_without_data(capsys):
    assert main(["train", "--epochs", "1"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "No training data" in lines[0]


def test_train_invalid_size_for_model(tmp_path, capsys):
    (tmp_path / "train" / "0.normal").mkdir(parents=True)
    assert main(["train", "--folder", str(tmp_path), "--image-size", "30"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "image size 30 is invalid" in lines[0]


def test_config_file_invalid_key(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epoch: 3\n")
    assert main(["train", "--config", str(config)]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "unknown key(s) ['epoch']" in lines[0]


def test_missing_model_reports_store(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    assert main(["score", "--model", "models:/absent/1", "--folder", str(folder), "--out", "out"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "models:/absent/1" in lines[0]


def test_verbose_shows_traceback(capsys):
    assert main(["-v", "train", "--epochs", "1"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_verbose_after_subcommand(capsys):
    assert main(["train", "--epochs", "1", "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_module_entry_point():
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "medanomaly", "--version"], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"medanomaly {medanomaly.__version__}"


@pytest.mark.parametrize("verbosity, shown", [(0, False), (-1, False), (1, True)])
def test_pydicom_decoder_tracebacks_only_with_verbose(verbosity, shown):
    import logging

    from medanomaly.cli.main import configure_logging

    decoder_logger = logging.getLogger("pydicom.pixels.decoders.base")
    before = decoder_logger.isEnabledFor(logging.ERROR)
    restore = configure_logging(verbosity)
    try:
        assert decoder_logger.isEnabledFor(logging.ERROR) is shown
    finally:
        restore()
    assert decoder_logger.isEnabledFor(logging.ERROR) is before


def test_pydicom_note_printed_once(capfd, recwarn):
    from pydicom.data import get_testdata_file

    # This sample carries 128 bytes of padding after its pixel data.
    path = get_testdata_file("MR_small_padded.dcm")
    assert main(["inspect", "--dicom-dir", path]) == 0
    err = capfd.readouterr().err
    assert err.count("excess padding") == 1
    assert "WARNING: pydicom: The pixel data is 8320 bytes long" in err
    assert not [warning for warning in recwarn if "excess padding" in str(warning.message)]


def test_manifest_problems_one_per_line(tmp_path, capsys):
    manifest = tmp_path / "bad.csv"
    manifest.write_text("path,label\nmissing-1.png,normal\nmissing-2.png,sick\n")
    assert main(["inspect", "--manifest", str(manifest)]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert lines[0].endswith("(3 problems):")
    assert any("row 2" in line and "missing-1.png" in line for line in lines[1:])
    assert any("row 3" in line and "sick" in line for line in lines[1:])


def test_foreign_model_file_named(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    not_a_model = tmp_path / "healthy.csv"
    not_a_model.write_text("path\na.png\n")
    code = main(["score", "--model", str(not_a_model), "--folder", str(tmp_path / "images"), "--out", "out"])
    assert code == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "not a medanomaly checkpoint" in lines[0]
    assert "weights_only" not in lines[0]


def test_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    (tmp_path / "images").mkdir()
    model = tmp_path / "best.pt"
    model.write_bytes(b"")
    code = main(["score", "--model", str(model), "--folder", str(tmp_path / "images"), "--out", str(tmp_path / "afile")])
    assert code == 1
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"medanomaly score: error: --out {tmp_path / 'afile'} is a file; give a folder (it is created when missing)."]


def test_cifar10_class_ignored_warns(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    main(["inspect", "--folder", str(tmp_path / "images"), "--abnormal-class", "bird"])
    assert "WARNING: --abnormal-class applies to --cifar10 only; ignored for --folder." in capsys.readouterr().err


def test_rejected_manifest_starts_no_run(tmp_path, capsys):
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,label\nmissing.png,abnormal\n")
    assert main(["train", "--manifest", str(manifest), "--output-dir", str(tmp_path / "runs")]) == 1
    assert "row 2" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path / "mlflow.db").exists()
