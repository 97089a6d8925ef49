"""A micro Shapes world written once per test session (about a second on one core)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lavit_pl.config import load_config
from lavit_pl.data.shapes.config import ShapesWorldConfig
from lavit_pl.data.shapes.world import generate_world

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[3]
MICRO_YAML = REPO / "experiments/world/shapes_micro.yaml"


def micro_config(output_dir: Path, *overrides: str) -> ShapesWorldConfig:
    return load_config(ShapesWorldConfig, MICRO_YAML, [f"output_dir={output_dir}", *overrides])


@pytest.fixture(scope="session")
def shapes_micro_world(tmp_path_factory) -> Path:
    """Path of a micro world (seed 0, two rendering workers); tests must not modify it."""
    out = tmp_path_factory.mktemp("shapes") / "micro"
    generate_world(micro_config(out, "workers=2"))
    return out


@pytest.fixture(scope="session")
def make_micro_config():
    """``make_micro_config(output_dir, "key=value", ...)`` -> the micro preset with overrides."""
    return micro_config
