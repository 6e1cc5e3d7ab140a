"""Build a small demo case store once, for the page and browser tests.

The store is made the way a user makes it: ``python -m core demo --import`` in a
subprocess with ``THERABOARD_DATA_DIR`` pointing at a fresh folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def store_env(data_dir: Path) -> dict[str, str]:
    """Environment variables that point TheraBoard at ``data_dir`` (SQLite inside it)."""
    return {
        "THERABOARD_DATA_DIR": str(data_dir),
        "THERABOARD_DB_URL": f"sqlite:///{data_dir / 'theraboard.db'}",
        "THERABOARD_DEVICE": "cpu",
    }


def build_demo_store(data_dir: Path, *, n: int = 2, seed: int = 7) -> dict[str, str]:
    """Generate and import ``n`` synthetic cases into a new store; return its environment."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **store_env(data_dir)}
    cmd = [sys.executable, "-m", "core", "demo", "--out", str(data_dir / "demo"), "--n", str(n),
           "--seed", str(seed), "--import"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"demo store failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return store_env(data_dir)
