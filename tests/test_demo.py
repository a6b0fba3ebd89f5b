"""`make demo` keeps working: the demo script exits 0, shows every kind of outcome and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_shows_succeeded_failed_and_rejected_outcomes_and_cleans_up(tmp_path: Path) -> None:
    """The demo drives all three entry points against the emulators, in a fresh interpreter, and removes its temp folder."""
    root = Path(__file__).resolve().parents[1]
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=root, capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": str(temp)},
    )
    assert done.returncode == 0, done.stderr
    for word in ("succeeded", "failed", "rejected", "HTTP 200", "HTTP 404", "HTTP 400", "completed"):
        assert word in done.stdout
    assert "12 outcomes from 12 events; managed-identity token requests: 1" in done.stdout
    assert str(temp) in done.stdout  # it did write its outcomes there
    assert list(temp.iterdir()) == []
