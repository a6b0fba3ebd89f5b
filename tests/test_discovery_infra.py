"""Deployment pieces of discovery: the failed-sweeps subscription example and the settings Bicep passes the app."""

from __future__ import annotations

from pathlib import Path

from tests.bicep_text import Template

INFRA = Path(__file__).resolve().parents[1] / "infra"
SERVICE_BUS = Template(INFRA / "modules" / "servicebus.bicep")
MAIN = Template(INFRA / "main.bicep")


def test_the_failed_sweeps_subscription_receives_only_failed_summaries() -> None:
    """A subscription on the outcome topic whose one SQL rule selects subject ArchivePolicySwept with outcome failed."""
    subscription = SERVICE_BUS.resource("failedSweeps")
    rule = SERVICE_BUS.resource("failedSweepsOnly")
    assert subscription["parent"] == "outcomeTopic" and rule["parent"] == "failedSweeps"
    assert rule["properties"]["filterType"] == "SqlFilter"
    assert (
        rule["properties"]["sqlFilter"]["sqlExpression"].replace("\\'", "'")
        == "sys.Label = 'ArchivePolicySwept' AND outcome = 'failed'"
    )
    assert subscription["properties"]["deadLetteringOnMessageExpiration"] is True


def test_policies_are_off_by_default_in_the_template() -> None:
    """No policy unless the deployer gives one; the schedule and lookback have the contract's defaults."""
    assert MAIN.default("archivePolicies") == ""
    assert MAIN.default("archivePolicySchedule") == "0 */15 * * * *"
    assert MAIN.default("archivePolicyLookbackDays") == 30
