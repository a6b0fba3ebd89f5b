"""`python -m bench.profile [app|bare|sdk|floor] [events] [--all]`: where one client's time goes (pyinstrument).

Same set-up as the per-event phase (ARM emulator process, host logging); prints pyinstrument's call
tree of `events` events after a warm-up. Sampling every 100 µs slows the client about twofold, so
read the shares, not the absolute times. `--all` also opens the library frames (requests, azure).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pyinstrument import Profiler

from bench.clients import AppClient, BareClient, SdkClient, app_settings
from bench.logs import host_logging
from bench.servers import endpoints, fixed_token


def main(argv: Sequence[str] | None = None) -> int:
    """Profile one client and print the tree."""
    args = list(sys.argv[1:] if argv is None else argv)
    show_all = "--all" in args
    args = [arg for arg in args if arg != "--all"]
    which = args[0] if args else "app"
    events = int(args[1]) if len(args) > 1 else 3000
    host_logging()
    with endpoints() as ep:
        identity_env = ep.identity.environ()
        os.environ.update(identity_env)
        token = fixed_token(ep.identity)
        factories = {
            "app": lambda: AppClient(app_settings(ep.arm_url, identity_env)),
            "bare": lambda: BareClient(ep.arm_url, token),
            "floor": lambda: BareClient(ep.arm_url, token, trust_env=False),
            "sdk": lambda: SdkClient(ep.arm_url),
        }
        client = factories[which]()
        for n in range(300):
            client(n)
        profiler = Profiler(interval=0.0001)
        profiler.start()
        for n in range(events):
            client(n)
        profiler.stop()
        client.close()
    print(profiler.output_text(unicode=True, color=False, show_all=show_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
