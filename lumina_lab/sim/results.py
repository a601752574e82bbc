"""Results of a routing-lab replay: :class:`SimResult`, per-request rows (:data:`COLUMNS`), summaries, plots.

Apart from the engine (:mod:`lumina_lab.sim.engine`) because it is pandas and plots, not the hot path:
a compiled build compiles the engine and leaves this interpreted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from ..providers.router import Router

__all__ = ["COLUMNS", "SQL_TYPES", "SimResult"]

COLUMNS = (
    "request",
    "arrival_s",
    "end_s",
    "latency_s",
    "ttft_s",
    "ok",
    "provider",
    "attempts",
    "tried",
    "error",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "quality_ok",
    "tenant",
    "task",
    "hedged",  # a hedge was launched and one of the two hedged calls answered
    "stream",  # streamed (Router.astream semantics)
    "failovers",  # streams: failed stream calls (the answer went on elsewhere); 0 otherwise
    "steps",  # answers paid for: 1 for an answered request, more when a cascade escalated; 0 if unanswered
)

#: DuckDB types of :data:`COLUMNS` (:meth:`SimResult.to_duckdb`), then the two columns naming the run.
SQL_TYPES: dict[str, str] = {
    "request": "BIGINT",
    "arrival_s": "DOUBLE",
    "end_s": "DOUBLE",
    "latency_s": "DOUBLE",
    "ttft_s": "DOUBLE",
    "ok": "BOOLEAN",
    "provider": "VARCHAR",
    "attempts": "INTEGER",
    "tried": "INTEGER",
    "error": "VARCHAR",
    "cost_usd": "DOUBLE",
    "input_tokens": "INTEGER",
    "output_tokens": "INTEGER",
    "quality_ok": "BOOLEAN",
    "tenant": "VARCHAR",
    "task": "VARCHAR",
    "hedged": "BOOLEAN",
    "stream": "BOOLEAN",
    "failovers": "INTEGER",
    "steps": "INTEGER",
    "strategy": "VARCHAR",
    "workload": "VARCHAR",
}
_TABLE_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class SimResult:
    """Per-request results of one replay, as a DataFrame (see :data:`COLUMNS`), with summaries and plots.

    ``router`` is the router after the replay (breakers' ``transitions``, ``router.budgets.status()``,
    the strategy's learned state), or None.
    """

    def __init__(
        self,
        rows: list[tuple[Any, ...]],
        *,
        strategy: str,
        workload: str,
        wall_s: float,
        slo_s: float,
        router: Router | None = None,
    ):
        import pandas as pd

        self.frame: pd.DataFrame = pd.DataFrame.from_records(rows, columns=COLUMNS)
        self.strategy = strategy
        self.workload = workload
        self.wall_s = wall_s
        self.slo_s = slo_s
        self.router = router

    @property
    def requests_per_wall_s(self) -> float:
        return len(self.frame) / self.wall_s if self.wall_s else float("nan")

    def summary(self) -> dict[str, Any]:
        """Cost, latency percentiles, TTFT, success rate, SLO violations, quality, hedges, failovers, steps."""
        f = self.frame
        ok = f[f["ok"]]
        lat = ok["latency_s"]
        return {
            "strategy": self.strategy,
            "requests": len(f),
            "success_rate": float(f["ok"].mean()) if len(f) else float("nan"),
            "cost_usd": float(f["cost_usd"].sum()),
            "cost_per_1k_usd": float(f["cost_usd"].sum() / max(len(ok), 1) * 1000),
            "p50_s": float(lat.quantile(0.5)) if len(ok) else float("nan"),
            "p95_s": float(lat.quantile(0.95)) if len(ok) else float("nan"),
            "p99_s": float(lat.quantile(0.99)) if len(ok) else float("nan"),
            "ttft_mean_s": float(ok["ttft_s"].mean()) if len(ok) else float("nan"),
            "slo_violations": int((~f["ok"] | (f["latency_s"] > self.slo_s)).sum()),
            "quality": float(ok["quality_ok"].mean()) if len(ok) else float("nan"),
            "budget_stopped": int((f["error"] == "BudgetExceeded").sum()),
            "hedged": int(f["hedged"].sum()),
            "failovers": int(f["failovers"].sum()),
            "steps_per_answer": float(ok["steps"].mean()) if len(ok) else float("nan"),
        }

    def to_duckdb(self, target: Any = None, table: str = "sim_results", *, replace: bool = False) -> Any:
        """Append the per-request rows to DuckDB table ``table``, with ``strategy`` and ``workload`` columns,
        so that several runs share one table and compare in SQL; return the connection.

        Args:
            target: a ``duckdb`` connection, a database file's path, or None (a new in-memory database).
            table: the table's name (created on first use, typed as :data:`SQL_TYPES`).
            replace: drop the table first instead of appending.

        >>> con = result.to_duckdb("lab.duckdb")                                  # doctest: +SKIP
        >>> con.sql("select strategy, quantile_cont(latency_s, 0.95) p95 from sim_results where ok group by 1")
        ... # doctest: +SKIP
        """
        import re

        import duckdb

        if not isinstance(table, str) or not re.fullmatch(_TABLE_NAME, table):
            raise ValidationError(
                f"table={table!r} is not a plain SQL name",
                input=table,
                hint="letters, digits and _, e.g. 'sim_results'",
            )
        if target is None or isinstance(target, str | Path):
            con = duckdb.connect(":memory:" if target is None else str(target))
        elif isinstance(target, duckdb.DuckDBPyConnection):
            con = target
        else:
            raise ValidationError(
                f"target is a {type(target).__name__}, not a DuckDB connection or a file path",
                input=type(target).__name__,
                hint="to_duckdb('lab.duckdb'), to_duckdb(duckdb.connect(...)) or to_duckdb() for memory",
            )
        frame = self.frame.assign(strategy=self.strategy, workload=self.workload)
        columns = ", ".join(f"{name} {kind}" for name, kind in SQL_TYPES.items())
        select = ", ".join(f"CAST({name} AS {kind}) AS {name}" for name, kind in SQL_TYPES.items())
        view = f"_lumina_rows_{id(frame):x}"
        con.register(view, frame)
        try:
            if replace:
                con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            con.execute(f"INSERT INTO {table} ({', '.join(SQL_TYPES)}) SELECT {select} FROM {view}")
        finally:
            con.unregister(view)
        return con

    def share(self) -> pd.DataFrame:
        """Answered requests per provider."""
        f = self.frame[self.frame["ok"]]
        return f.groupby("provider").size().rename("requests").reset_index().sort_values("requests", ascending=False)

    # plots (holoviews; see lumina_lab.sim.plots)
    def plot_latency_cdf(self, **opts: Any) -> Any:
        """Latency CDF of the answered requests (a holoviews object)."""
        from .plots import latency_cdf

        return latency_cdf({self.strategy: self}, **opts)

    def plot_cost_over_time(self, bucket_s: float = 60.0, **opts: Any) -> Any:
        """Spend per ``bucket_s`` of simulated time, by provider (a holoviews object)."""
        from .plots import cost_over_time

        return cost_over_time(self, bucket_s=bucket_s, **opts)

    def plot_provider_share(self, **opts: Any) -> Any:
        """Answered requests per provider (a holoviews object)."""
        from .plots import provider_share

        return provider_share({self.strategy: self}, **opts)

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"SimResult({self.strategy!r} on {self.workload}: {s['requests']:,} requests, "
            f"success {s['success_rate']:.1%}, ${s['cost_usd']:.2f}, p95 {s['p95_s']:.2f}s; "
            f"replayed at {self.requests_per_wall_s:,.0f} requests/s)"
        )

    def _repr_html_(self) -> str:
        import pandas as pd

        return f"<p>{self!r}</p>" + pd.DataFrame([self.summary()]).to_html(index=False)

    def __getstate__(self) -> dict[str, Any]:  # pickled (e.g. from a Dask worker) without the router
        state = dict(self.__dict__)
        state["router"] = None
        return state
