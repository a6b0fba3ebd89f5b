"""Long-running-operation plans and operation records of the ARM emulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FINAL_STATES", "LroPlan", "Operation", "VIA_CHOICES"]

FINAL_STATES = ("Succeeded", "Failed", "Canceled")
VIA_CHOICES = ("async", "location", "run")
RunKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class LroPlan:
    """How the next PATCH of a run is accepted (201) and how it finishes."""

    polls: int = 2
    final: str = "Succeeded"
    via: str = "async"  # one of VIA_CHOICES
    retry_after: int | None = None
    poll_host: str | None = None

    def __post_init__(self) -> None:
        if self.final not in FINAL_STATES:
            raise ValueError(f"final must be one of {', '.join(FINAL_STATES)}, not {self.final!r}")
        if self.via not in VIA_CHOICES:
            raise ValueError(f"via must be one of {', '.join(VIA_CHOICES)}, not {self.via!r}")
        if self.polls < -1:
            raise ValueError("polls must be >= 0, or -1 for never")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")


@dataclass
class Operation:
    """A PATCH accepted with 201, finishing after `plan.polls` polls (never when -1)."""

    op_id: str
    key: RunKey
    plan: LroPlan
    start_time: str
    previous_archive: bool
    remaining: int = field(init=False)
    status: str = "InProgress"
    end_time: str | None = None

    def __post_init__(self) -> None:
        self.remaining = self.plan.polls

    @property
    def run_id(self) -> str:
        """Run id of the run this operation updates."""
        return self.key[3]

    @property
    def done(self) -> bool:
        """True once the operation reached a terminal status."""
        return self.status != "InProgress"

    def poll(self) -> bool:
        """Count one poll; True when this poll is the one that should see the final state."""
        if self.done or self.remaining < 0:
            return False
        if self.remaining > 0:
            self.remaining -= 1
            return False
        return True

    def status_body(self, subscription_id: str, location: str) -> dict[str, Any]:
        """Azure-AsyncOperation status resource."""
        body: dict[str, Any] = {
            "id": f"/subscriptions/{subscription_id}/providers/Microsoft.ContainerRegistry"
            f"/locations/{location}/operationStatuses/{self.op_id}",
            "name": self.op_id,
            "status": self.status,
            "startTime": self.start_time,
        }
        if self.end_time:
            body["endTime"] = self.end_time
        if self.status == "Failed":
            message = f"The update of run '{self.run_id}' failed."
            body["error"] = {"code": "RunUpdateFailed", "message": message}
        return body
