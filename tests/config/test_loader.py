"""The config loader: inheritance, overrides, and errors that name file, key and expectation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lavit_pl.config import ConfigError, load_config, peek_key, to_yaml


@dataclass
class Optim:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")


@dataclass
class Run:
    name: str = "run"
    steps: int = 10
    data_root: str = "???"
    optim: Optim = field(default_factory=Optim)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_chain_and_overrides(tmp_path):
    write(tmp_path, "base/a.yaml", "data_root: /data\nsteps: 5\noptim:\n  lr: 0.1\n")
    write(tmp_path, "b.yaml", "name: b\nsteps: 7\n")
    child = write(tmp_path, "exp/child.yaml", "base: [../base/a.yaml, ../b.yaml]\noptim:\n  lr: 0.2\n")
    cfg = load_config(Run, child, ["steps=9"])
    assert isinstance(cfg, Run) and isinstance(cfg.optim, Optim)
    assert (cfg.name, cfg.steps, cfg.data_root, cfg.optim.lr) == ("b", 9, "/data", 0.2)
    assert cfg.optim.betas == [0.9, 0.99]
    assert "base" not in to_yaml(cfg)


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, "x.yaml", "data_root: /d\noptim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(Run, path)
    msg = str(err.value)
    assert str(path) in msg and "optim.lrr" in msg and "did you mean 'lr'" in msg


def test_wrong_type_names_key_and_type(tmp_path):
    path = write(tmp_path, "x.yaml", "data_root: /d\nsteps: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(Run, path)
    msg = str(err.value)
    assert str(path) in msg and "'steps'" in msg and "int" in msg


def test_missing_required_value(tmp_path):
    path = write(tmp_path, "x.yaml", "steps: 3\n")
    with pytest.raises(ConfigError, match="missing required value.*data_root"):
        load_config(Run, path)


def test_post_init_check_is_reported_with_file(tmp_path):
    path = write(tmp_path, "x.yaml", "data_root: /d\noptim:\n  lr: -1\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: optim\.lr must be > 0"):
        load_config(Run, path)


def test_cli_override_errors(tmp_path):
    path = write(tmp_path, "x.yaml", "data_root: /d\n")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Run, path, ["steps"])
    with pytest.raises(ConfigError, match="command line override 'stepz=3'.*did you mean 'steps'"):
        load_config(Run, path, ["stepz=3"])


def test_base_cycle_and_missing_file(tmp_path):
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    b = write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(Run, b)
    with pytest.raises(ConfigError, match="not found"):
        load_config(Run, tmp_path / "nope.yaml")


def test_peek_key_sees_inherited_and_overridden_values(tmp_path):
    write(tmp_path, "a.yaml", "stage: tokenizer\n")
    child = write(tmp_path, "c.yaml", "base: a.yaml\n")
    assert peek_key(child, "stage") == "tokenizer"
    assert peek_key(child, "stage", ["stage=unified"]) == "unified"
