"""The one CLI: command listing, per-command help, config errors as exit code 2."""
from __future__ import annotations

import subprocess
import sys

from lavit_pl.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name} " in out


def test_unknown_command_is_an_error(capsys):
    assert main(["fitt"]) == 2
    assert "unknown command 'fitt'" in capsys.readouterr().err


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "lavit_pl", "--help"], capture_output=True, text=True, check=True)
    assert "commands:" in proc.stdout
