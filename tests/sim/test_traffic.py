"""Replaying real traffic recorded in the event store."""

from __future__ import annotations

import numpy as np
import pytest

from lumina_lab import Lab
from lumina_lab.errors import ValidationError
from lumina_lab.providers import SimulatedProvider
from lumina_lab.sim.engine import RoutingLab
from lumina_lab.sim.traffic import workload_from_store


def test_recorded_requests_become_a_workload_with_their_times_tenants_and_sizes() -> None:
    with Lab(profile="test") as lab:
        for i in range(30):
            lab.ask("hello " * (10 + i), max_tokens=32, project="search" if i % 3 else "agents")
        lab.sync()
        wl = workload_from_store(lab.store)
        recorded = lab.sql(
            "SELECT (payload->>'$.input_tokens')::INT AS n FROM events WHERE type = 'provider.call.finished' "
            "ORDER BY ts"
        )["n"]
    assert len(wl) == 30
    assert wl.arrival_s[0] == 0 and np.all(np.diff(wl.arrival_s) >= 0)
    assert sorted(wl.tenants) == ["agents", "search"]
    assert sorted(wl.input_tokens) == sorted(recorded)
    assert (wl.max_tokens <= 32).all()
    result = RoutingLab([SimulatedProvider("gpt-4.1-mini")]).run(wl, "cheapest")
    assert result.summary()["success_rate"] == 1.0


def test_an_empty_store_is_a_clear_error() -> None:
    with Lab(profile="test") as lab, pytest.raises(ValidationError, match=r"no provider\.request\.routed"):
        workload_from_store(lab.store)
