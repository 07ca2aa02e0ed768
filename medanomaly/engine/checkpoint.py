"""Atomic checkpoint files.

Every file is first written to a temporary file in the destination folder and
then moved over the destination with ``os.replace``, an atomic rename on
POSIX file systems. A crash or an error while writing leaves the previous
file intact.

A run folder contains:

``last.pt``
    Training state after the last completed epoch (see :func:`training_state`);
    ``Trainer.fit(..., resume=True)`` continues from it.
``best.pt``
    The :class:`~medanomaly.engine.scorer.AnomalyScorer` of the selected epoch.
``config.yaml``, ``history.json``
    The resolved configuration and the per-epoch figures.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from medanomaly.reporting import new_file_mode

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.json"
STATE_FORMAT_VERSION = 1


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, new_file_mode())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """Write ``obj`` with ``torch.save`` to ``path`` atomically."""
    with _atomic_file(Path(path), "wb") as stream:
        torch.save(obj, stream)


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with _atomic_file(Path(path), "w") as stream:
        stream.write(text)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a medanomaly checkpoint without running pickled code (``weights_only=True``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a checkpoint this package wrote.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        # torch's own message suggests weights_only=False, which would run code from
        # the file, so only the error type is passed on.
        raise ValueError(
            f"{path}: not a medanomaly checkpoint ({type(err).__name__}). Pass the best.pt of a "
            "run folder, the run folder itself, or an MLflow model URI such as models:/NAME/VERSION."
        ) from err
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a checkpoint dictionary, got {type(payload).__name__}.")
    return payload


def training_state(
    *,
    epoch: int,
    model: torch.nn.Module,
    optimizer_g: torch.optim.Optimizer,
    optimizer_d: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    rng: dict[str, Any],
    history: list[dict[str, Any]],
    best: dict[str, Any] | None,
    config: dict[str, Any],
) -> dict[str, Any]:
    """Assemble the contents of ``last.pt``.

    Args:
        epoch: last completed epoch, 1-based.
        model: the AnomalyGAN being trained.
        optimizer_g: generator optimiser.
        optimizer_d: discriminator optimiser.
        scaler: GradScaler.
        rng: random-number states from :func:`medanomaly.engine.device.get_rng_states`.
        history: one dictionary of figures per completed epoch.
        best: best epoch so far: ``{"epoch", "value", "scorer"}`` with the scorer payload.
        config: resolved configuration as plain data.
    """
    return {
        "format_version": STATE_FORMAT_VERSION,
        "epoch": epoch,
        "model_name": model.name,
        "model": model.state_dict(),
        "optimizer_g": optimizer_g.state_dict(),
        "optimizer_d": optimizer_d.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng,
        "history": history,
        "best": best,
        "config": config,
    }
