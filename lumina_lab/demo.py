"""``lumina demo``: a simulated team workload through what Lumina Lab has today.

Today that is the event spine: a seeded, simulated workload of LLM requests
from a small team is published on the bus; live projections (a cost ledger and
a budget watcher) subscribe to it; a deliberately flaky subscriber shows
retries, dead letters and their replay; everything lands in the event store
and the summary is computed back from the store with SQL.  As routing,
memory, policy and the dashboard land, the demo runs through them.

The requests are *simulated* (no model is called); prices come from the
shipped, dated list-price snapshot (``datasets/pricing.json``).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .data import pricing_snapshot
from .events import Event, event
from .lab import Lab

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CostLedger", "DemoBudgetCrossed", "DemoReport", "DemoRequestFinished", "run_demo"]

TEAM = {
    "ada": "search",
    "grace": "search",
    "linus": "agents",
    "margaret": "agents",
    "barbara": "eval",
}
#: model -> (share of traffic, mean latency ms, error rate)
MODELS = {
    "gpt-4.1-mini": (0.45, 900.0, 0.01),
    "gemini-2.5-flash": (0.25, 700.0, 0.02),
    "claude-3-7-sonnet-20250219": (0.20, 2200.0, 0.015),
    "gpt-4.1": (0.10, 2600.0, 0.01),
}
TASKS = ("chat", "code", "summarize", "extract")


@event("demo.request.finished")
class DemoRequestFinished(Event):
    """A simulated LLM request of the demo workload finished."""

    user: str
    project: str
    model: str
    task: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    cost_usd: float
    ok: bool


@event("demo.budget.crossed")
class DemoBudgetCrossed(Event):
    """A project's simulated spend crossed a fraction of its budget."""

    project: str
    threshold: float
    spent_usd: float
    budget_usd: float


class CostLedger:
    """Projection: spend and requests per project, fed live from the bus or replayed from the store."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.requests: dict[str, int] = {}

    def apply(self, ev: Event) -> None:
        if isinstance(ev, DemoRequestFinished):
            self.spent[ev.project] = self.spent.get(ev.project, 0.0) + ev.cost_usd
            self.requests[ev.project] = self.requests.get(ev.project, 0) + 1


@dataclass
class DemoReport:
    """What the demo did and what the store says about it."""

    requests: int
    seconds: float
    events_stored: int
    by_type: pd.DataFrame
    by_model: pd.DataFrame
    ledger: dict[str, float]
    ledger_replayed: dict[str, float]
    budget_alerts: pd.DataFrame
    dead_letters: int
    replayed: int
    store: str
    home: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        def frame(df: pd.DataFrame, title: str) -> Table:
            t = Table(title=title, title_justify="left")
            for col in df.columns:
                t.add_column(str(col), justify="right" if df[col].dtype.kind in "fiu" else "left")
            for row in df.itertuples(index=False):
                t.add_row(*(_fmt(v) for v in row))
            return t

        ledger = Table(title="Cost ledger (live projection vs replayed from the store)", title_justify="left")
        for col in ("project", "live USD", "replayed USD"):
            ledger.add_column(col, justify="left" if col == "project" else "right")
        for proj in sorted(self.ledger):
            ledger.add_row(proj, f"{self.ledger[proj]:.4f}", f"{self.ledger_replayed.get(proj, 0):.4f}")
        head = (
            f"[bold]Lumina Lab demo[/] — {self.requests:,} simulated requests published, handled by 4 "
            f"subscribers and stored in {self.seconds:.2f}s ({self.events_per_s:,.0f} requests/s); "
            f"{self.events_stored:,} events acknowledged by the {self.store} store\n"
            f"home: {self.home}\n"
            f"dead letters: {self.dead_letters} from a flaky subscriber, {self.replayed} replayed after its fix"
        )
        parts: list[Any] = [
            head,
            frame(self.by_type, "Events by type"),
            frame(self.by_model, "Requests by model"),
            ledger,
        ]
        if len(self.budget_alerts):
            parts.append(frame(self.budget_alerts, "Budget alerts"))
        parts.append(
            "Next: [cyan]lumina events tail[/]  ·  [cyan]lumina events query \"type = 'demo.budget.crossed'\"[/]"
            "  ·  [cyan]lumina info[/]"
        )
        return Group(*parts)

    def _repr_html_(self) -> str:
        return (
            f"<b>Lumina Lab demo</b>: {self.requests:,} requests, {self.events_per_s:,.0f} events/s, "
            f"{self.events_stored:,} stored<br>"
            + self.by_type.to_html(index=False)
            + self.by_model.to_html(index=False)
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if v.is_integer() and abs(v) >= 10 else f"{v:,.4g}" if abs(v) < 1 else f"{v:,.2f}"
    return str(v)


def _workload(n: int, seed: int) -> list[DemoRequestFinished]:
    rng = random.Random(seed)
    prices = pricing_snapshot()["models"]
    names, weights = list(MODELS), [m[0] for m in MODELS.values()]
    users = list(TEAM)
    out = []
    for _ in range(n):
        user = rng.choice(users)
        model = rng.choices(names, weights)[0]
        _, mean_ms, err = MODELS[model]
        tin = int(rng.lognormvariate(6.5, 0.8))
        tout = int(rng.lognormvariate(5.3, 0.7))
        ok = rng.random() >= err
        price = prices[model]
        cost = (tin * price["input"] + (tout if ok else 0) * price["output"]) / 1e6
        out.append(
            DemoRequestFinished(
                user=user,
                project=TEAM[user],
                model=model,
                task=rng.choice(TASKS),
                input_tokens=tin,
                output_tokens=tout if ok else 0,
                latency_ms=round(rng.lognormvariate(0, 0.35) * mean_ms, 1),
                cost_usd=round(cost, 8),
                ok=ok,
            )
        )
    return out


def run_demo(
    lab: Lab | None = None, *, requests: int = 20_000, seed: int = 7, budget_usd: float = 2.0, progress: bool = True
) -> DemoReport:
    """Run the demo workload through ``lab`` (a new :class:`Lab` on the configured home if omitted)."""
    from tqdm.auto import tqdm

    own = lab is None
    lab = lab or Lab()
    try:
        ledger = CostLedger()
        lab.bus.subscribe("demo.request.*", ledger.apply, name="demo-ledger")

        crossed: set[tuple[str, float]] = set()
        spent: dict[str, float] = {}

        async def budget_watch(ev: DemoRequestFinished) -> None:
            spent[ev.project] = spent.get(ev.project, 0.0) + ev.cost_usd
            for threshold in (0.5, 0.8, 1.0):
                if spent[ev.project] >= threshold * budget_usd and (ev.project, threshold) not in crossed:
                    crossed.add((ev.project, threshold))
                    await lab.bus.publish(
                        DemoBudgetCrossed(
                            project=ev.project,
                            threshold=threshold,
                            spent_usd=spent[ev.project],
                            budget_usd=budget_usd,
                            trace_id=ev.trace_id,
                        )
                    )

        lab.bus.subscribe("demo.request.finished", budget_watch, name="demo-budget")

        fixed = {"value": False}

        def flaky_exporter(ev: DemoRequestFinished) -> None:
            """Fails on some failed requests until 'fixed', to show retries, dead letters and replay."""
            if not fixed["value"] and not ev.ok and ev.input_tokens % 31 == 0:
                raise ConnectionError(f"exporter unavailable for request {ev.id}")

        lab.bus.subscribe("demo.request.finished", flaky_exporter, name="demo-exporter", retries=2)

        workload = _workload(requests, seed)
        start = time.perf_counter()
        chunk = 2_000
        with tqdm(total=requests, desc="publishing", unit="ev", disable=not progress, leave=False) as bar:
            for i in range(0, requests, chunk):
                part = workload[i : i + chunk]
                lab.bus.publish_many_sync(part)
                bar.update(len(part))
        stored = lab.sync()
        seconds = time.perf_counter() - start

        letters = lab.store.dead_letters()
        if workload:  # this run's letters only (the home may hold older ones)
            letters = letters[letters["event_id"] >= workload[0].id]
        dead = len(letters)
        fixed["value"] = True
        replayed = lab.store.replay_dead_letters(lab.bus, list(letters["id"])) if dead else 0
        lab.sync()

        run_filter = f"id >= '{workload[0].id}'" if workload else None
        by_type = lab.sql(f"SELECT type, count(*) AS events FROM events WHERE {run_filter} GROUP BY type ORDER BY type")
        by_model = lab.sql(
            "SELECT payload->>'$.model' AS model, count(*) AS requests, "
            "round(avg((payload->>'$.ok')::BOOLEAN::INT) * 100, 2) AS ok_pct, "
            "round(quantile_cont((payload->>'$.latency_ms')::DOUBLE, 0.5)) AS p50_ms, "
            "round(quantile_cont((payload->>'$.latency_ms')::DOUBLE, 0.95)) AS p95_ms, "
            "round(sum((payload->>'$.cost_usd')::DOUBLE), 4) AS cost_usd "
            f"FROM events WHERE type = 'demo.request.finished' AND {run_filter} GROUP BY 1 ORDER BY requests DESC"
        )
        alerts = lab.sql(
            "SELECT payload->>'$.project' AS project, (payload->>'$.threshold')::DOUBLE AS threshold, "
            "round((payload->>'$.spent_usd')::DOUBLE, 4) AS spent_usd "
            f"FROM events WHERE type = 'demo.budget.crossed' AND {run_filter} ORDER BY ts, id"
        )
        replay_ledger = lab.store.project(CostLedger(), run_filter, type="demo.request.finished")
        return DemoReport(
            requests=requests,
            seconds=seconds,
            events_stored=stored,
            by_type=by_type,
            by_model=by_model,
            ledger=dict(ledger.spent),
            ledger_replayed=dict(replay_ledger.spent),
            budget_alerts=alerts,
            dead_letters=dead,
            replayed=replayed,
            store=lab.store.kind,
            home=str(lab.settings.home),
        )
    finally:
        for name in ("demo-ledger", "demo-budget", "demo-exporter"):
            for sub in lab.bus.subscriptions:
                if sub.name == name:
                    sub.unsubscribe()
        if own:
            lab.close()
