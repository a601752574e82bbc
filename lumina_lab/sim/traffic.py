"""Workloads replayed from real traffic recorded in the event store."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ValidationError
from .workloads import DEFAULT_TASKS, Task, Workload

__all__ = ["workload_from_store"]

_QUERY = """
WITH routed AS (
    SELECT payload->>'$.request_id' AS request_id, min(ts) AS ts,
           any_value(coalesce(payload->>'$.project', payload->>'$.principal', 'default')) AS tenant
    FROM events WHERE type = 'provider.request.routed' {where} GROUP BY 1
), finished AS (
    SELECT payload->>'$.request_id' AS request_id,
           max((payload->>'$.input_tokens')::INTEGER) AS input_tokens,
           max((payload->>'$.output_tokens')::INTEGER) AS output_tokens
    FROM events WHERE type = 'provider.call.finished' GROUP BY 1
)
SELECT epoch(r.ts) AS t, r.tenant, f.input_tokens, f.output_tokens
FROM routed r LEFT JOIN finished f USING (request_id) ORDER BY r.ts
"""


def workload_from_store(
    store: Any, *, where: str | None = None, default_input_tokens: int = 400, max_tokens: int | None = None
) -> Workload:
    """Recorded requests (``provider.request.routed`` events) as a workload: same arrival times and tenants.

    Input tokens come from each request's ``provider.call.finished`` event when there is one; the
    output cap is ``max_tokens`` or the recorded output size (at least 16).

    Args:
        store: an event store (``lab.store``).
        where: extra SQL condition on the routed events (e.g. ``"ts >= now() - INTERVAL 1 DAY"``).
    """
    frame = store.sql(_QUERY.format(where=f"AND ({where})" if where else ""))
    if frame.empty:
        raise ValidationError(
            "the event store holds no provider.request.routed events" + (f" matching {where!r}" if where else ""),
            hint="route some requests first (lab.ask(...), lumina demo), or widen the filter",
        )
    t = frame["t"].to_numpy(float)
    tenants = list(dict.fromkeys(frame["tenant"].astype(str)))
    code = {name: i for i, name in enumerate(tenants)}
    inputs = frame["input_tokens"].fillna(default_input_tokens).to_numpy(np.int64).astype(np.int32)
    if max_tokens is not None:
        outs = np.full(len(frame), max_tokens, np.int32)
    else:
        outs = np.maximum(16, frame["output_tokens"].fillna(256).to_numpy(np.int64)).astype(np.int32)
    tasks: dict[str, Task] = {"chat": DEFAULT_TASKS["chat"]}
    return Workload(
        t - t[0],
        frame["tenant"].astype(str).map(code).to_numpy(np.int32),
        np.zeros(len(frame), np.int32),
        inputs,
        outs,
        tenants=tenants,
        tasks=tasks,
        name="recorded",
    )
