"""The shipped YAML configs mirror Config one to one and resolve with CLI flags."""

from pathlib import Path

import pytest
import yaml

from medanomaly.cli import build_parser
from medanomaly.cli.train import resolve_config
from medanomaly.config import Config, load_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# Complete experiment configs; other files in configs/ may hold partial overrides.
CONFIGS = [
    CONFIG_DIR / "cifar10" / "skipganomaly_pp.yaml",
    CONFIG_DIR / "cifar10" / "skip_ganomaly.yaml",
    CONFIG_DIR / "cifar10" / "ganomaly.yaml",
    CONFIG_DIR / "clinical" / "ct_head_128.yaml",
]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_config_mirrors_dataclasses(path):
    raw = yaml.safe_load(path.read_text())
    defaults = Config().to_dict()
    assert list(raw) == list(defaults)
    for section, values in defaults.items():
        assert set(raw[section]) == set(values), section
    load_config(path)


def test_flags_override_config(tmp_path):
    manifest = tmp_path / "healthy.csv"
    manifest.write_text("path\nslice.dcm\n")
    config_path = next(path for path in CONFIGS if path.name == "ct_head_128.yaml")
    args = build_parser().parse_args(
        ["train", "--config", str(config_path), "--manifest", str(manifest), "--epochs", "2",
         "--image-size", "64", "--seed", "7"]
    )
    config = resolve_config(args)
    assert config.train.epochs == 2
    assert config.model.image_size == 64
    assert config.model.in_channels == 1
    assert config.data.preset == "brain"
    assert config.data.path == str(manifest)
    assert config.train.seed == 7
    assert config.data.seed == 7
