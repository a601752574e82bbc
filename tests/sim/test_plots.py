"""Plots of routing-lab results: the numbers behind each plot are right (Pareto front = the non-dominated
strategies, CDFs monotone and ending at 1, shares summing to 1, spend adding up to the results' cost, the
95%-quality point where evaluate() puts it), every plot renders with Bokeh and in Panel, and bad input gets
one message naming it and the fix."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.providers import SimulatedProvider
from lumina_lab.sim import Outage, RoutingLab, evaluate, plots, poisson

hv = pytest.importorskip("holoviews")
pytestmark = pytest.mark.timeout(120)

STRATEGIES = ["cheapest", "least_busy", "round_robin", "weighted"]
OUTAGE = Outage("flash", 20.0, 40.0)


def render(obj):
    return hv.render(obj, backend="bokeh")


@pytest.fixture(scope="module")
def compared():
    fleet = [
        SimulatedProvider("gpt-4.1-mini", id="mini", ttft_s=0.45, tokens_per_s=90, error_rate=0.02, quality=0.85),
        SimulatedProvider("gemini-2.5-flash", id="flash", ttft_s=0.3, tokens_per_s=160, error_rate=0.03, quality=0.8),
        SimulatedProvider("gpt-4.1", id="large", ttft_s=0.7, tokens_per_s=60, error_rate=0.01, quality=0.95),
    ]
    lab = RoutingLab(fleet, breaker={"min_calls": 5, "open_s": 10}, slo_s=3.0)
    workload = poisson(25, n=1500, seed=2)
    table, results, layout = lab.compare(STRATEGIES, workload, outages=[OUTAGE], seed=1, plot=True)
    return table, results, layout


def dominated(points: dict[str, tuple[float, float]], name: str) -> bool:
    c, q = points[name]
    return any((c2 <= c and q2 >= q) and (c2 < c or q2 > q) for other, (c2, q2) in points.items() if other != name)


# ---------------------------------------------------------------------- Pareto front


def test_pareto_mask_by_hand_and_against_brute_force() -> None:
    #            cheap+bad  mid+good  dear+worse  tie with mid  dominated by mid
    cost = [1.0, 2.0, 3.0, 2.0, 2.5]
    quality = [0.5, 0.9, 0.8, 0.9, 0.85]
    assert plots.pareto_mask(cost, quality).tolist() == [True, True, False, True, False]
    assert plots.pareto_mask([], []).tolist() == []
    rng = np.random.default_rng(0)
    for _ in range(50):
        c, q = rng.integers(0, 5, 12).astype(float), rng.integers(0, 5, 12).astype(float)  # many ties
        pts = {str(i): (c[i], q[i]) for i in range(12)}
        assert plots.pareto_mask(c, q).tolist() == [not dominated(pts, str(i)) for i in range(12)]
    with pytest.raises(ValidationError, match="same 1-D shape"):
        plots.pareto_mask([1.0, 2.0], [0.5])


def test_pareto_front_holds_exactly_the_non_dominated_strategies(compared) -> None:
    table, results, _ = compared
    points = {s: (table.loc[s, "cost_per_1k_usd"], table.loc[s, "quality"]) for s in table.index}
    want = {s for s in points if not dominated(points, s)}
    front = plots.pareto_table(table)
    assert set(front.index[front["pareto"]]) == want and want
    assert list(front["cost_per_1k_usd"]) == sorted(front["cost_per_1k_usd"])  # cheapest first
    # the same from the SimResults themselves
    assert set(plots.pareto_table(results).query("pareto").index) == want
    # the plot: its front line joins exactly those points, by increasing cost
    obj = plots.pareto_front(table)
    (line,) = [el for el in obj if isinstance(el, hv.Curve) and el.label == "Pareto front"]
    assert sorted(zip(line.dimension_values(0), line.dimension_values(1), strict=True)) == sorted(
        points[s] for s in want
    )
    render(obj)
    render(plots.pareto_front(results, cost="p95_s", quality="success_rate"))


def test_pareto_front_of_a_sweep_averages_seeds_and_picks_the_quality_column() -> None:
    sweep = pd.DataFrame(
        {
            "strategy": ["a", "a", "b", "b", "c", "c"],
            "seed": [0, 1, 0, 1, 0, 1],
            "cost_per_1k_usd": [1.0, 3.0, 1.0, 1.0, 4.0, 4.0],  # a: 2.0 on average
            "quality": [np.nan] * 6,  # no provider quality: the success rate is used
            "success_rate": [0.9, 0.9, 0.8, 0.8, 0.95, 0.95],
        }
    )
    front = plots.pareto_table(sweep)
    assert front.attrs["quality"] == "success_rate"
    assert front.loc["a", "cost_per_1k_usd"] == 2.0 and len(front) == 3
    assert front["pareto"].to_dict() == {"b": True, "a": True, "c": True}
    sweep.loc[sweep.strategy == "c", "success_rate"] = 0.85  # now c is dearer and worse than a
    assert not plots.pareto_table(sweep).loc["c", "pareto"]
    render(plots.pareto_front(sweep))


# ---------------------------------------------------------------------- latency CDF


def test_latency_cdf_is_monotone_ends_at_one_and_matches_the_data(compared) -> None:
    _, results, _ = compared
    cdf = plots.latency_cdf_table(results, points=200)
    assert list(cdf["strategy"].unique()) == STRATEGIES
    for name, part in cdf.groupby("strategy"):
        frame = results[name].frame
        lat = np.sort(frame.loc[frame["ok"], "latency_s"].to_numpy())
        assert len(part) <= 200
        assert np.all(np.diff(part["latency_s"]) >= 0) and np.all(np.diff(part["share"]) >= 0)
        assert part["share"].iloc[-1] == 1.0 and part["latency_s"].iloc[-1] == lat[-1]
        assert part["latency_s"].iloc[0] == lat[0] and 0 < part["share"].iloc[0] < 0.01
        for x, share in zip(part["latency_s"], part["share"], strict=True):  # the empirical CDF, exactly
            assert share == (lat <= x).mean()
    # of all requests: ends at the success rate
    every = plots.latency_cdf_table(results, of="requests")
    for name, part in every.groupby("strategy"):
        assert part["share"].iloc[-1] == pytest.approx(results[name].summary()["success_rate"])
    obj = plots.latency_cdf(results)
    assert [el.label for el in obj if isinstance(el, hv.Curve)] == STRATEGIES
    render(obj)
    render(plots.latency_cdf(results["cheapest"], of="requests", logx=True))


# ---------------------------------------------------------------------- provider share and spend


def test_provider_share_sums_to_one_and_counts_the_answers(compared) -> None:
    _, results, _ = compared
    share = plots.share_table(results)
    assert share.groupby("strategy")["share"].sum().to_numpy() == pytest.approx([1.0] * len(STRATEGIES))
    for name, r in results.items():
        counts = r.frame[r.frame["ok"]].groupby("provider").size().to_dict()
        assert share[share.strategy == name].set_index("provider")["requests"].to_dict() == counts
    render(plots.provider_share(results))
    render(plots.provider_share(results, normalize=False))


def test_provider_share_over_time_shows_the_outage(compared) -> None:
    _, results, _ = compared
    over = plots.share_table(results["cheapest"], over_time=True, bucket_s=5)
    assert over.groupby("time_s")["share"].sum().to_numpy() == pytest.approx(1.0)
    during = over[(over.time_s >= OUTAGE.start_s) & (over.time_s + 5 <= OUTAGE.end_s)]
    before = over[over.time_s + 5 <= OUTAGE.start_s]
    assert "flash" in set(before.provider) and "flash" not in set(during.provider)
    render(plots.provider_share(results["cheapest"], over_time=True, bucket_s=5))
    layout = plots.provider_share(results, over_time=True)
    assert isinstance(layout, hv.Layout) and len(layout) == len(STRATEGIES)
    render(layout)


def test_cost_over_time_adds_up_to_the_results_cost(compared) -> None:
    table, results, _ = compared
    by_strategy = plots.cost_table(results, bucket_s=10)
    assert by_strategy.attrs == {"bucket_s": 10.0, "by": "strategy"}
    totals = by_strategy.groupby("strategy")["cost_usd"].sum()
    last = by_strategy.groupby("strategy")["cumulative_usd"].last()
    for name in STRATEGIES:
        assert totals[name] == pytest.approx(table.loc[name, "cost_usd"])
        assert last[name] == pytest.approx(table.loc[name, "cost_usd"])
    assert by_strategy.groupby("strategy").size().nunique() == 1  # every bucket, zeros included
    by_provider = plots.cost_table(results["round_robin"], bucket_s=10)
    assert by_provider.attrs["by"] == "provider" and set(by_provider.provider) == {"mini", "flash", "large"}
    spend = results["round_robin"].frame.groupby("provider")["cost_usd"].sum()
    assert by_provider.groupby("provider")["cost_usd"].sum().to_dict() == pytest.approx(spend.to_dict())
    assert plots.cost_table(results).attrs["bucket_s"] == 1.0  # ~60 s of traffic: 1 s buckets
    render(plots.cost_over_time(results))
    render(plots.cost_over_time(results["round_robin"], cumulative=True))
    render(plots.cost_over_time(results, by="provider"))


# ---------------------------------------------------------------------- learned routers


def labelled(n: int, seed: int):
    rng = np.random.default_rng(seed)
    weak = rng.random(n) < 0.6
    strong = weak | (rng.random(n) < 0.7)
    prompts = [f"question {i} " + "x" * int(rng.integers(10, 400)) for i in range(n)]
    signal = (strong & ~weak) + 0.8 * rng.random(n)  # a router that mostly knows
    return prompts, weak, strong, signal


def test_quality_cost_curves_mark_the_95_percent_point_evaluate_reports() -> None:
    prompts, weak, strong, signal = labelled(600, 0)
    evals = {
        "good": evaluate(signal, prompts, weak, strong),
        "constant": evaluate(np.zeros(len(prompts)), prompts, weak, strong),
    }
    table = plots.quality_cost_table(evals, points=100)
    for name, e in evals.items():
        part = table[table.router == name]
        assert len(part) <= 101 and part["strong_share"].iloc[0] == 0 and part["strong_share"].iloc[-1] == 1
        at95 = part[part["at_95"]]
        assert len(at95) == 1
        assert 1 - at95["cost_ratio"].iloc[0] == pytest.approx(e["cost_saving_at_95"])
        assert at95["strong_share"].iloc[0] == pytest.approx(e["strong_share_at_95"])
    assert evals["good"]["cost_saving_at_95"] > evals["constant"]["cost_saving_at_95"]
    full = plots.quality_cost_table(evals["good"], points=None)
    assert len(full) == len(prompts) + 1 and list(full.router.unique()) == ["router"]
    obj = plots.quality_cost(evals)
    curves = [el for el in obj if isinstance(el, hv.Curve)]
    legends = [c.label for c in curves]
    assert legends[0] == "random (expected)"
    assert any(label.startswith("good · APGR ") and "at 95%" in label for label in legends)
    # the random router's expected line is what a constant score gives (evaluate() splits ties fairly)
    random_line = curves[0]
    assert random_line.dimension_values("quality").tolist() == pytest.approx(
        [evals["constant"]["quality_weak"], evals["constant"]["quality_strong"]]
    )
    render(obj)
    for x in ("strong_share", "cost"):
        render(plots.quality_cost(evals["good"], x=x, random=False, title="test split"))


# ---------------------------------------------------------------------- rendering and input errors


def test_everything_renders_in_bokeh_and_panel(compared) -> None:
    pn = pytest.importorskip("panel")
    table, results, layout = compared
    assert isinstance(layout, hv.Layout) and len(layout) == 4
    render(layout)
    render(plots.overview(results))
    run = results["least_busy"]
    for obj in (run.plot_latency_cdf(), run.plot_cost_over_time(bucket_s=5), run.plot_provider_share()):
        render(obj)
    pane = pn.pane.HoloViews(plots.latency_cdf(results), backend="bokeh")
    assert pane.get_root() is not None
    fixed = plots.pareto_front(table, width=640)  # a fixed size instead of the container's width
    fig = render(fixed)
    assert fig.width == 640


def test_a_run_with_no_answer_says_so(compared) -> None:
    _, results, _ = compared
    empty = results["cheapest"]
    copy = type(empty).__new__(type(empty))
    copy.__dict__.update(empty.__dict__)
    copy.frame = empty.frame.assign(ok=False, cost_usd=0.0)
    for obj in (plots.latency_cdf(copy), plots.provider_share(copy), plots.cost_over_time(copy)):
        assert isinstance(obj, hv.Div)
        render(obj)
    with pytest.raises(ValidationError, match="every run failed"):
        plots.pareto_table(pd.DataFrame({"strategy": ["a"], "cost_per_1k_usd": [np.nan], "quality": [np.nan]}))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r, t: plots.latency_cdf("cheapest"), "results must be a SimResult.*got str"),
        (lambda r, t: plots.latency_cdf({}), "results is empty"),
        (lambda r, t: plots.provider_share([1, 2]), r"results\['0'\] is a int, not a SimResult"),
        (lambda r, t: plots.latency_cdf([r["cheapest"], r["cheapest"]]), "two results of strategy 'cheapest'"),
        (lambda r, t: plots.latency_cdf(r, of="all"), "of='all'"),
        (lambda r, t: plots.latency_cdf(r, points=1), "points=1"),
        (lambda r, t: plots.pareto_front(t, quality="accuracy"), "quality='accuracy' is not a column"),
        (lambda r, t: plots.pareto_front(t.reset_index(drop=True)), "no 'strategy' column"),
        (lambda r, t: plots.cost_over_time(r, bucket_s=0), "bucket_s=0 must be a positive number"),
        (lambda r, t: plots.cost_over_time(r, by="tenant"), "by='tenant'"),
        (lambda r, t: plots.overview(t), "needs the SimResults too"),
        (lambda r, t: plots.quality_cost([1]), "evaluations must be a dict returned by evaluate"),
        (lambda r, t: plots.quality_cost({"knn": {"apgr": 0.5}}), r"evaluations\['knn'\] is not an evaluate"),
        (lambda r, t: plots.quality_cost({}), "evaluations is empty"),
    ],
)
def test_bad_input_is_one_message_naming_it_and_the_fix(compared, call, message) -> None:
    table, results, _ = compared
    with pytest.raises(ValidationError, match=message) as info:
        call(results, table)
    assert "\n  fix: " in str(info.value)  # the message, then how to fix it


def test_routers_measured_on_different_prompts_are_not_drawn_together() -> None:
    p1, w1, s1, sig1 = labelled(200, 1)
    p2, w2, s2, sig2 = labelled(300, 2)
    a, b = evaluate(sig1, p1, w1, s1), evaluate(sig2, p2, w2, s2)
    with pytest.raises(ValidationError, match="measured on different prompts") as info:
        plots.quality_cost({"gsm8k": a, "mmlu": b})
    assert "quality_cost(gsm8k) + quality_cost(mmlu)" in str(info.value)
    with pytest.raises(ValidationError, match="x='cost_usd'"):
        plots.quality_cost(a, x="cost_usd")
    render(plots.quality_cost(a) + plots.quality_cost(b))


def test_importing_the_plots_loads_no_plotting_library() -> None:
    code = (
        "import sys, lumina_lab, lumina_lab.sim.plots; "
        "print(sorted(m for m in ('holoviews', 'bokeh', 'panel', 'hvplot') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
