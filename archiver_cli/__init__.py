"""Operator CLI: `acr-archiver` (or `python -m archiver_cli`): archive, runs list, backfill, policies, send, dead-letters, outcomes.

Every command reuses the app's own pieces: `Settings` (the same setting names, read from the
environment or a local.settings.json), `parse_event`, `ArmClient` (Runs - Update and Runs - List), the
sweep's events and loop (shared.discovery), the queue sender (shared.reschedule), the service's sweep,
the outcome records and `servicebus_client_factory`. It lives beside the app package, never inside it: `.funcignore` keeps it
out of the deployment, and its own requirements are in requirements-cli.txt.
Exit status: 0 done, 1 Azure or Service Bus reported a failure, 2 bad usage or input.
"""

from __future__ import annotations

from archiver_cli.app import build_parser, main

__all__ = ["build_parser", "main"]
