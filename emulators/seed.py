"""Seeded registries: N runs with a realistic spread, the same for the same seed and anchor time.

Runs spread over 40 days before `now`, newest the busiest; tasks are builds, releases, nightly timer runs
and tests, plus quick runs (`az acr build` / `az acr run`) with no task. Most succeed; unfinished runs are the
most recent ones. Builds that succeeded pushed one or two images (`repo:tag` and `repo@sha256:…`).
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["SEED_DAYS", "seeded_runs"]

SEED_DAYS = 40
_RUN_RESOURCE_TYPE = "Microsoft.ContainerRegistry/registries/runs"
# (task, run type, repository, weight); a None task is a quick run.
_TASKS: tuple[tuple[str | None, str, str, int], ...] = (
    ("build-api", "AutoBuild", "services/api", 30),
    ("build-web", "AutoBuild", "services/web", 20),
    ("release", "AutoBuild", "release/app", 10),
    ("nightly", "AutoRun", "", 8),
    ("base-image-update", "AutoBuild", "base/python", 5),
    ("integration-tests", "AutoRun", "", 12),
    (None, "QuickBuild", "scratch/tool", 10),
    (None, "QuickRun", "", 5),
)
_FINISHED = (("Succeeded", 78), ("Failed", 12), ("Canceled", 4), ("Error", 3), ("Timeout", 3))
_UNFINISHED = ("Queued", "Started", "Running")


def _stamp(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as ARM writes times."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seeded_runs(subscription_id: str, resource_group: str, registry: str, count: int, *, seed: int = 0,
                now: datetime | None = None, archived_share: float = 0.1) -> list[dict[str, Any]]:
    """`count` Run bodies of one registry, deterministic from (seed, now); run ids are unique in the registry."""
    if count < 0:
        raise ValueError("count must be >= 0")
    anchor = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    rng = random.Random(f"{seed}:{registry.lower()}")
    login_server = f"{registry.lower()}.azurecr.io"
    prefix = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(2))
    weights = [weight for *_, weight in _TASKS]
    base = (f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
            f"/providers/Microsoft.ContainerRegistry/registries/{registry}/runs/")
    runs: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        task, run_type, repository, _ = rng.choices(_TASKS, weights)[0]
        # Age skewed toward the present: a busy registry, most runs recent.
        age = timedelta(days=SEED_DAYS * rng.random() ** 1.5, milliseconds=rng.randrange(1000))
        created = anchor - age
        finished = age > timedelta(minutes=30) or rng.random() < 0.9
        status = rng.choices([name for name, _ in _FINISHED], [w for _, w in _FINISHED])[0] if finished \
            else rng.choice(_UNFINISHED)
        run_id = f"{prefix}{number:x}"
        properties: dict[str, Any] = {
            "runId": run_id,
            "status": status,
            "runType": run_type,
            "createTime": _stamp(created),
            "provisioningState": "Succeeded",
            "isArchiveEnabled": finished and rng.random() < archived_share,
            "platform": {"os": "Linux", "architecture": rng.choice(("amd64", "amd64", "amd64", "arm"))},
            "agentConfiguration": {"cpu": 2},
        }
        if task is not None:
            properties["task"] = task
        if status != "Queued":
            properties["startTime"] = _stamp(created + timedelta(seconds=rng.randrange(1, 90)))
        last = created
        if finished:
            last = created + timedelta(seconds=rng.randrange(30, 1800))
            properties["finishTime"] = _stamp(last)
        properties["lastUpdatedTime"] = _stamp(last)
        if task == "nightly":
            day = created.replace(hour=2, minute=0, second=0, microsecond=0)
            properties["timerTrigger"] = {"timerTriggerName": "nightly-0200", "scheduleOccurrence": _stamp(day)}
        elif run_type == "AutoBuild":
            commit = hashlib.sha1(f"{seed}:{registry}:{number}".encode()).hexdigest()
            properties["sourceTrigger"] = {"id": f"{task}-commit", "eventType": "commit", "commitId": commit,
                                           "repositoryUrl": "https://github.com/contoso/app", "branchName": "main",
                                           "providerType": "GitHub"}
        if repository and status == "Succeeded" and run_type.endswith("Build"):
            properties["outputImages"] = _images(rng, login_server, repository, run_id, number)
        elif status == "Failed" and rng.random() < 0.5:
            properties["runErrorMessage"] = "failed to run step ID: build: exit status 1"
        runs.append({"id": base + run_id, "name": run_id, "type": _RUN_RESOURCE_TYPE, "properties": properties})
    return runs


def _images(rng: random.Random, login_server: str, repository: str, run_id: str, number: int) -> list[dict[str, str]]:
    """One image tagged with the run id, sometimes a second tag (a version or latest) of the same manifest."""
    digest = "sha256:" + hashlib.sha256(f"{login_server}/{repository}:{run_id}:{rng.random()}".encode()).hexdigest()
    images = [{"registry": login_server, "repository": repository, "tag": run_id, "digest": digest}]
    if rng.random() < 0.4:
        tag = f"v1.{number // 10}.{number % 10}" if repository.startswith("release/") else "latest"
        images.append({"registry": login_server, "repository": repository, "tag": tag, "digest": digest})
    return images
