"""`make bench`'s machinery on a tiny run: every phase runs and results.json has exactly its keys.

Timings are not asserted (the benchmark reports them, docs/performance.md); this only checks that
the benchmark works and writes what it promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.report import BEGIN, END, RESULT_KEYS

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--rounds", "1", "--events", "20", "--block", "10", "--warmup", "2", "--no-references",
    "--levels", "1,2", "--latency", "0.01", "--per-worker", "5", "--reuse-events", "20", "--reuse-workers", "2",
    "--import-runs", "1", "--backfill-runs", "300",
]


def test_a_tiny_benchmark_run_writes_results_with_exactly_the_required_keys(tmp_path: Path) -> None:
    """python -m bench on 20 events writes results.json (the required keys, sane types), the plot and the table."""
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\n{BEGIN}\nPREVIOUS-TABLE\n{END}\n\nafter\n")
    results_path, plot = tmp_path / "results.json", tmp_path / "throughput.png"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, "--results", str(results_path), "--plot", str(plot), "--doc", str(doc)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    results = json.loads(results_path.read_text())
    assert tuple(results) == RESULT_KEYS
    assert set(results["per_event_us"]) == {"bare", "app", "sdk"}
    assert all(isinstance(v, float) and v > 0 for v in results["per_event_us"].values())
    assert set(results["ratios"]) == {"app_vs_bare", "sdk_vs_app"}
    assert all(isinstance(v, float) and v > 0 for v in results["ratios"].values())
    assert [level["workers"] for level in results["concurrency"]] == [1, 2]
    for level in results["concurrency"]:
        assert set(level) == {"workers", "events_per_s", "ideal_events_per_s"}
        assert level["events_per_s"] > 0 and level["ideal_events_per_s"] == level["workers"] / 0.01
    assert results["token_fetches"] == 1 and results["sb_senders"] == 1
    assert isinstance(results["arm_connections"], int) and 1 <= results["arm_connections"] <= 2
    assert set(results["import_ms"]) == {"function_app", "deps"} and all(v > 0 for v in results["import_ms"].values())
    assert isinstance(results["peak_rss_mb"], float) and results["peak_rss_mb"] > 0
    assert set(results["publish_amqp"]) == {"publish_us", "event_us", "share"}
    assert 0 < results["publish_amqp"]["publish_us"] < results["publish_amqp"]["event_us"] and 0 < results["publish_amqp"]["share"] < 1
    assert isinstance(results["machine"], dict) and results["machine"]["python"]

    backfill = json.loads((tmp_path / "backfill.json").read_text())  # its own file: results.json keeps RESULT_KEYS
    assert backfill["runs"] == 300 and backfill["end_to_end_runs_per_s"] > 0 and backfill["anchor"]["process_s"] > 0
    assert plot.read_bytes().startswith(b"\x89PNG")
    text = doc.read_text()
    assert "PREVIOUS-TABLE" not in text and "| **(b) app**" in text and "publish's share of the event" in text and text.endswith(f"{END}\n\nafter\n")


def test_a_default_run_leaves_git_status_clean_and_update_docs_writes_the_tracked_files() -> None:
    """`make bench` writes under the git-ignored bench/out/ (the doc as a copy); `UPDATE_DOCS=1` writes the tracked files."""
    from bench.__main__ import OUT, TRACKED, output_paths

    tracked_doc = TRACKED[2].read_bytes()
    paths = output_paths(False)
    assert all(path.parent == OUT for path in paths) and paths[2].read_bytes() == tracked_doc
    ignored = subprocess.run(["git", "check-ignore", *map(str, paths)], cwd=ROOT, check=False, capture_output=True, text=True)
    assert ignored.returncode == 0 and len(ignored.stdout.splitlines()) == 3, "bench/out/ must be git-ignored"
    assert output_paths(True) == TRACKED
    explicit = Path("/elsewhere/results.json")
    assert output_paths(False, results=explicit)[0] == explicit
    assert "--update-docs" in (ROOT / "Makefile").read_text() and "UPDATE_DOCS" in (ROOT / "Makefile").read_text()
