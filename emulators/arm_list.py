"""Runs - List of the ARM emulator: `$filter`, `$top` and `nextLink` pages carrying a `$skipToken`.

Runs are listed newest first. The skip token is a keyset cursor (the last run's createTime and runId), not an
offset: a client that archives the runs of page 1 (so they leave an `IsArchiveEnabled eq false` filter) still
gets every other run on page 2. `$top` caps the whole listing; each page holds at most the emulator's page size.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from emulators.arm_routes import API_VERSION, RunsRoute
from emulators.errors import ArmError
from emulators.run_filter import FILTER_ERROR_CODE, InvalidFilter, filter_view, parse_run_filter
from emulators.state import ArmState, ListCursor, list_order

__all__ = ["DEFAULT_PAGE_SIZE", "decode_skip_token", "encode_skip_token", "list_page"]

DEFAULT_PAGE_SIZE = 100
_MAX_TOP = 2**31 - 1  # `$top` is an int32 in the swagger


def _top(raw: str | None) -> int | None:
    """`$top` as a positive int32, or None when absent."""
    if raw is None:
        return None
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= _MAX_TOP:
        message = f"The value '{raw}' of $top is invalid: it must be an integer from 1 to {_MAX_TOP}."
        raise ArmError(400, "InvalidParameter", message)
    return int(text)


def encode_skip_token(cursor: ListCursor) -> str:
    """An opaque token for the cursor (base64url of "createTime runId": not JSON, so it never looks like a JWT)."""
    text = f"{cursor[0].isoformat()} {cursor[1]}"
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_skip_token(token: str) -> ListCursor:
    """The cursor of a token this emulator made; 400 for anything else."""
    try:
        moment_text, _, run_id = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8").partition(" ")
        moment = datetime.fromisoformat(moment_text)
        if moment.tzinfo is None or not run_id:
            raise ValueError("incomplete")
    except (binascii.Error, ValueError):
        raise ArmError(400, "InvalidSkipToken", "The $skipToken is invalid.") from None
    return moment, run_id


def list_page(state: ArmState, route: RunsRoute, query: dict[str, list[str]], *, page_size: int,
              origin: str) -> dict[str, Any]:
    """One RunListResult page; `nextLink` (on `origin`) when more runs match."""
    raw_filter = (query.get("$filter") or [""])[0]
    try:
        predicate = parse_run_filter(raw_filter)
    except InvalidFilter as exc:
        raise ArmError(400, FILTER_ERROR_CODE, str(exc)) from None
    top = _top((query.get("$top") or [None])[0])
    token = (query.get("$skipToken") or [None])[0]
    after = decode_skip_token(token) if token else None
    limit = page_size if top is None else min(page_size, top)
    runs, more = state.list_runs((route.subscription_id, route.resource_group, route.registry),
                                 lambda run: predicate(filter_view(run)), after, limit)
    body: dict[str, Any] = {"value": runs}
    left = None if top is None else top - len(runs)
    if runs and more and left != 0:
        last = runs[-1]
        params: dict[str, str] = {"api-version": API_VERSION}
        if raw_filter:
            params["$filter"] = raw_filter
        if left is not None:
            params["$top"] = str(left)
        params["$skipToken"] = encode_skip_token(list_order(last))
        body["nextLink"] = (
            f"{origin.rstrip('/')}/subscriptions/{route.subscription_id}/resourceGroups/{route.resource_group}"
            f"/providers/Microsoft.ContainerRegistry/registries/{route.registry}/runs?"
            + urlencode(params, quote_via=quote, safe="$")
        )
    return body
