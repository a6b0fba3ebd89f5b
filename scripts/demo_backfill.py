"""`python -m scripts.demo_backfill`: the operator's backfill, with its progress bar, against the local emulators.

A seeded registry (ARM emulator, pages of 100), the identity endpoint, and the AMQP Service Bus emulator
with the archive queue of servicebus-emulator/Config.json (duplicate detection on). `acr-archiver backfill`
runs three times: --dry-run (what would be sent), for real (progress on stderr: rich's bar on a terminal,
plain lines when piped), and again, when the queue's duplicate detection drops every repeated id.
"""

from __future__ import annotations

import io
import sys

from archiver_cli import main as acr_archiver
from emulators import ArmEmulator, IdentityEmulator
from emulators.servicebus import ServiceBusEmulator

__all__ = ["main"]

SUBSCRIPTION = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
GROUP = "myResourceGroup"
REGISTRY = "backfillDemo"
QUEUE = "acr-archive-events"
RUNS = 3000


def main() -> int:
    """Run the three backfills; exit 0 when every wanted run was enqueued once and the repeat was dropped whole."""
    with IdentityEmulator() as identity, ArmEmulator(token_validator=identity.is_valid, page_size=100) as arm, \
            ServiceBusEmulator() as bus:
        runs = arm.seed_registry(SUBSCRIPTION, GROUP, REGISTRY, RUNS, seed=4)
        wanted = [r for r in runs if r["properties"].get("task") == "release" and not r["properties"]["isArchiveEnabled"]]
        env = {
            **identity.environ(), "ARM_ENDPOINT": arm.url, "ARCHIVE_QUEUE_NAME": QUEUE, "ServiceBusConnection": bus.connection_string,
            "DEFAULT_SUBSCRIPTION_ID": SUBSCRIPTION, "DEFAULT_RESOURCE_GROUP": GROUP,
        }
        print(f"\n-- backfill: {REGISTRY} ({RUNS} seeded runs, ARM pages of 100), the queue on the Service Bus emulator --")
        shown = io.StringIO()
        command = ["backfill", "-r", REGISTRY, "--task", "release", "--policy", "release-builds"]
        print(f"$ acr-archiver {' '.join(command)} --dry-run -o json", flush=True)
        dry = acr_archiver([*command, "--dry-run", "-o", "json"], env=env, stdout=shown)
        lines = shown.getvalue().splitlines()
        print(f"  {len(lines)} events, e.g. {lines[0] if lines else '-'}")
        print(f"$ acr-archiver --progress {' '.join(command)}", flush=True)
        sent = acr_archiver(["--progress", *command], env=env)
        stored = len(bus.messages(QUEUE))
        print(f"$ acr-archiver {' '.join(command)}   # again: the same ids", flush=True)
        again = acr_archiver(command, env=env)
        dropped = bus.duplicates_dropped(QUEUE)
    ok = (dry, sent, again) == (0, 0, 0) and len(lines) == stored == dropped == len(wanted) > 0
    print(f"backfill {'ok' if ok else 'FAILED'}: {stored} events on {QUEUE} for {len(wanted)} release runs not yet archived; "
          f"the repeat's {dropped} dropped by duplicate detection")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
