"""`make bench-limit`'s machinery on a tiny run: every variant drains the backlog and reports what it promises.

Timings are not asserted (the benchmark reports them, README Scaling); counts are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--events", "60", "--instances", "2", "--threads", "4", "--bucket", "20", "--refill", "40"]
KEYS = {"variant", "seconds", "writes", "writes_per_second", "refill", "share_of_ideal", "429s", "429s_per_1000_writes",
        "rescheduled", "redelivered", "dead_lettered", "p50_seconds", "p99_seconds", "wall_seconds"}


def test_a_tiny_run_at_the_limit_drains_every_event_in_every_variant(tmp_path: Path) -> None:
    """Two instances on one throttled identity: each event written once, none lost, pacing meeting fewer 429s."""
    output = tmp_path / "at_limit.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.at_limit", *TINY, "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(output.read_text())
    assert document["config"]["ideal_seconds"] == (60 - 20) / 40
    rows = {row["variant"]: row for row in document["results"]}
    assert set(rows) == {"app", "app_unpaced", "sdk"}
    for row in rows.values():
        assert set(row) == KEYS
        assert row["writes"] == 60 and row["dead_lettered"] == 0
        series = document["series"][row["variant"]]
        assert sum(series["outcomes_per_second"]) == 60
        assert series["remaining"] and all(0 <= count <= 20 for _, count in series["remaining"])
    assert rows["app_unpaced"]["429s"] > 0  # the layout does meet the limit
    assert rows["app"]["429s"] < rows["app_unpaced"]["429s"]
