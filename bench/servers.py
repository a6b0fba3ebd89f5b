"""The endpoints the benchmark talks to: the ARM emulator in its own process, the identity endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from emulators import IdentityEmulator
from emulators.arm_client import ArmEmulatorClient

__all__ = ["ROOT", "Endpoints", "arm_process", "endpoints", "fixed_token"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Endpoints:
    """The running ARM emulator (driven over its control API) and the identity endpoint."""

    arm_url: str
    arm: ArmEmulatorClient
    identity: IdentityEmulator


@contextmanager
def arm_process(latency: float = 0.0, *, module: tuple[str, ...] | None = None) -> Iterator[str]:
    """`python -m emulators.arm` (or `module`: another command line that serves one) in a subprocess; yields its URL.

    The emulator keeps connections alive and writes each answer at once; the command must print its URL first.
    """
    command = [sys.executable, "-m", *(module or ("emulators.arm", "--port", "0", "--auto-create", "--latency", str(latency)))]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the ARM emulator did not start (printed {url!r})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def endpoints(latency: float = 0.0) -> Iterator[Endpoints]:
    """The ARM emulator process and an identity endpoint in this process (idle once a token is cached)."""
    with arm_process(latency) as url, IdentityEmulator() as identity:
        yield Endpoints(url, ArmEmulatorClient(url), identity)


def fixed_token(identity: IdentityEmulator) -> str:
    """One token from the identity endpoint, for the bare loops to send on every request."""
    answer = requests.get(
        identity.endpoint,
        params={"api-version": "2019-08-01", "resource": "https://management.azure.com"},
        headers={"X-IDENTITY-HEADER": identity.header_secret, "Metadata": "true"},
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]
