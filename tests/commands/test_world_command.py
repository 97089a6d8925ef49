"""``python -m lavit_pl world``: help, print-config, config errors, the three presets, a real run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lavit_pl.cli import main
from lavit_pl.commands import world as world_command
from lavit_pl.config import ConfigError, load_config
from lavit_pl.data.shapes.config import ShapesWorldConfig

REPO = Path(__file__).resolve().parents[2]
YAMLS = REPO / "experiments/world"


def test_command_module_contract():
    assert isinstance(world_command.DESCRIPTION, str) and world_command.DESCRIPTION
    assert world_command.SCHEMA is ShapesWorldConfig
    assert world_command.schema_for(YAMLS / "shapes_tiny.yaml", []) is ShapesWorldConfig


def test_help_lists_keys_with_their_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["world", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "counts.train" in out and "training image-text pairs" in out
    assert "novel_kind" in out and "never named in training text" in out


def test_print_config_resolves_the_base_chain(capsys):
    assert main(["world", "-c", str(YAMLS / "shapes_micro.yaml"), "--print-config", "seed=7"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["image_size"] == 32 and cfg["seed"] == 7 and cfg["preset"] == "micro"
    assert cfg["novel_kind"] == "star" and cfg["counts"]["vqa_questions_per_image"] == 3  # from shapes_tiny.yaml


def test_a_typo_errors_naming_the_key(capsys):
    assert main(["world", "-c", str(YAMLS / "shapes_micro.yaml"), "counts.trian=5"]) == 2
    err = capsys.readouterr().err
    assert "counts.trian" in err and "did you mean 'train'" in err


def test_post_init_checks_name_the_field():
    with pytest.raises(ConfigError, match="novel_kind 'blob' must be one of kinds"):
        load_config(ShapesWorldConfig, YAMLS / "shapes_micro.yaml", ["novel_kind=blob"])
    with pytest.raises(ConfigError, match="counts.coco must be >= 1"):
        load_config(ShapesWorldConfig, YAMLS / "shapes_micro.yaml", ["counts.coco=0"])
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        load_config(ShapesWorldConfig, YAMLS / "shapes_micro.yaml", ["image_size=36"])
    with pytest.raises(ConfigError, match="colors must be >= 6"):
        load_config(ShapesWorldConfig, YAMLS / "shapes_micro.yaml", ["colors=[red,blue]"])


# preset -> (image side, patches N, codebook size K of DESIGN.md section 6)
PRESETS = {"micro": (32, 16, 64), "tiny": (64, 64, 1024), "small": (128, 256, 4096)}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets(preset):
    cfg = load_config(ShapesWorldConfig, YAMLS / f"shapes_{preset}.yaml")
    side, n, k = PRESETS[preset]
    assert cfg.preset == preset and cfg.image_size == side and (side // cfg.patch_size) ** 2 == n
    assert cfg.output_dir == f"data/shapes/{preset}"
    # Codebook usage is measured on >= 10 K tokens; the tokenizer keeps about N / 3 per image.
    assert cfg.counts.val * n / 3 >= 10 * k
    # Besides the base chain, micro and small only change names, sizes and counts.
    own = yaml.safe_load((YAMLS / f"shapes_{preset}.yaml").read_text())
    if preset != "tiny":
        assert own["base"] == "shapes_tiny.yaml"
        assert set(own) <= {"base", "preset", "output_dir", "image_size", "samples_per_shard", "counts"}


def test_the_cli_writes_a_world(tmp_path):
    out = tmp_path / "cli_world"
    result = subprocess.run(
        [sys.executable, "-m", "lavit_pl", "world", "-c", str(YAMLS / "shapes_micro.yaml"), f"output_dir={out}",
         "counts.train=60", "counts.val=20", "samples_per_shard=50"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "leakage check: ok" in result.stderr
    manifest = json.loads((out / "world.json").read_text())
    assert manifest["counts"]["train_pairs"] == 60 and (out / "train/shards/00001.tar").is_file()
