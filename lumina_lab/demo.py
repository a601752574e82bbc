"""``lumina demo``: a simulated team workload through what Lumina Lab has today.

A seeded workload of LLM requests from a small team (users in three
projects, chat and code tasks) goes through the real router of a
:class:`~lumina_lab.lab.Lab`: capability filtering, the configured strategy,
per-project budgets with soft warnings and hard stops, retries, fallbacks and
circuit breakers.  Midway one provider suffers an outage and comes back, so
its breaker opens and recovers.  A deliberately flaky subscriber shows dead
letters and their replay.  The shipped team notes go into ``lab.memory``, and a
team policy (Cedar) keeps the eval project off the premium model.  Every step
is an event; the summary is computed back from the event store with SQL.
``lumina demo --serve`` shows it all on the live dashboard while it runs.

The providers are *simulated* stand-ins (no model is called); their prices are
the list prices of the models they stand for, from the shipped, dated snapshot.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .lab import Lab

if TYPE_CHECKING:
    import pandas as pd

    from .providers import ChatRequest

__all__ = ["TEAM", "DemoReport", "run_demo"]

TEAM = {"ada": "search", "grace": "search", "linus": "agents", "margaret": "agents", "barbara": "eval"}
TASKS = ("chat", "code", "summarize", "extract")
TOPICS = ("retrieval", "a flaky test", "the billing service", "a SQL query", "the agent's memory", "a PDF table")


@dataclass
class DemoReport:
    """What the demo did and what the event store says about it."""

    requests: int
    seconds: float
    answered: int
    budget_stopped: int
    failed: int
    events_stored: int
    by_provider: pd.DataFrame
    by_project: pd.DataFrame
    breaker_changes: pd.DataFrame
    budget_warnings: pd.DataFrame
    dead_letters: int
    replayed: int
    outage: str
    strategy: str
    store: str
    home: str
    memory: pd.DataFrame | None = None
    policy: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
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

        head = (
            f"[bold]Lumina Lab demo[/] — {self.requests:,} simulated requests from {len(TEAM)} people routed "
            f"({self.strategy}) in {self.seconds:.2f}s ({self.requests_per_s:,.0f} requests/s): "
            f"{self.answered:,} answered, {self.budget_stopped:,} stopped by budgets before spending, "
            f"{self.failed:,} failed after fallbacks\n"
            f"outage: {self.outage}\n"
            f"{self.events_stored:,} events acknowledged by the {self.store} store in {self.home}; "
            f"dead letters: {self.dead_letters} from a flaky exporter, {self.replayed} replayed after its fix"
        )
        parts: list[Any] = [head, frame(self.by_provider, "Calls by provider (from provider.call.* events)")]
        parts.append(frame(self.by_project, "Spend by project (cost ledger projection)"))
        if len(self.breaker_changes):
            moves = self.breaker_changes
            title = "Circuit breaker transitions"
            if len(moves) > 8:
                title += f" (first 3 and last 3 of {len(moves)})"
                moves = moves.iloc[[0, 1, 2, -3, -2, -1]]
            parts.append(frame(moves, title))
        if len(self.budget_warnings):
            parts.append(frame(self.budget_warnings, "Budget warnings"))
        if self.memory is not None and len(self.memory):
            parts.append(frame(self.memory, "Team memory: 30 shipped notes in lab.memory (DuckDB), hybrid search"))
        if self.policy is not None and len(self.policy):
            parts.append(frame(self.policy, "Team policy (Cedar): a code task needing code >= 0.9, routed per person"))
        parts.append(
            "Next: [cyan]lumina demo --serve[/] (watch it live)  ·  [cyan]lumina events tail[/]"
            "  ·  [cyan]lumina events query \"type = 'provider.breaker.changed'\"[/]"
            "  ·  [cyan]lumina ask 'write a parser' --needs code --route-only[/]  ·  [cyan]lumina info[/]"
            "  ·  [cyan]lab.memory.collection('team_notes').search('...', mode='hybrid')[/]"
        )
        return Group(*parts)

    def _repr_html_(self) -> str:
        return (
            f"<b>Lumina Lab demo</b>: {self.requests:,} requests, {self.answered:,} answered, "
            f"{self.budget_stopped:,} budget-stopped, {self.failed:,} failed<br>"
            + self.by_provider.to_html(index=False)
            + self.by_project.to_html(index=False)
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return ""
        return f"{v:,.0f}" if v.is_integer() and abs(v) >= 10 else f"{v:,.4g}" if abs(v) < 1 else f"{v:,.2f}"
    return str(v)


def _workload(n: int, seed: int) -> list[ChatRequest]:
    from .providers import ChatRequest

    rng = random.Random(seed)
    users = list(TEAM)
    out = []
    for _ in range(n):
        user = rng.choice(users)
        task = rng.choices(TASKS, (0.45, 0.25, 0.2, 0.1))[0]
        words = int(rng.lognormvariate(4.0, 0.7))
        prompt = f"[{task}] help with {rng.choice(TOPICS)}: " + "context " * words
        out.append(
            ChatRequest(
                prompt,
                needs=frozenset({"code"}) if task == "code" else frozenset(),
                max_tokens=rng.choice((128, 256, 512)),
                principal=user,
                project=TEAM[user],
                task=task,
            )
        )
    return out


async def _drive(
    lab: Lab,
    requests: list[ChatRequest],
    concurrency: int,
    bar: Any,
    outage: tuple[str, int, int],
    rate: float | None = None,
):
    from .errors import BudgetExceeded, LuminaError

    counts = {"answered": 0, "budget": 0, "failed": 0}
    victim, start, stop = outage
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(i: int, req: ChatRequest) -> None:
        if rate:  # paced (a watched run): request i is due at t0 + i / rate
            await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
        async with sem:  # FIFO: request i starts after requests 0..i-1
            if i == start:
                lab.providers[victim].provider.down = True  # type: ignore[attr-defined]
            elif i == stop:
                lab.providers[victim].provider.down = False  # type: ignore[attr-defined]
            try:
                await lab.router.ainvoke(req)
                counts["answered"] += 1
            except BudgetExceeded:
                counts["budget"] += 1
            except LuminaError:
                counts["failed"] += 1
            bar.update(1)

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    return counts


def run_demo(
    lab: Lab | None = None,
    *,
    requests: int = 20_000,
    seed: int = 7,
    budget_usd: float = 0.6,
    concurrency: int = 256,
    progress: bool = True,
    rate: float | None = None,
) -> DemoReport:
    """Run the demo workload through ``lab`` (a new :class:`Lab` on the configured home if omitted).

    Args:
        requests: simulated requests.
        seed: makes the workload reproducible.
        budget_usd: hard budget per project per day (a soft warning at 80%).
        concurrency: requests in flight at once.
        rate: requests started per second (default: as fast as they go), e.g. to watch a served dashboard.
    """
    from tqdm.auto import tqdm

    from .errors import ValidationError
    from .providers import Budget, CostLedger, SimulatedProvider

    if requests < 1:
        raise ValidationError(f"requests={requests} must be at least 1", input=requests)
    if rate is not None and rate <= 0:
        raise ValidationError(f"rate={rate} must be positive", input=rate, hint="requests per second, e.g. rate=200")
    own = lab is None
    lab = lab or Lab()
    subs = []
    try:
        for project in sorted(set(TEAM.values())):
            budget = Budget(budget_usd, scope="project", key=project, period="day")
            if budget not in lab.budgets.budgets:
                lab.budgets.add(budget)
        from .providers import ChatRequest

        # the outage hits the provider the strategy prefers, so fallbacks and the breaker show
        sims = {s.id for s in lab.providers if isinstance(s.provider, SimulatedProvider)}
        ranked = [p for p in lab.route(ChatRequest("hello"), max_tokens=256).ranked if p in sims]
        victim = ranked[0] if ranked else sorted(sims)[0]
        breaker = lab.providers[victim].breaker
        saved_open_s, breaker.open_s = breaker.open_s, 0.2  # recover within the demo
        outage = (victim, requests // 3, 2 * requests // 3)
        ledger = CostLedger()
        subs.append(lab.bus.subscribe("provider.call.finished", ledger.apply, name="demo-ledger"))
        fixed = {"value": False}

        def flaky_exporter(ev: Any) -> None:
            """Fails on some events until 'fixed', to show retries, dead letters and replay."""
            if not fixed["value"] and ev.output_tokens % 97 == 0:
                raise ConnectionError(f"exporter unavailable for request {ev.request_id}")

        subs.append(lab.bus.subscribe("provider.call.finished", flaky_exporter, name="demo-exporter", retries=1))
        workload = _workload(requests, seed)
        first_id = _first_event_id()
        loop = lab.bus._ensure_loop_sync()
        start = time.perf_counter()
        with tqdm(total=requests, desc="routing", unit="req", disable=not progress, leave=False) as bar:
            counts = asyncio.run_coroutine_threadsafe(_drive(lab, workload, concurrency, bar, outage, rate), loop).result()
        seconds = time.perf_counter() - start
        if breaker.state != "closed":  # the run ended before the breaker's next half-open probe
            time.sleep(max(0.0, breaker.open_s - (lab.router.clock.now() - breaker.opened_at)) + 0.01)
            recovery = ChatRequest("recovery check", max_tokens=16, project="ops")
            asyncio.run_coroutine_threadsafe(lab.router.ainvoke(recovery), loop).result()
        stored = lab.sync()

        letters = lab.store.dead_letters()
        letters = letters[letters["event_id"] >= first_id]
        dead = len(letters)
        fixed["value"] = True
        replayed = lab.store.replay_dead_letters(lab.bus, list(letters["id"])) if dead else 0
        lab.sync()

        run = f"id >= '{first_id}'"
        by_provider = lab.sql(
            "WITH calls AS (SELECT payload->>'$.provider' AS provider, type, "
            "(payload->>'$.latency_s')::DOUBLE * 1000 AS ms, (payload->>'$.cost_usd')::DOUBLE AS usd "
            f"FROM events WHERE {run} AND type IN ('provider.call.finished', 'provider.call.failed')) "
            "SELECT provider, count(*) FILTER (WHERE type = 'provider.call.finished') AS answered, "
            "count(*) FILTER (WHERE type = 'provider.call.failed') AS failed_calls, "
            "round(quantile_cont(ms, 0.5) FILTER (WHERE type = 'provider.call.finished')) AS p50_ms, "
            "round(quantile_cont(ms, 0.95) FILTER (WHERE type = 'provider.call.finished')) AS p95_ms, "
            "round(sum(usd), 4) AS cost_usd FROM calls GROUP BY provider ORDER BY answered DESC"
        )
        by_project = ledger.by("project")
        memory = _memory_phase(lab)
        policy = _policy_phase(lab)
        transitions = lab.sql(
            "SELECT strftime(ts, '%H:%M:%S.%g') AS at, payload->>'$.provider' AS provider, "
            "payload->>'$.old' AS old, payload->>'$.new' AS new "
            f"FROM events WHERE {run} AND type = 'provider.breaker.changed' ORDER BY ts, id"
        )
        warnings = lab.sql(
            "SELECT payload->>'$.budget' AS budget, round((payload->>'$.spent_usd')::DOUBLE, 4) AS spent_usd, "
            "(payload->>'$.limit_usd')::DOUBLE AS limit_usd "
            f"FROM events WHERE {run} AND type = 'budget.warning' ORDER BY ts, id"
        )
        return DemoReport(
            requests=requests,
            seconds=seconds,
            answered=counts["answered"],
            budget_stopped=counts["budget"],
            failed=counts["failed"],
            events_stored=stored,
            by_provider=by_provider,
            by_project=by_project,
            breaker_changes=transitions,
            budget_warnings=warnings,
            dead_letters=dead,
            replayed=replayed,
            outage=f"{victim} down for requests {outage[1]:,} to {outage[2]:,}",
            strategy=lab.router.strategy.name,
            store=lab.store.kind,
            home=str(lab.settings.home),
            memory=memory,
            policy=policy,
        )
    finally:
        if "saved_open_s" in locals():
            breaker.open_s = saved_open_s
        for sub in subs:
            sub.unsubscribe()
        if own:
            lab.close()


QUESTIONS = (
    ("Why did the agents project run out of money?", "hybrid", None),
    ("What happens when two notebook kernels open the vector store?", "hybrid", None),
    ("provider outage", "keyword", {"kind": "incident"}),
)


def _memory_phase(lab: Lab) -> pd.DataFrame:
    """Put the shipped team notes into ``lab.memory`` and ask it three questions (vector, keyword, hybrid)."""
    import pandas as pd

    from .data import team_notes

    notes = team_notes()
    docs = lab.memory.collection("team_notes")
    docs.add(
        [n["text"] for n in notes],
        [{"team": n["team"], "kind": n["kind"], "date": n["date"]} for n in notes],
        ids=[n["id"] for n in notes],
        progress=False,
    )
    docs.keyword_index()  # build BM25 once, so the times below are per query
    rows = []
    for question, mode, where in QUESTIONS:
        res = docs.search(question, k=3, mode=mode, where=where)
        top = res[0] if len(res) else None
        rows.append(
            {
                "question": question,
                "mode": mode + (f" where {where}" if where else ""),
                "top note": f"{top.id} ({top.metadata.get('team')}, {top.metadata.get('date')})" if top else "",
                "text": (top.text[:70] + "…") if top and len(top.text) > 70 else (top.text if top else ""),
                "ms": round(res.ms, 2),
            }
        )
    return pd.DataFrame(rows)


TEAM_POLICY = """
@id("team-uses-providers")
permit(principal, action == Action::"use_provider", resource);

@id("eval-stays-off-premium")
forbid(principal, action == Action::"use_provider", resource)
when { context.project == "eval" && resource.output_per_m.greaterThan(decimal("10.0")) };
"""


def _policy_phase(lab: Lab) -> pd.DataFrame:
    """Route one code task per person under :data:`TEAM_POLICY` (a throwaway policy store, so the user's own
    policies are untouched); the decisions are ``policy.*`` events on the lab's bus."""
    import tempfile

    import pandas as pd

    from .policy import PolicyLab
    from .providers import ChatRequest

    saved = lab.router.policy
    with tempfile.TemporaryDirectory(prefix="lumina-demo-policy-") as tmp:
        policies = PolicyLab(path=tmp, bus=lab.bus, unknown="evaluate")
        policies.publish(TEAM_POLICY, message="demo: the eval project stays off premium models")
        lab.router.policy = policies.router_policy(lab.providers)
        try:
            rows = []
            for person, project in TEAM.items():
                request = ChatRequest(
                    "[code] write a parser for the billing export",
                    needs={"code": 0.9},
                    max_tokens=256,
                    principal=person,
                    project=project,
                    task="code",
                )
                decision = lab.route(request)
                denied = [p for p, why in decision.excluded.items() if "forbidden by" in why]
                rows.append(
                    {
                        "person": person,
                        "project": project,
                        "routed to": decision.ranked[0] if decision.ranked else "(none)",
                        "candidates": len(decision.ranked),
                        "denied by policy": ", ".join(denied),
                    }
                )
        finally:
            lab.router.policy = saved
    return pd.DataFrame(rows)


def _first_event_id() -> str:
    from .events.ids import new_id

    return new_id()
