"""`make demo` keeps working: the demo script runs every flow over the wire, exits 0 and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_runs_every_flow_through_the_broker_and_cleans_up(tmp_path: Path) -> None:
    """Queue, HTTP, redelivery, dead letter and resubmit, re-schedule, discovery, in a fresh interpreter; no temp files stay."""
    root = Path(__file__).resolve().parents[1]
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for shown in (
        "Service Bus Endpoint=sb://127.0.0.1:",
        "HTTP 200",
        "HTTP 404",
        "HTTP 400",
        "RunArchiveEventRejected",
        "(delivery 1 of 3)",
        "(delivery 2 of 3)",
        "on delivery 3",
        "MaxDeliveryCountExceeded",
        "retryable=True",
        ":resubmit-1",
        "failed then succeeded",
        ":rescheduled:1",
        "ArchivePolicySwept",
        "ImagePushed",
        "demo ok",
    ):
        assert shown in out, shown
    assert "managed-identity token requests: 1;" in out
    assert list(temp.iterdir()) == []
