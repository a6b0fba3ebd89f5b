"""The results: bench/results.json, the throughput plot and the table in docs/performance.md."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["RESULT_KEYS", "machine", "render_table", "update_doc", "write_json", "write_plot"]

RESULT_KEYS = (
    "per_event_us", "ratios", "concurrency", "token_fetches", "arm_connections", "sb_senders",
    "import_ms", "peak_rss_mb", "publish_amqp", "machine",
)
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
_PACKAGES = ("requests", "urllib3", "azure-functions", "azure-servicebus", "azure-identity", "azure-core",
             "azure-mgmt-containerregistrytasks")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "packages": packages,
    }


def write_json(results: dict[str, Any], path: Path) -> None:
    """results.json, with exactly RESULT_KEYS."""
    if tuple(results) != RESULT_KEYS:
        raise ValueError(f"results keys {list(results)} are not {list(RESULT_KEYS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def write_plot(concurrency: list[dict[str, Any]], latency: float, path: Path) -> None:
    """Throughput against concurrency, next to the ideal (concurrency ÷ latency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workers = [level["workers"] for level in concurrency]
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    axes.plot(workers, [level["ideal_events_per_s"] for level in concurrency], "--", color="grey",
              label=f"ideal: concurrency ÷ {latency * 1000:g} ms")
    measured = [level["events_per_s"] for level in concurrency]
    axes.plot(workers, measured, "o-", color="tab:blue", label="queue function (measured)")
    for level in concurrency:
        share = level["events_per_s"] / level["ideal_events_per_s"]
        axes.annotate(f"{share:.0%}", (level["workers"], level["events_per_s"]),
                      textcoords="offset points", xytext=(6, -12), fontsize=8)
    axes.set_xscale("log", base=2)
    axes.set_xticks(workers, [str(w) for w in workers])
    axes.set_xlabel("concurrent invocations (thread pool)")
    axes.set_ylabel("events per second")
    axes.set_title(f"Queue function throughput, ARM answering after {latency * 1000:g} ms")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def render_table(results: dict[str, Any], details: dict[str, Any]) -> str:
    """The Markdown tables of one run."""
    per_event, ratios = results["per_event_us"], results["ratios"]
    extra = details["per_event"]
    host = results["machine"]
    lines = [
        (
            f"Measured {details['when']} on {host['cpu']} ({host['cores']} cores), Python {host['python']}; "
            f"{details['rounds']} rounds of {details['events']} events per client, interleaved; "
            "the ARM emulator in its own process."
        ),
        "",
        "| per event | median µs | p90 µs | mean of a round, µs (median of rounds) |",
        "|---|---:|---:|---:|",
    ]
    labels = {
        "floor": "floor: bare loop, `trust_env = False` (reference)",
        "bare": "**(a) bare** `requests.Session` PATCH loop",
        "app": "**(b) app**: queue function end to end",
        "app_amqp": "app, its sender also AMQP-encoding (reference)",
        "sdk": "**(c) SDK** `runs.update`",
        "sdk_tuned": "SDK, `use_env_settings=False`, HTTP logging off (reference)",
    }
    for name, label in labels.items():
        if name in extra:
            row = extra[name]
            lines.append(f"| {label} | {row['median_us']:.0f} | {row['p90_us']:.0f} | {row['round_mean_us']:.0f} |")
    lines += [
        "",
        "| ratio | median | from round means | target |",
        "|---|---:|---:|---|",
        f"| app ÷ bare (b/a) | **{ratios['app_vs_bare']:.3f}** | {details['round_ratios']['app_vs_bare']:.3f} | ≤ 1.10 |",
        f"| SDK ÷ app (c/b) | **{ratios['sdk_vs_app']:.3f}** | {details['round_ratios']['sdk_vs_app']:.3f} | ≥ 1.5 |",
    ]
    if "floor" in extra:
        lines.append(f"| app ÷ floor | {per_event['app'] / extra['floor']['median_us']:.3f} | "
                     f"{details['round_ratios']['app_vs_floor']:.3f} | (reference) |")
        lines.append(f"| app AMQP-encoding ÷ bare | {extra['app_amqp']['median_us'] / per_event['bare']:.3f} | "
                     f"{details['round_ratios']['app_amqp_vs_bare']:.3f} | (reference) |")
        lines.append(f"| SDK tuned ÷ app | {extra['sdk_tuned']['median_us'] / per_event['app']:.3f} | "
                     f"{details['round_ratios']['sdk_tuned_vs_app']:.3f} | (reference) |")
    lines += [
        "",
        f"Concurrency: every ARM answer delayed {details['latency_s'] * 1000:g} ms; the queue function on a thread pool.",
        "",
        "| concurrent invocations | events | events/s | ideal events/s | share of ideal |",
        "|---:|---:|---:|---:|---:|",
    ]
    for level in details["concurrency"]:
        lines.append(f"| {level['workers']} | {level['events']} | {level['events_per_s']:.1f} | "
                     f"{level['ideal_events_per_s']:.0f} | {level['events_per_s'] / level['ideal_events_per_s']:.1%} |")
    publish = details["publish"]
    lines += [
        "",
        f"Publish over AMQP: the queue function with its real ServiceBusPublisher, the outcome sent to the local Service Bus "
        f"on loopback (`emulators.servicebus`); {publish['events']} events, each publish timed inside its event.",
        "",
        "| per event, outcome published over AMQP | median µs | p90 µs |",
        "|---|---:|---:|",
        f"| the event end to end (ARM PATCH + publish) | {publish['event_median_us']:.0f} | {publish['event_p90_us']:.0f} |",
        f"| its `publish` (encode, transfer, accepted disposition) | {publish['publish_median_us']:.0f} "
        f"| {publish['publish_p90_us']:.0f} |",
        f"| publish's share of the event | {publish['share_median']:.1%} (median of events) "
        f"| {publish['share_of_totals']:.1%} (of the totals) |",
    ]
    reuse = details["reuse"]
    cold = results["import_ms"]
    lines += [
        "",
        f"| reuse, {reuse['events']} events from a cold Runtime, {reuse['workers']} concurrent | count | target |",
        "|---|---:|---|",
        f"| managed-identity token requests | {results['token_fetches']} | 1 |",
        f"| TCP connections to ARM (counted by the emulator) | {results['arm_connections']} | ≤ {reuse['workers']} |",
        f"| Service Bus senders created | {results['sb_senders']} | 1 |",
        "",
        "| process | value |",
        "|---|---:|",
        f"| peak RSS of the load process (app, {details['concurrency'][-1]['workers']} threads) | {results['peak_rss_mb']:.1f} MB |",
        f"| first invocation, cold (imports azure.identity, token, connection) | {reuse['first_event_ms']:.0f} ms |",
        f"| `import function_app` (median of {details['import_runs']} fresh processes) | {cold['function_app']:.0f} ms |",
        f"| `import azure.functions, azure.identity, azure.servicebus, requests` | {cold['deps']:.0f} ms |",
        (
            f"| imported by `function_app` beyond those four | {', '.join(details['extra_modules']) or 'nothing'} "
            f"({sum(details['extra_modules'].values()) / 1000:.1f} ms self time) |"
        ),
    ]
    return "\n".join(lines)


def update_doc(path: Path, table: str, markers: tuple[str, str] = (BEGIN, END)) -> bool:
    """Replace the text between the markers (the results') of docs/performance.md; False when it has none."""
    begin, end = markers
    if not path.exists():
        return False
    text = path.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{table}\n{end}{tail}")
    return True
