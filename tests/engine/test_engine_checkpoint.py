"""Atomic checkpoint writes and checkpoint loading."""

import pytest
import torch

from medanomaly.engine.checkpoint import atomic_save, atomic_write_text, load_checkpoint


class _WriteFailure(RuntimeError):
    pass


def test_atomic_save_round_trip(tmp_path):
    path = tmp_path / "state.pt"
    atomic_save({"epoch": 3, "weights": torch.arange(4.0)}, path)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["weights"], torch.arange(4.0))


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)
    real_save = torch.save

    def save_then_fail(obj, stream, *args, **kwargs):
        # Write part of the new checkpoint into the open temporary file, then fail.
        real_save({"epoch": 2, "partial": torch.zeros(1000)}, stream)
        stream.truncate(100)
        raise _WriteFailure("disk full")

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(_WriteFailure):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()

    assert load_checkpoint(path)["epoch"] == 1
    assert [entry.name for entry in tmp_path.iterdir()] == ["last.pt"]


def test_failed_text_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "history.json"
    atomic_write_text("[1]", path)

    def fail_replace(*args, **kwargs):
        raise OSError("rename failed")

    monkeypatch.setattr("medanomaly.engine.checkpoint.os.replace", fail_replace)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text("[1, 2]", path)
    monkeypatch.undo()

    assert path.read_text() == "[1]"
    assert [entry.name for entry in tmp_path.iterdir()] == ["history.json"]


def test_load_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_foreign_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt"):
        load_checkpoint(path)


def test_load_refuses_pickled_code(tmp_path):
    path = tmp_path / "code.pt"
    torch.save({"object": _WriteFailure("x")}, path)
    with pytest.raises(ValueError, match="code.pt"):
        load_checkpoint(path)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_files_follow_umask(tmp_path, umask):
    import os
    import stat

    from medanomaly import reporting

    previous = os.umask(umask)
    try:
        atomic_save({"epoch": 1}, tmp_path / "state.pt")
        atomic_write_text("[1]", tmp_path / "history.json")
        reporting.write_text(tmp_path / "summary.txt", "ok")
        reporting.write_csv(tmp_path / "scores.csv", ["path"], [["a.dcm"]])
    finally:
        os.umask(previous)
    for name in ("state.pt", "history.json", "summary.txt", "scores.csv"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~umask, f"{name}: {oct(mode)}"
