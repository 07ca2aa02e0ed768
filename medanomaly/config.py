"""Experiment configuration: typed defaults that YAML files and CLI flags override.

A configuration has four sections, mirrored one to one by the YAML files in
``configs/``::

    model:    which network family and its constructor arguments
    data:     where images come from and how they are prepared
    train:    optimisation, checkpoints and threshold calibration
    tracking: MLflow experiment and model registry

Precedence is CLI flag > YAML value > dataclass default.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)


@dataclass
class ModelConfig:
    """Network family and its constructor arguments."""

    name: str = "skipganomaly_pp"
    image_size: int = 32
    in_channels: int = 3
    # Extra keyword arguments for the generator and discriminator constructors,
    # for example ``{"channels": [16, 32, 64, 128]}``.
    generator: dict[str, Any] = field(default_factory=dict)
    discriminator: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Image source and preparation.

    ``source`` is one of ``cifar10``, ``folder``, ``manifest``, ``dicom``, ``nifti``
    and ``path`` points at it.
    """

    source: str = "cifar10"
    path: str | None = None
    # CIFAR-10 protocol.
    abnormal_class: str | None = None
    protocol: str = "leave_one_out"  # or "one_vs_rest"
    normal_class: str | None = None  # the one normal class of "one_vs_rest"
    limit: int | None = None  # training images, stratified subsample
    test_limit: int | None = None  # test images, stratified subsample
    # Fraction of the normal training images held out for validation.
    val_fraction: float = 0.05
    # Intensity preset for DICOM and NIfTI (see medanomaly.data.intensity).
    preset: str | None = None
    # "resize" stretches to a square, "pad" keeps the aspect ratio by padding.
    resize_mode: str = "resize"
    # NIfTI slicing.
    slice_axis: int = 2
    foreground_threshold: float | None = None
    num_workers: int = 0
    cache: bool = True
    seed: int = 0


@dataclass
class TrainConfig:
    """Optimisation, checkpointing and threshold calibration.

    Loss weights and Adam settings follow Akcay et al. (Skip-GANomaly, 2019),
    which Skip-GANomaly++ keeps.
    """

    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    w_adv: float = 1.0
    w_rec: float = 50.0
    w_lat: float = 1.0
    # Score = score_alpha * pixel error + (1 - score_alpha) * feature error.
    score_alpha: float = 0.9
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # mixed precision, used only on CUDA
    channels_last: bool = True
    target_fpr: float = 0.05
    output_dir: str = "runs"


@dataclass
class TrackingConfig:
    """MLflow experiment, tracking store and model registry."""

    experiment: str = "medanomaly"
    tracking_uri: str | None = None  # default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    register: str | None = None  # registered model name
    run_name: str | None = None
    log_model: bool = True


@dataclass
class Config:
    """Complete experiment configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain YAML-compatible types."""
        result = dataclasses.asdict(self)
        result["train"]["betas"] = list(self.train.betas)
        return result

    def to_yaml(self) -> str:
        """Return the configuration as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "tracking": TrackingConfig,
}


def _section_from_dict(name: str, values: dict[str, Any], source: str) -> Any:
    cls = _SECTIONS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown} in section '{name}'; "
            f"valid keys are {sorted(known)}."
        )
    kwargs = dict(values)
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any] | None, source: str = "<dict>") -> Config:
    """Build a :class:`Config` from nested dictionaries, rejecting unknown keys.

    Args:
        values: mapping of section name to a mapping of keys.
        source: name used in error messages, usually the YAML path.
    """
    values = values or {}
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a mapping of sections, got {type(values).__name__}.")
    unknown = sorted(set(values) - set(_SECTIONS))
    if unknown:
        raise ValueError(
            f"{source}: unknown section(s) {unknown}; valid sections are {sorted(_SECTIONS)}."
        )
    sections = {}
    for name in _SECTIONS:
        section = values.get(name) or {}
        if not isinstance(section, dict):
            raise ValueError(f"{source}: section '{name}' must be a mapping.")
        sections[name] = _section_from_dict(name, section, source)
    return Config(**sections)


def load_config(path: str | Path | None = None) -> Config:
    """Load a YAML configuration file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: {path}. Check the --config path.")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from err
    logger.info("Loaded config %s", path)
    return config_from_dict(values, source=str(path))


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Return a copy of ``config`` with ``{"section.key": value}`` overrides applied.

    ``None`` values are skipped, so unset CLI flags leave the YAML value in place.
    """
    values = config.to_dict()
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in values or key not in values[section]:
            raise KeyError(f"Unknown config key '{dotted}'.")
        values[section][key] = value
    return config_from_dict(values, source="overrides")
