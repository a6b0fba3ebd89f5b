"""The whole local system on loopback: ARM, managed identity, Service Bus and the Functions host stand-in.

`python -m emulators.stack` (or `make run`) serves them on 8089, 8090, 5672 and 7071 and prints how to reach
each; `--json --free-ports` takes free ports instead and prints one JSON line once everything accepts
connections. The app inside gets the settings of `local.settings.emulator.json` with the ports replaced, in
os.environ before `function_app` is imported (as the worker has them). SIGINT or SIGTERM stops it all (exit 0).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from emulators.arm import SEED_RUN, ArmEmulator
from emulators.host import FunctionsHost, load_app
from emulators.identity import IdentityEmulator
from emulators.servicebus import ServiceBusEmulator

__all__ = ["DEFAULT_PORTS", "main", "read_values", "stack_settings"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PORTS = {"arm": 8089, "identity": 8090, "servicebus": 5672, "functions": 7071}


def read_values(path: str | Path) -> dict[str, str]:
    """The "Values" of a local.settings.json file."""
    return {str(k): str(v) for k, v in json.loads(Path(path).read_text(encoding="utf-8"))["Values"].items()}


def stack_settings(values: dict[str, str], *, arm: ArmEmulator, identity: IdentityEmulator,
                   servicebus: ServiceBusEmulator) -> dict[str, str]:
    """The emulator settings with each endpoint pointing at this stack's servers (the names are unchanged)."""
    return {
        **values,
        "ARM_ENDPOINT": arm.url,
        "IDENTITY_ENDPOINT": identity.endpoint,
        "IDENTITY_HEADER": identity.header_secret,
        "ServiceBusConnection": servicebus.connection_string,
    }


def _summary(settings: dict[str, str], servicebus: ServiceBusEmulator, host: FunctionsHost,
             arm: ArmEmulator, identity: IdentityEmulator) -> dict[str, Any]:
    topic = settings["OUTCOME_TOPIC_NAME"]
    topics = {t.name.lower(): t for t in servicebus.namespace.config.topics}
    subscriptions = [s.name for s in topics[topic.lower()].subscriptions] if topic.lower() in topics else []
    return {
        "arm": arm.url,
        "identity": identity.endpoint,
        "servicebus": servicebus.connection_string,
        "functions": host.url,
        "functionKey": host.key,
        "queue": settings["ARCHIVE_QUEUE_NAME"],
        "topic": topic,
        "subscriptions": subscriptions,
    }


def _instructions(summary: dict[str, Any], settings_path: str) -> str:
    """How to reach each part, with commands to paste."""
    subscription, group, registry, run = SEED_RUN
    event = json.dumps({"subscriptionId": subscription, "resourceGroupName": group, "registryName": registry,
                        "runId": run, "isArchiveEnabled": True})
    subscriptions = ", ".join(summary["subscriptions"])
    return "\n".join([
        "ACR Run Archiver local stack (Ctrl-C stops it):",
        f"  ARM emulator        {summary['arm']}   (seeded run {run} in {registry})",
        f"  managed identity    {summary['identity']}",
        f"  Service Bus         {summary['servicebus']}",
        f"    queue {summary['queue']}, topic {summary['topic']} (subscriptions {subscriptions})",
        f"  functions stand-in  {summary['functions']}/api   function key: {summary['functionKey']}",
        "",
        "Try:",
        (f"  curl -H \"x-functions-key: {summary['functionKey']}\" -H 'Content-Type: application/json' "
         f"{summary['functions']}/api/archive-events -d '{event}'"),
        f"  curl {summary['functions']}/api/health",
        f"  acr-archiver --settings {settings_path} send '{{\"runId\": \"{run}\", \"isArchiveEnabled\": true}}'",
        f"  acr-archiver --settings {settings_path} outcomes --subscription all-outcomes",
        "  (acr-archiver is `pip install -e .[cli]`; `python -m archiver_cli` is the same command)",
    ])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m emulators.stack", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line (the endpoints) instead of instructions")
    parser.add_argument("--free-ports", action="store_true", help="take free loopback ports instead of 8089/8090/5672/7071")
    parser.add_argument("--settings", default=str(ROOT / "local.settings.emulator.json"), help="the app settings file")
    parser.add_argument("--config", default=str(ROOT / "servicebus-emulator" / "Config.json"), help="Service Bus entities")
    parser.add_argument("--host-json", default=str(ROOT / "host.json"), help="the Functions host.json")
    parser.add_argument("--function-key", default=None, help="the local function key (random when omitted)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start everything, announce it, serve until SIGINT/SIGTERM, stop everything."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ports = {name: 0 for name in DEFAULT_PORTS} if args.free_ports else DEFAULT_PORTS
    values = read_values(args.settings)
    with ExitStack() as running:
        identity = running.enter_context(IdentityEmulator(header_secret=values.get("IDENTITY_HEADER"), port=ports["identity"]))
        arm = running.enter_context(ArmEmulator(token_validator=identity.is_valid, port=ports["arm"]))
        servicebus = running.enter_context(ServiceBusEmulator(args.config, port=ports["servicebus"]))
        settings = stack_settings(values, arm=arm, identity=identity, servicebus=servicebus)
        os.environ.update(settings)  # the worker's environment holds the app settings before the import
        sys.path.insert(0, str(ROOT))
        app = load_app()
        running.callback(getattr(app, "close", lambda: None))
        host = running.enter_context(FunctionsHost(app, settings, host_json=args.host_json, key=args.function_key,
                                                   port=ports["functions"]))
        summary = _summary(settings, servicebus, host, arm, identity)
        shown = os.path.relpath(args.settings) if Path(args.settings).resolve().is_relative_to(Path.cwd()) else args.settings
        print(json.dumps(summary) if args.json else _instructions(summary, shown), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
