"""Running a two-rank (gloo) training script in a subprocess, as the FSDP2-on-CPU tests do."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_two_rank_script(script: str, folder: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Write ``script`` to ``folder/fsdp2_fit.py`` and run it from the repository root with this
    checkout's ``lavit_pl`` first on the path and one OpenMP thread per rank. A file, not ``-c``:
    Lightning re-launches the other rank with the same argv."""
    path = Path(folder) / "fsdp2_fit.py"
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
