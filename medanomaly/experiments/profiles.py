"""Profiles (partial configs) and the config of one sweep run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medanomaly.config import Config, apply_overrides, config_from_dict, load_config

DEFAULT_EXPERIMENT = "cifar10-table1"


def load_profile(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a profile YAML: a partial config whose sections override the model's config.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: invalid YAML, a section that is not a mapping, or an
            unknown section or key (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Profile file not found: {path}. Check --profile or --profile-file.")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: invalid YAML: {err}") from err
    # Building a full config from the partial one checks every section and key.
    config_from_dict(values, source=str(path))
    return {section: dict(keys or {}) for section, keys in values.items()}


@dataclass(frozen=True)
class RunSpec:
    """One cell of the sweep: a model trained on one abnormal class with one seed.

    Attributes:
        model: model name from ``medanomaly.networks.MODEL_NAMES``.
        abnormal_class: canonical CIFAR-10 class name, e.g. ``automobile``.
        seed: seed of the data subsets, the validation split and training.
        profile: profile label, e.g. ``cpu`` or ``full``.
    """

    model: str
    abnormal_class: str
    seed: int
    profile: str

    @property
    def key(self) -> str:
        """Identifier used for the record file, the run folder and the MLflow run name."""
        return f"{self.profile}__{self.model}__{self.abnormal_class}__seed{self.seed}"


def build_run_config(
    spec: RunSpec,
    profile: Mapping[str, Mapping[str, Any]],
    cifar10_path: str | Path,
    runs_dir: str | Path,
    experiment: str = DEFAULT_EXPERIMENT,
    base: Config | str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config of one run.

    Precedence, lowest first: ``base`` (the model's YAML, or the defaults),
    the profile's sections, the run's own settings (model, abnormal class,
    data path, seeds, run folder, experiment), then ``overrides``.

    Args:
        spec: the run.
        profile: sections from :func:`load_profile`.
        cifar10_path: CIFAR-10 source (archive or folder).
        runs_dir: parent folder of the run's checkpoint folder.
        experiment: MLflow experiment name.
        base: a config or a YAML path; None uses the dataclass defaults.
        overrides: ``{"section.key": value}`` applied last; None values are skipped.
    """
    if base is None or isinstance(base, Config):
        base_config = base or Config()
    else:
        base_config = load_config(base)
    values = base_config.to_dict()
    for section, keys in profile.items():
        values.setdefault(section, {}).update(keys)
    values["model"]["name"] = spec.model
    values["data"].update(
        source="cifar10",
        path=str(cifar10_path),
        abnormal_class=spec.abnormal_class,
        protocol="leave_one_out",
        seed=spec.seed,
    )
    values["train"].update(seed=spec.seed, output_dir=str(runs_dir))
    values["tracking"].update(experiment=experiment, run_name=spec.key)
    config = config_from_dict(values, source=f"profile {spec.profile}")
    return apply_overrides(config, dict(overrides or {}))
