"""The backfill demo (`python -m scripts.demo_backfill`): three backfills against the emulators, progress included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_backfill_demo_enqueues_each_run_once_and_shows_its_progress() -> None:
    """Exit 0; the dry run, the progress lines of listing and enqueueing, and the repeat dropped whole."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "scripts.demo_backfill"], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backfill ok:" in done.stdout and "--dry-run -o json" in done.stdout
    progress = done.stderr.splitlines()
    assert any(line.startswith("listing backfillDemo: ") for line in progress)
    assert any(line.startswith("enqueueing to acr-archive-events: ") and "/s" in line for line in progress)
    assert sum("enqueued" in line and "archive event(s) to acr-archive-events" in line for line in progress) == 2
