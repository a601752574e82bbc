"""Alert rules evaluated on the metrics stream; firing and clearing are events (``alert.fired``/``alert.resolved``).

>>> rule = AlertRule("errors", "error_rate > 0.2 for 10s")
>>> rule.metric, rule.op, rule.threshold, rule.for_s
('error_rate', '>', 0.2, 10.0)
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..clock import WALL, Clock
from ..errors import ConfigError
from .events import AlertFired, AlertResolved

__all__ = ["AlertEvaluator", "AlertRule", "rules_from_config"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_EXPR = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.:-]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
    r"(?:\s+for\s+(?P<for>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?)?\s*$"
)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass
class AlertRule:
    """A condition on the metrics snapshot that fires after holding for ``for_s`` seconds.

    Args:
        name: unique name (label of ``lumina_alerts_firing``).
        expr: ``"<metric> <op> <number> [for <duration>]"`` over the keys of
            :meth:`Metrics.snapshot` (``error_rate > 0.2 for 10s``, ``budget_remaining_usd < 5``,
            ``providers.sim-a.error_rate >= 0.5``), or a callable ``snapshot -> bool``.
        for_s: how long the condition must hold (overrides the ``for`` part of ``expr``).
        severity: free text carried on the events (``warning``, ``critical`` ...).
        description: carried on ``alert.fired``.
    """

    name: str
    expr: str | Callable[[Mapping[str, Any]], bool]
    for_s: float | None = None
    severity: str = "warning"
    description: str = ""
    metric: str | None = field(default=None, init=False)
    op: str | None = field(default=None, init=False)
    threshold: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"alert rule name {self.name!r} must be a non-empty string", key="alerts.name")
        if callable(self.expr):
            self.for_s = float(self.for_s or 0.0)
            return
        if not isinstance(self.expr, str):
            raise ConfigError(
                f"alert {self.name!r}: expr {self.expr!r} is neither text nor a callable", key="alerts.expr"
            )
        m = _EXPR.match(self.expr)
        if m is None:
            raise ConfigError(
                f"alert {self.name!r}: cannot read expr {self.expr!r}",
                key="alerts.expr",
                value=self.expr,
                hint="write '<metric> <op> <number> [for <duration>]', e.g. 'error_rate > 0.2 for 10s'; "
                "metrics: request_rate, error_rate, latency_avg_s, ttft_avg_s, budget_remaining_usd, breakers_open, ...",
            )
        self.metric, self.op, self.threshold = m["metric"], m["op"], float(m["value"])
        if self.for_s is None:
            self.for_s = float(m["for"]) * _UNITS[m["unit"]] if m["for"] else 0.0
        if self.for_s < 0:
            raise ConfigError(f"alert {self.name!r}: for_s={self.for_s} must be >= 0", key="alerts.for_s")

    @property
    def text(self) -> str:
        return self.expr if isinstance(self.expr, str) else getattr(self.expr, "__name__", "callable")

    def value(self, snapshot: Mapping[str, Any]) -> float | None:
        """The metric's current value (None when the snapshot has none)."""
        if self.metric is None:
            return None
        # a top-level key, or a dotted path into nested dicts (providers.<id>.error_rate; ids may contain dots)
        node = snapshot[self.metric] if self.metric in snapshot else _lookup(snapshot, self.metric.split("."))
        if isinstance(node, bool) or not isinstance(node, (int, float)):
            return None
        return float(node)

    def check(self, snapshot: Mapping[str, Any]) -> tuple[bool, float | None]:
        """Whether the condition holds now, and the value it looked at."""
        if callable(self.expr):
            return bool(self.expr(snapshot)), None
        v = self.value(snapshot)
        if v is None or math.isnan(v):
            return False, v
        return _OPS[self.op](v, self.threshold), v  # type: ignore[index]


def _lookup(node: Any, parts: list[str]) -> Any:
    if not parts:
        return node
    if not isinstance(node, Mapping):
        return None
    for i in range(len(parts), 0, -1):  # longest key first: provider ids may contain dots
        key = ".".join(parts[:i])
        if key in node:
            found = _lookup(node[key], parts[i:])
            if found is not None:
                return found
    return None


def rules_from_config(entries: Iterable[Mapping[str, Any] | AlertRule]) -> list[AlertRule]:
    """Rules from settings (``[[observability.alerts]]`` tables: name, expr, for_s, severity, description)."""
    rules = []
    for i, entry in enumerate(entries):
        if isinstance(entry, AlertRule):
            rules.append(entry)
            continue
        try:
            rules.append(AlertRule(**dict(entry)))
        except TypeError as exc:
            raise ConfigError(
                f"observability.alerts[{i}]: {exc}",
                key=f"observability.alerts[{i}]",
                hint="each alert is a table with name, expr and optionally for_s, severity, description",
            ) from None
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"alert names must be unique; repeated: {dupes}", key="observability.alerts")
    return rules


@dataclass
class _State:
    pending_since: float | None = None
    fired_at: float | None = None


class AlertEvaluator:
    """Evaluates rules against :meth:`Metrics.snapshot` and publishes ``alert.fired``/``alert.resolved``.

    :meth:`evaluate` is called after each batch of events the metrics fold (the metrics stream) and
    on a timer, so a condition that holds while nothing happens (a budget below its floor) still fires.
    """

    def __init__(
        self, rules: Iterable[AlertRule], metrics: Any, *, bus: Any = None, clock: Clock | None = None
    ) -> None:
        self.rules = list(rules)
        self.metrics = metrics
        self.bus = bus
        self.clock = clock or metrics.clock or WALL
        self._state = {r.name: _State() for r in self.rules}
        self._lock = threading.Lock()
        self.history: list[Any] = []

    def add(self, rule: AlertRule) -> None:
        with self._lock:
            if rule.name in self._state:
                raise ConfigError(f"an alert named {rule.name!r} exists already", key="alerts.name")
            self.rules.append(rule)
            self._state[rule.name] = _State()

    @property
    def firing(self) -> list[str]:
        return [name for name, s in self._state.items() if s.fired_at is not None]

    def step(self, now: float | None = None) -> list[AlertFired | AlertResolved]:
        """Evaluate every rule at ``now``; return the events due (not published)."""
        if not self.rules:
            return []
        now = self.clock.now() if now is None else now
        snap = self.metrics.snapshot(now)
        out: list[AlertFired | AlertResolved] = []
        with self._lock:
            for rule in self.rules:
                state = self._state[rule.name]
                try:
                    holds, value = rule.check(snap)
                except Exception as exc:  # a user callable failing must not stop the others
                    holds, value = False, None
                    import logging

                    logging.getLogger(__name__).warning("alert %r failed to evaluate: %s", rule.name, exc)
                if holds:
                    if state.pending_since is None:
                        state.pending_since = now
                    if state.fired_at is None and now - state.pending_since >= (rule.for_s or 0.0):
                        state.fired_at = now
                        out.append(
                            AlertFired(
                                rule=rule.name,
                                expr=rule.text,
                                severity=rule.severity,
                                value=value,
                                threshold=rule.threshold,
                                pending_s=now - state.pending_since,
                                description=rule.description,
                            )
                        )
                else:
                    state.pending_since = None
                    if state.fired_at is not None:
                        out.append(
                            AlertResolved(
                                rule=rule.name,
                                expr=rule.text,
                                severity=rule.severity,
                                value=value,
                                fired_s=now - state.fired_at,
                            )
                        )
                        state.fired_at = None
        self.history.extend(out)
        if out:  # firing state visible at once, with or without a bus
            with self.metrics.lock:
                for ev in out:
                    self.metrics.alerts[ev.rule] = 1 if isinstance(ev, AlertFired) else 0
        return out

    def evaluate(self, now: float | None = None) -> list[AlertFired | AlertResolved]:
        """Evaluate and publish the resulting events from synchronous code (any thread but the bus loop's)."""
        events = self.step(now)
        if events and self.bus is not None:
            self.bus.publish_many_sync(events)
        return events

    async def aevaluate(self, now: float | None = None) -> list[AlertFired | AlertResolved]:
        """Evaluate and publish from async code."""
        events = self.step(now)
        if events and self.bus is not None:
            for ev in events:
                await self.bus.publish(ev)
        return events
