"""Faults a test arms on the Service Bus emulator; each fires a counted number of times on the reactor thread."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Faults", "SendRejection"]


@dataclass(frozen=True)
class SendRejection:
    """How a rejected send is answered: the AMQP error condition and description on the rejected outcome."""

    condition: str = "com.microsoft:server-busy"
    description: str = "The emulator rejected this send (injected fault)."


@dataclass
class Faults:
    """Armed faults: refused put-tokens and rejected sends, each with a remaining count."""

    refuse_cbs: int = 0
    reject_sends: list[SendRejection] = field(default_factory=list)

    def take_cbs_refusal(self) -> bool:
        """Consume one armed CBS refusal."""
        if self.refuse_cbs <= 0:
            return False
        self.refuse_cbs -= 1
        return True

    def take_send_rejection(self) -> SendRejection | None:
        """Consume one armed send rejection."""
        return self.reject_sends.pop(0) if self.reject_sends else None
