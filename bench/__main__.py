"""`python -m bench` (`make bench`): run every phase, write the results, the plot and the doc's table.

By default everything goes to bench/out/ (git-ignored; the doc is a copy of docs/performance.md with the
new table), so a run leaves `git status` clean. `--update-docs` (`make bench UPDATE_DOCS=1`) writes the
tracked bench/results.json, docs/throughput.png and docs/performance.md instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench import backfill, cold_start, per_event
from bench.publish import measure_publish
from bench.clients import AppClient, BareClient, SdkClient, app_settings
from bench.logs import host_logging
from bench.report import machine, render_table, update_doc, write_json, write_plot
from bench.servers import ROOT, endpoints, fixed_token

__all__ = ["OUT", "Options", "main", "output_paths", "run"]

OUT = ROOT / "bench" / "out"
"""Where a run writes unless asked to update the docs (git-ignored)."""
TRACKED = (ROOT / "bench" / "results.json", ROOT / "docs" / "throughput.png", ROOT / "docs" / "performance.md")


@dataclass(frozen=True)
class Options:
    """How much to measure; the defaults are `make bench`'s (about a minute on 2 cores)."""

    rounds: int = 7
    """Per-event phase: rounds, each of `events` events per client (at least 1,000 for results)."""
    events: int = 1000
    block: int = 100
    """Within a round the clients take turns every `block` events."""
    warmup: int = 300
    references: bool = True
    """Also measure `floor` (bare loop without trust_env), `app_amqp` (the app, AMQP-encoding) and
    `sdk_tuned` (the SDK without per-request environment reads and INFO HTTP logging)."""
    levels: tuple[int, ...] = (1, 4, 16, 32)
    """Concurrency phase: thread-pool sizes, each running `per_worker` events per thread."""
    latency: float = 0.05
    per_worker: int = 50
    reuse_events: int = 2000
    reuse_workers: int = 16
    import_runs: int = 5
    """Cold start: fresh imports of each; also the backfill anchor's process start-ups."""
    backfill_runs: int = 10_000
    """Backfill phase: seeded runs listed and enqueued (0 skips the phase)."""


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def measure_per_event(options: Options) -> dict[str, Any]:
    """Phase 1: the clients interleaved against one ARM emulator process (no added latency)."""
    host_logging()
    with endpoints() as ep:
        identity_env = ep.identity.environ()
        os.environ.update(identity_env)  # ManagedIdentityCredential (app and SDK) reads it
        token = fixed_token(ep.identity)
        app = AppClient(app_settings(ep.arm_url, identity_env))
        clients: list[Any] = [BareClient(ep.arm_url, token), app, SdkClient(ep.arm_url)]
        if options.references:
            clients[2:2] = [app.with_amqp()]
            clients.insert(0, BareClient(ep.arm_url, token, trust_env=False))
            clients.append(SdkClient(ep.arm_url, tuned=True))
        try:
            measured = per_event.measure(clients, rounds=options.rounds, events=options.events, block=options.block,
                                         warmup=options.warmup, between=ep.arm.reset)
        finally:
            for client in clients:
                client.close()
        published = dict(app.bus.subjects)
    if set(published) != {"RunArchiveUpdated"}:
        raise RuntimeError(f"the app did not only succeed: {published}")
    rows = {
        name: {"median_us": measured.median_us(name), "p90_us": measured.percentile_us(name, 90),
               "round_mean_us": measured.mean_of_rounds_us(name)}
        for name in measured.events_ns
    }
    return {"rows": rows}


def measure_load(options: Options) -> dict[str, Any]:
    """Phases 2 and 3: `python -m bench.load` in its own process."""
    command = [
        sys.executable, "-m", "bench.load", "--levels", ",".join(map(str, options.levels)),
        "--latency", str(options.latency), "--per-worker", str(options.per_worker),
        "--reuse-events", str(options.reuse_events), "--reuse-workers", str(options.reuse_workers),
    ]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.load failed ({done.returncode}):\n{done.stderr[-4000:]}")
    load = json.loads(done.stdout.strip().splitlines()[-1])
    if set(load["outcomes"]) != {"RunArchiveUpdated"}:
        raise RuntimeError(f"the load run did not only succeed: {load['outcomes']}")
    return load


def run(options: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every phase; returns results.json's content and the details the doc's table also shows."""
    _say(f"per-event cost: {options.rounds} rounds x {options.events} events per client")
    first = measure_per_event(options)
    rows = first["rows"]
    _say(f"concurrency and reuse (own process, ARM latency {options.latency * 1000:g} ms)")
    load = measure_load(options)
    _say(f"cold start: {options.import_runs} fresh imports of each")
    cold = cold_start.compare(options.import_runs)
    if options.backfill_runs:
        _say(f"backfill: list and enqueue {options.backfill_runs:,} seeded runs; anchor: one process per run")
        details_backfill = backfill.measure(options.backfill_runs, anchor_runs=options.import_runs)
    else:
        details_backfill = None
    _say(f"publish over AMQP: {options.events} events, outcomes to the local Service Bus on loopback")
    publish = measure_publish(options.events, options.warmup)
    app, bare, sdk = (rows[name]["median_us"] for name in ("app", "bare", "sdk"))
    results = {
        "per_event_us": {"bare": round(bare, 1), "app": round(app, 1), "sdk": round(sdk, 1)},
        "ratios": {"app_vs_bare": round(app / bare, 3), "sdk_vs_app": round(sdk / app, 3)},
        "concurrency": [
            {"workers": level["workers"], "events_per_s": round(level["events_per_s"], 1),
             "ideal_events_per_s": round(level["ideal_events_per_s"], 1)}
            for level in load["concurrency"]
        ],
        "token_fetches": load["reuse"]["token_fetches"],
        "arm_connections": load["reuse"]["arm_connections"],
        "sb_senders": load["reuse"]["sb_senders"],
        "import_ms": {"function_app": round(cold.function_app_ms, 1), "deps": round(cold.deps_ms, 1)},
        "peak_rss_mb": round(load["peak_rss_mb"], 1),
        "publish_amqp": {"publish_us": round(publish["publish_median_us"], 1), "event_us": round(publish["event_median_us"], 1),
                         "share": round(publish["share_median"], 3)},
        "machine": machine(),
    }
    round_mean = {name: row["round_mean_us"] for name, row in rows.items()}
    round_ratios = {"app_vs_bare": round_mean["app"] / round_mean["bare"], "sdk_vs_app": round_mean["sdk"] / round_mean["app"]}
    if "floor" in round_mean:
        round_ratios["app_vs_floor"] = round_mean["app"] / round_mean["floor"]
        round_ratios["app_amqp_vs_bare"] = round_mean["app_amqp"] / round_mean["bare"]
        round_ratios["sdk_tuned_vs_app"] = round_mean["sdk_tuned"] / round_mean["app"]
    details = {
        "when": time.strftime("%Y-%m-%d", time.gmtime()),
        "rounds": options.rounds,
        "events": options.events,
        "per_event": rows,
        "round_ratios": round_ratios,
        "latency_s": options.latency,
        "concurrency": load["concurrency"],
        "reuse": load["reuse"],
        "import_runs": options.import_runs,
        "extra_modules": cold.extra_modules,
        "backfill": details_backfill,
        "publish": publish,
    }
    return results, details


def main(argv: list[str] | None = None) -> int:
    """Run with `make bench`'s defaults (every Options field can be changed), then write the outputs."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    defaults = Options()
    for option in fields(Options):
        flag = "--" + option.name.replace("_", "-")
        default = getattr(defaults, option.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=lambda text: tuple(int(part) for part in text.split(",")), default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    parser.add_argument("--update-docs", action="store_true", help="write the tracked results, plot and doc (default bench/out/)")
    parser.add_argument("--results", type=Path, help="results.json to write (instead of the default)")
    parser.add_argument("--plot", type=Path, help="throughput.png to write")
    parser.add_argument("--doc", type=Path, help="performance.md whose table is replaced")
    args = parser.parse_args(argv)
    results_path, plot, doc = output_paths(args.update_docs, args.results, args.plot, args.doc)
    started = time.perf_counter()
    results, details = run(Options(**{option.name: getattr(args, option.name) for option in fields(Options)}))
    for path in (results_path, plot, doc):
        path.parent.mkdir(parents=True, exist_ok=True)
    write_json(results, results_path)
    write_plot(details["concurrency"], details["latency_s"], plot)
    table = render_table(results, details)
    if not update_doc(doc, table):
        _say(f"{doc} has no result markers; its table was not updated")
    print(table)
    if details["backfill"] is not None:  # its own file and doc section: results.json keeps exactly RESULT_KEYS
        backfill_path = results_path.with_name("backfill.json")
        backfill_path.write_text(json.dumps(details["backfill"], indent=2) + "\n")
        section = backfill.render_section(details["backfill"])
        if not update_doc(doc, section, backfill.MARKERS):
            _say(f"{doc} has no backfill markers; its backfill section was not updated")
        print(section)
        _say(f"wrote {backfill_path}")
    _say(f"wrote {results_path}, {plot} and {doc} in {time.perf_counter() - started:.0f} s")
    if not args.update_docs:
        _say("the docs were left as they are; `make bench UPDATE_DOCS=1` updates them")
    return 0


def output_paths(
    update_docs: bool, results: Path | None = None, plot: Path | None = None, doc: Path | None = None
) -> tuple[Path, Path, Path]:
    """The results, plot and doc a run writes: the tracked ones only when asked, else bench/out/ (explicit paths win)."""
    tracked_results, tracked_plot, tracked_doc = TRACKED
    if update_docs:
        return results or tracked_results, plot or tracked_plot, doc or tracked_doc
    if doc is None:
        doc = OUT / tracked_doc.name
        OUT.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tracked_doc, doc)  # the copy gets the new table; the tracked doc is untouched
    return results or OUT / tracked_results.name, plot or OUT / tracked_plot.name, doc


if __name__ == "__main__":
    sys.exit(main())
