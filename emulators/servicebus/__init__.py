"""A local AMQP 1.0 Service Bus for the real `azure-servicebus` client, built on python-qpid-proton.

- `emulator`: `ServiceBusEmulator(config, port=0).start()` → `.port`, `.connection_string`, state, faults.
- `broker`: the proton reactor handler (links, CBS, settlement).
- `store`: queues, topics, subscriptions, dead-letter queues, locks, schedules.
- `config`: the official emulator's `Config.json`; `sqlfilter`: subscription rules; `management`: `$management`.
- `cbs`: put-token checks; `faults`: armed faults; `wire`: AMQP message sections.
"""

from __future__ import annotations

from emulators.servicebus.config import ConfigError
from emulators.servicebus.emulator import ServiceBusEmulator
from emulators.servicebus.faults import SendRejection

__all__ = ["ConfigError", "SendRejection", "ServiceBusEmulator"]
