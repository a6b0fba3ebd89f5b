"""The app factory: one FunctionApp per configuration, one blueprint per entry family.

`function_app.py` calls `build_app(os.environ)` once; tests, the demo, the soak and the bench call it
with a plain mapping (and, where they need them, other factories for the outside systems), so each
configuration is its own app with its own resources, and nothing global is swapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import azure.functions as func

from shared.functions.http import http_blueprint
from shared.functions.queue import queue_blueprint
from shared.functions.timer import has_schedule, timer_blueprint
from shared.runtime import Runtime

__all__ = ["ArchiverApp", "build_app"]


class ArchiverApp(func.FunctionApp):
    """A FunctionApp that owns the process resources its functions share."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(http_auth_level=func.AuthLevel.FUNCTION)
        self.runtime = runtime

    def close(self) -> None:
        """Release the app's connections, senders and threads."""
        self.runtime.close()


def build_app(env: Mapping[str, str], **factories: Any) -> ArchiverApp:
    """The function app for the settings in `env`; `factories` replace how outside clients are built (see Runtime)."""
    app = ArchiverApp(Runtime(env, **factories))
    app.register_blueprint(queue_blueprint(app.runtime))
    app.register_blueprint(http_blueprint(app.runtime))
    if has_schedule(env):  # the host cannot index a timer whose %ARCHIVE_POLICY_SCHEDULE% does not resolve
        app.register_blueprint(timer_blueprint(app.runtime))
    return app
