"""The pipeline runner: runs steps in order, skips finished ones, stops at a failing one."""
from __future__ import annotations

import json
from pathlib import Path

from lavit_pl.cli import main

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _pipeline(tmp_path: Path, extra_step: str = "") -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(
        f"""name: test
log_dir: runs/pipe
config_root: {EXPERIMENTS}
steps:
  - name: world
    command: world
    config: world/shapes_micro.yaml
    overrides: [output_dir=data/w]
    done: data/w/world.json
{extra_step}"""
    )
    return path


def test_runs_then_skips_finished_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pipe = _pipeline(tmp_path)
    assert main(["reproduce", "-c", str(pipe)]) == 0
    assert (tmp_path / "data/w/world.json").is_file()
    first = json.loads((tmp_path / "runs/pipe/pipeline.json").read_text())
    assert first["steps"][0]["status"] == "ok"
    stamp = (tmp_path / "data/w/world.json").stat().st_mtime_ns
    assert main(["reproduce", "-c", str(pipe)]) == 0
    second = json.loads((tmp_path / "runs/pipe/pipeline.json").read_text())
    assert second["steps"][0]["status"] == "skipped (already done)"
    assert (tmp_path / "data/w/world.json").stat().st_mtime_ns == stamp


def test_failing_step_stops_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = """  - name: broken
    command: world
    config: world/shapes_micro.yaml
    overrides: [no_such_key=1]
    done: never.json
  - name: after
    command: world
    config: world/shapes_micro.yaml
    overrides: [output_dir=data/x]
    done: data/x/world.json
"""
    assert main(["reproduce", "-c", str(_pipeline(tmp_path, bad))]) == 2
    record = json.loads((tmp_path / "runs/pipe/pipeline.json").read_text())
    assert [s["name"] for s in record["steps"]] == ["world", "broken"]
    assert not (tmp_path / "data/x").exists()


def test_unknown_command_is_a_config_error(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("steps:\n  - {name: a, command: train, config: x.yaml, done: d}\n")
    assert main(["reproduce", "-c", str(path)]) == 2
    assert "steps[0].command must be one of" in capsys.readouterr().err
