"""Device selection, mixed precision, determinism and random-number state."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

# cuBLAS needs this workspace setting before CUDA starts, or deterministic
# matrix products raise on CUDA >= 10.2.
_CUBLAS_WORKSPACE = ":4096:8"


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Return the torch device for a config value.

    Args:
        spec: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``
            or ``"cuda:N"``.

    Raises:
        ValueError: the spec is not a device name, or CUDA is requested but
            not available.
    """
    if isinstance(spec, torch.device):
        device = spec
    elif spec == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(spec)
        except RuntimeError as err:
            raise ValueError(
                f"Invalid device {spec!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
            ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Device {spec!r} requested but CUDA is not available; use 'cpu' or 'auto'."
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"Unsupported device {spec!r}; use 'auto', 'cpu' or 'cuda[:N]'.")
    return device


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def processor_name(device: torch.device) -> str:
    """Return the GPU name for a CUDA device, otherwise the CPU model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def amp_enabled(device: torch.device, requested: bool) -> bool:
    """Return whether mixed precision is used: only on CUDA, and only when requested."""
    if requested and device.type != "cuda":
        logger.debug("Mixed precision requested but device is %s; training in float32.", device)
    return bool(requested and device.type == "cuda")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Return a float16 ``torch.autocast`` context for CUDA, or a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def make_grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """Return a GradScaler for float16 training; a disabled one passes losses through."""
    return torch.amp.GradScaler(device.type, enabled=enabled)


def memory_format(channels_last: bool) -> torch.memory_format:
    """Return the memory format for 4-D model weights and input batches."""
    return torch.channels_last if channels_last else torch.contiguous_format


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic_mode(enabled: bool, device: torch.device | None = None) -> Iterator[None]:
    """Turn on deterministic torch kernels inside the block and restore the settings after.

    When ``enabled`` is False the block runs with the current settings.
    Deterministic mode makes the same seed give bitwise the same weights on
    the same hardware and software (tested on CPU), at some speed cost on CUDA.

    On CUDA an operation without a deterministic kernel warns instead of
    raising. The backward pass of adaptive average pooling, which
    squeeze-and-excitation layers use, has no deterministic CUDA kernel in
    PyTorch 2.x, so CUDA runs can still differ slightly between repeats.
    """
    if not enabled:
        yield
        return
    warn_only = device is not None and device.type == "cuda"
    if warn_only:
        logger.warning(
            "Deterministic mode on CUDA: operations without a deterministic kernel only warn, "
            "so repeated runs may differ slightly. Train on the CPU for bitwise repeats."
        )
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        # NOTE: takes effect only if CUDA has not been initialised yet in this process.
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = _CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic = previous[2]
        torch.backends.cudnn.benchmark = previous[3]


def get_rng_states(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Capture every random-number state that training consumes.

    The result contains only tensors and builtins, so it loads with
    ``torch.load(weights_only=True)``.
    """
    numpy_state = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": numpy_state[0],
            "keys": numpy_state[1].tolist(),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": loader_generator.get_state() if loader_generator is not None else None,
    }
    return states


def set_rng_states(states: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Restore the states captured by :func:`get_rng_states`."""
    random.setstate(_as_python_state(states["python"]))
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            np.asarray(numpy_state["keys"], dtype=np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"].cpu())
    cuda_states = states.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([state.cpu() for state in cuda_states])
        else:
            logger.warning(
                "Checkpoint has CUDA random states for %d devices but %d are visible; "
                "CUDA random numbers will differ from the original run.",
                len(cuda_states),
                torch.cuda.device_count(),
            )
    if loader_generator is not None and states.get("loader") is not None:
        loader_generator.set_state(states["loader"].cpu())


def _as_python_state(state: Any) -> tuple:
    # Python's random module needs tuples, and a round trip through a checkpoint may give lists.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
