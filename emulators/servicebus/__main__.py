"""`python -m emulators.servicebus --port 5672 --config servicebus-emulator/Config.json`: serve until signalled."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from emulators.servicebus.config import ConfigError
from emulators.servicebus.emulator import DEFAULT_CONFIG, ServiceBusEmulator

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Start the emulator, print its connection string, stop cleanly on SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m emulators.servicebus", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5672, help="AMQP port (default 5672; 0 picks a free one)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="the official emulator's Config.json")
    args = parser.parse_args(argv)
    try:
        emulator = ServiceBusEmulator(args.config, host=args.host, port=args.port)
    except ConfigError as error:
        print(f"servicebus emulator: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        emulator.start()
    except OSError as error:
        print(f"servicebus emulator: {error}: {error.__cause__}", file=sys.stderr)
        return 1
    print(emulator.connection_string, flush=True)
    try:
        stop.wait()
    finally:
        emulator.stop()
    print("servicebus emulator stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
