"""A replay's per-request rows as a DuckDB table: runs side by side in SQL, the same figures as the summaries."""

from __future__ import annotations

import duckdb
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.providers import SimulatedProvider
from lumina_lab.sim import RoutingLab, poisson
from lumina_lab.sim.results import COLUMNS

LAB = RoutingLab(
    [
        SimulatedProvider("gpt-4.1-mini", id="mini", ttft_s=0.4, tokens_per_s=90, error_rate=0.2),
        SimulatedProvider("gemini-2.5-flash", id="flash", ttft_s=0.3, tokens_per_s=150, error_rate=0.05),
    ]
)
WORKLOAD = poisson(20, n=2_000, seed=4, tenants={"search": 2, "agents": 1})


def test_runs_share_one_table_and_sql_gives_the_summaries_figures() -> None:
    runs = {s: LAB.run(WORKLOAD, s) for s in ("cheapest", "least_busy")}
    con = None
    for run in runs.values():
        con = run.to_duckdb(con)
    assert con is not None
    rows = con.sql(
        "select strategy, count(*), avg(ok::int), sum(cost_usd), quantile_cont(latency_s, 0.95) filter (where ok) "
        "from sim_results group by 1"
    ).fetchall()
    assert {r[0] for r in rows} == set(runs)
    for strategy, n, success, cost, p95 in rows:
        summary = runs[strategy].summary()
        assert n == summary["requests"] == len(WORKLOAD)
        assert success == pytest.approx(summary["success_rate"])
        assert cost == pytest.approx(summary["cost_usd"])
        assert p95 == pytest.approx(summary["p95_s"])


def test_the_table_has_every_column_typed_and_unanswered_requests_have_no_provider() -> None:
    lab = RoutingLab([SimulatedProvider("gpt-4.1-mini", id="mini", error_rate=1.0)])
    con = lab.run(poisson(5, n=50, seed=1), "cheapest").to_duckdb()
    described = dict(con.sql("select column_name, column_type from (describe sim_results)").fetchall())
    assert list(described) == [*COLUMNS, "strategy", "workload"]
    assert described["ok"] == "BOOLEAN" and described["provider"] == "VARCHAR" and described["ttft_s"] == "DOUBLE"
    assert con.execute("select count(*) from sim_results where provider is null and not ok").fetchone() == (50,)


def test_a_file_keeps_the_rows_and_replace_starts_afresh(tmp_path) -> None:
    path = tmp_path / "lab.duckdb"
    run = LAB.run(WORKLOAD, "cheapest")
    run.to_duckdb(path, "runs").close()
    run.to_duckdb(str(path), "runs").close()
    with duckdb.connect(str(path)) as con:
        assert con.execute("select count(*) from runs").fetchone() == (2 * len(WORKLOAD),)
    run.to_duckdb(path, "runs", replace=True).close()
    with duckdb.connect(str(path)) as con:
        assert con.execute("select count(*) from runs").fetchone() == (len(WORKLOAD),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": "runs; drop table x"}, "is not a plain SQL name"),
        ({"target": 42}, "target is a int, not a DuckDB connection or a file path"),
    ],
)
def test_bad_targets_and_table_names_are_refused(kwargs, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LAB.run(poisson(5, n=10, seed=1), "cheapest").to_duckdb(**kwargs)
