"""A stand-in for the Azure Functions host: drives the app's real functions from real triggers, locally.

It indexes the app as the Python worker does (`app.get_functions()` once, raw binding JSON), builds each input
with azure-functions' own converters, receives with the real azure-servicebus client, and serves HTTP on
loopback. It is not the Functions host: `func start` remains the way to run the real one.

- `host`: `FunctionsHost(app, env, host_json=...)`: `.start()`, `.url`, `.key`, `.fire_timer(name)`, `.stop()`.
- `index`: loading and indexing; `%SETTING%` resolution. `connections`: `connection=` → a ServiceBusClient.
- `queue`: peek-lock receive, a pool of `maxConcurrentCalls`, complete/abandon, lock renewal.
- `metadata`: a received message as host-shaped Datums. `http`, `routes`: HTTP triggers and function keys.
- `timer`, `ncrontab`: the timer trigger and its schedules. `hostjson`: the host.json options honoured.
"""

from __future__ import annotations

from emulators.host.host import FunctionsHost
from emulators.host.hostjson import HostOptions
from emulators.host.index import BindingError, load_app

__all__ = ["BindingError", "FunctionsHost", "HostOptions", "load_app"]
