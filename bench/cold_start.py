"""Cold start: what importing `function_app` costs next to importing its four runtime packages alone.

Each measurement is a fresh `python -X importtime` process; the time is the sum of the cumulative
times of the imports the statement itself started (the interpreter's own start-up is left out).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

from bench.servers import ROOT

__all__ = ["APP", "DEPS", "ColdStart", "ImportProfile", "compare", "profile_import"]

APP = ("function_app",)
DEPS = ("azure.functions", "azure.identity", "azure.servicebus", "requests")
_MARK = "bench-import-start"


@dataclass(frozen=True)
class ImportProfile:
    """One fresh interpreter's imports: total ms, and every module with its self time in µs."""

    total_ms: float
    modules: dict[str, int]


def profile_import(modules: tuple[str, ...]) -> ImportProfile:
    """Import `modules` in a fresh interpreter under -X importtime."""
    statement = f"import sys; sys.stderr.write('{_MARK}\\n'); sys.stderr.flush(); import {', '.join(modules)}"
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True,
    )
    lines = completed.stderr.split(_MARK + "\n", 1)[1].splitlines()
    total_us, own = 0, {}
    for line in lines:
        if not line.startswith("import time:"):
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        own[name.strip()] = int(self_us)
        if depth == 0:
            total_us += int(cumulative_us)
    return ImportProfile(total_us / 1000, own)


@dataclass(frozen=True)
class ColdStart:
    """Median import times, and what function_app imports that its dependencies do not."""

    function_app_ms: float
    deps_ms: float
    extra_modules: dict[str, int]
    """Modules imported by function_app beyond the dependencies' own, with their self time (µs)."""


def compare(runs: int) -> ColdStart:
    """`runs` fresh imports of each, alternating, after one unmeasured pair (bytecode caches written)."""
    profile_import(APP), profile_import(DEPS)
    app_profiles, deps_profiles = [], []
    for _ in range(runs):
        app_profiles.append(profile_import(APP))
        deps_profiles.append(profile_import(DEPS))
    deps_modules = set().union(*(p.modules for p in deps_profiles))
    last = app_profiles[-1].modules
    extra = {name: us for name, us in last.items() if name not in deps_modules}
    return ColdStart(
        statistics.median(p.total_ms for p in app_profiles),
        statistics.median(p.total_ms for p in deps_profiles),
        dict(sorted(extra.items(), key=lambda item: -item[1])),
    )
