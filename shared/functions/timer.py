"""The policy timer (contract §8): every ARCHIVE_POLICIES policy swept in turn on %ARCHIVE_POLICY_SCHEDULE%."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import azure.functions as func

from shared.runtime import Runtime
from shared.setting_parsers import Malformed, ncrontab

__all__ = ["SCHEDULE_SETTING", "has_schedule", "timer_blueprint"]

log = logging.getLogger(__name__)

SCHEDULE_SETTING = "ARCHIVE_POLICY_SCHEDULE"


def has_schedule(env: Mapping[str, str]) -> bool:
    """True when the host can resolve %ARCHIVE_POLICY_SCHEDULE% to a schedule: set, and a valid NCRONTAB.

    The host resolves the binding expression when it indexes the app, and an unresolvable one fails
    the indexing of the function. Without policies the app must run without the setting (contract
    §1), so the timer is registered only when the setting can be resolved; when ARCHIVE_POLICIES is
    set and the schedule is missing or malformed, GET /api/health names it (503) instead.
    """
    raw = env.get(SCHEDULE_SETTING)
    if not isinstance(raw, str) or not raw.strip():
        return False
    try:
        ncrontab(raw.strip())
    except Malformed:
        return False
    return True


def timer_blueprint(runtime: Runtime) -> func.Blueprint:
    """The `archive_policy_timer` function; register it only when `has_schedule(env)`."""
    blueprint = func.Blueprint()

    @blueprint.function_name("archive_policy_timer")
    @blueprint.timer_trigger(arg_name="timer", schedule=f"%{SCHEDULE_SETTING}%", run_on_startup=False, use_monitor=True)
    def archive_policy_timer(timer: func.TimerRequest) -> None:
        """Sweep every policy in turn; a failing one never stops the others (raises only after all ran)."""
        if timer.past_due:
            log.info("policy timer is past due; sweeping now")
        settings = runtime.settings()
        if not settings.archive_policies:
            log.info("policy timer: ARCHIVE_POLICIES is unset; nothing to sweep")
            return
        runtime.archiver().sweep(settings.archive_policies, "timer")

    return blueprint
