"""`FunctionsHost`: index the app once and drive each function from its trigger (queue, HTTP, timer)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import azure.functions as func

from emulators.host.hostjson import HostOptions
from emulators.host.http import HttpFrontend
from emulators.host.index import BindingError, IndexedFunction, index_app
from emulators.host.queue import QueueListener
from emulators.host.timer import TimerRunner

__all__ = ["FunctionsHost"]

log = logging.getLogger("emulators.host")
_QUEUE, _HTTP, _TIMER = "serviceBusTrigger", "httpTrigger", "timerTrigger"


class FunctionsHost:
    """A stand-in for the Functions host: the app's real functions, real azure-functions converters, real Service Bus client."""

    def __init__(self, app: func.FunctionApp, env: Mapping[str, str], *, options: HostOptions | None = None,
                 host_json: str | Path | None = None, key: str | None = None, host: str = "127.0.0.1",
                 port: int = 7071, timers: bool = True) -> None:
        self.app = app
        self.env = dict(env)
        self.options = options or (HostOptions.load(host_json) if host_json else HostOptions())
        self.key = key or secrets.token_urlsafe(32)
        self.functions = index_app(app)
        unsupported = sorted({f.trigger_type for f in self.functions} - {_QUEUE, _HTTP, _TIMER})
        if unsupported:
            raise BindingError(f"the stand-in serves queue, HTTP and timer triggers, not {', '.join(unsupported)}")
        self.http = HttpFrontend(self._of(_HTTP), key=self.key, route_prefix=self.options.route_prefix, host=host, port=port)
        self.listeners = {f.name: QueueListener(f, self.env, self.options) for f in self._of(_QUEUE)}
        self.timers = {f.name: TimerRunner(f, self.env) for f in self._of(_TIMER)}
        self._run_timers = timers
        self._started = False

    def _of(self, trigger_type: str) -> list[IndexedFunction]:
        return [f for f in self.functions if f.trigger_type == trigger_type]

    @property
    def url(self) -> str:
        """The HTTP base URL, e.g. http://127.0.0.1:7071 (routes are below the route prefix)."""
        return self.http.url

    def start(self, ready_timeout: float = 30.0) -> Self:
        """Serve HTTP, open every queue receiver (raises if one cannot), start the timers."""
        self._started = True
        self.http.start()
        for listener in self.listeners.values():
            listener.start()
        for listener in self.listeners.values():
            if not listener.ready.wait(ready_timeout) or listener.error is not None:
                self.stop()
                raise RuntimeError(f"queue listener {listener.function.name} did not start") from listener.error
        if self._run_timers:
            for timer in self.timers.values():
                timer.start()
        return self

    def fire_timer(self, name: str) -> Any:
        """Run timer function `name` now, as its schedule would (for tests); returns what it returns."""
        if name not in self.timers:
            raise KeyError(f"no timer function {name!r}; timers: {sorted(self.timers)}")
        return self.timers[name].fire()

    def stop(self) -> None:
        """Stop the timers, the receivers (settling running invocations) and the HTTP server."""
        if not self._started:
            return
        self._started = False
        for timer in self.timers.values():
            timer.stop()
        for listener in self.listeners.values():
            listener.stop()
        self.http.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
