"""Panel components in-process: fed by the bus, rendered to Bokeh models, usable as ipywidgets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("panel")
pytest.importorskip("holoviews")

from bokeh.document import Document

from lumina_lab import Lab
from lumina_lab.errors import ConfigError, ValidationError

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def lab(lumina_home: Path) -> Iterator[Lab]:
    with Lab(profile="test", memory={"backend": "memory"}) as the_lab:
        yield the_lab


def settle(lab: Lab) -> None:
    lab.sync()
    lab.bus.drain_sync()


def render(component: object) -> object:
    """The Bokeh model of a component (what a notebook or a served page shows)."""
    import panel as pn

    return pn.panel(component).get_root(Document())


def test_importing_the_package_does_not_import_panel() -> None:
    code = (
        "import sys, lumina_lab.ui, lumina_lab.ui.metrics; print('panel' in sys.modules or 'holoviews' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_missing_panel_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from lumina_lab.ui import _panel

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "panel" else real(name, *a))
    with pytest.raises(ConfigError, match=r"need panel.*\n.*pip install"):
        _panel.require_panel()


def test_overview_follows_the_bus(lab: Lab) -> None:
    from lumina_lab.providers import Budget
    from lumina_lab.ui import Overview

    lab.budgets.add(Budget(10.0, scope="project", key="search", period="day"))
    ov = Overview(lab)
    render(ov)
    assert ov.numbers["calls"].value == 0 and "no events yet" in ov.status.object
    for _ in range(12):
        lab.ask("hello there", max_tokens=16, project="search")
    settle(lab)
    ov.refresh()
    snap = ov.snapshot()
    assert snap["answered"] == 12 and ov.numbers["calls"].value == 12
    assert ov.numbers["p95_ms"].value > 0 and ov.numbers["error_rate"].value == 0
    assert "sim-gemini-2.5-flash" in ov.breakers.object and "closed" in ov.breakers.object
    assert "project=search/day" in ov.budgets.object
    assert snap["budgets"][0]["spent_usd"] > 0
    ov.close()
    assert not any(s.handler == ov.metrics.apply_many for s in lab.bus.subscriptions)


def test_overview_streams_points_into_a_bounded_buffer(lab: Lab) -> None:
    from datetime import UTC, datetime, timedelta

    from lumina_lab.providers.events import CallFinished
    from lumina_lab.ui import Overview

    ov = Overview(lab, history_s=20)
    t0 = datetime.now(UTC) - timedelta(seconds=60)
    events = [
        CallFinished(
            ts=t0 + timedelta(seconds=i),
            request_id=str(i),
            provider="p",
            model="m",
            attempt=1,
            input_tokens=1,
            output_tokens=1,
            cost_usd=0.0,
            latency_s=0.1,
        )
        for i in range(50)
    ]
    lab.publish(*events)
    settle(lab)
    ov.refresh()
    assert len(ov.source.data["t"]) == 19  # history_s seconds kept, the newest still filling is held back
    assert set(ov.source.data["answered"]) <= {0.0, 1.0} and ov.source.data["time"][-1] > ov.source.data["time"][0]
    ov.close()


def test_provider_table(lab: Lab) -> None:
    from lumina_lab.ui import ProviderTable

    lab.providers["sim-gemini-2.5-flash"].provider.error_rate = 1.0
    table = ProviderTable(lab)
    for _ in range(6):
        lab.ask("hi", max_tokens=8)
    settle(lab)
    table.refresh()
    frame = table.table.value.set_index("id")
    assert list(frame.index) == [s.id for s in lab.providers]
    assert frame.loc["sim-gemini-2.5-flash", "success_rate"] == 0.0
    assert "ProviderUnavailable" in frame.loc["sim-gemini-2.5-flash", "last_error"]
    assert frame.loc["sim-gpt-4.1-mini", "answered" if "answered" in frame else "calls"] >= 1
    assert "code" in frame.loc["sim-gpt-4.1", "capabilities"]
    render(table)
    table.close()


def test_event_browser_and_request_timeline(lab: Lab) -> None:
    from lumina_lab.ui import EventBrowser

    lab.providers["sim-gemini-2.5-flash"].provider.error_rate = 1.0
    eb = EventBrowser(lab)
    small = EventBrowser(lab, max_events=10)
    for _ in range(20):
        lab.ask("hi", max_tokens=8)
    settle(lab)
    eb.refresh()
    small.refresh()
    assert len(small.table.value) == 10 and small._received > 10  # bounded
    small.close()
    eb.filter.value = "provider.call.failed"
    assert set(eb.table.value["type"]) == {"provider.call.failed"}
    eb.table.selection = [0]
    assert eb.detail.object["type"] == "provider.call.failed"
    assert eb.pause.value  # selecting a row holds the table still
    assert "events" in eb.trace_title.object
    import holoviews as hv

    hv.render(eb.timeline.object)  # a waterfall with the failed and the answered attempt
    evs = eb.request_events(eb.table.value.iloc[0]["request"])
    assert {"provider.call.failed", "provider.call.finished"} <= {e.type for e in evs}
    render(eb)
    eb.close()


def test_routing_lab_view() -> None:
    import holoviews as hv

    from lumina_lab.providers import SimulatedProvider
    from lumina_lab.sim import RoutingLab, poisson
    from lumina_lab.ui import RoutingLabView
    from lumina_lab.ui.routing import pareto_mask

    fleet = [
        SimulatedProvider("gpt-4.1-mini", id="mini", ttft_s=0.4, tokens_per_s=90, quality=0.85),
        SimulatedProvider("gpt-4.1", id="large", ttft_s=0.7, tokens_per_s=60, quality=0.95),
    ]
    view = RoutingLabView(
        lab=RoutingLab(fleet), workload=poisson(20, n=400, seed=1), strategies=["cheapest", "round_robin"]
    )
    view.run()
    assert list(view.summary.index) == ["cheapest", "round_robin"]
    assert (view.table.value["requests"] == 400).all()
    for pane in (view.pareto, view.cdf, view.share):
        hv.render(pane.object)
    render(view)
    import numpy as np

    assert list(pareto_mask(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.9, 0.8]))) == [True, True, False]
    with pytest.raises(ValidationError, match="no RoutingLab"):
        RoutingLabView([]).run()


def test_memory_explorer_search_map_neighbours_and_escaping(lab: Lab) -> None:
    import holoviews as hv

    from lumina_lab.data import team_notes
    from lumina_lab.ui import MemoryExplorer

    notes = team_notes()
    coll = lab.memory.collection("notes")
    coll.add([n["text"] for n in notes] + [XSS], metadata=[{"team": n["team"]} for n in notes] + [{"team": XSS}])
    me = MemoryExplorer(lab, collection="notes")
    res = me.search("provider outage breaker")
    assert len(res) == 10 and list(me.results.value["rank"]) == list(range(1, 11))
    assert "team" in me.results.value.columns  # provenance columns
    me.refresh()
    assert len(me._points) == 31 and (me._points["hit"] > 0).sum() == 10  # every item, the hits marked
    hv.render(me.map.object)
    me.results.selection = [0]
    hv.render(me.neighbours.object)
    assert me.search(XSS) is not None
    assert XSS not in me.status.object and "&lt;img" in me.status.object  # HTML panes get escaped text
    me.where.value = "{not json"
    assert me.search("anything") is None and "the filter is not JSON" in me.status.object
    me.where.value = '{"team": "search"}'
    assert set(me.search("anything").df()["team"]) == {"search"}
    settle(lab)
    me.refresh()
    assert me.searches >= 2 and "hybrid search" in me.activity.object
    render(me)
    me.close()


def test_memory_explorer_shows_a_conversation_memorys_graph_and_topics(lab: Lab) -> None:
    import holoviews as hv

    from lumina_lab.memory import ConversationMemory
    from lumina_lab.ui import MemoryExplorer

    cm = ConversationMemory(lab.memory, name="chat", graph_path=False)
    turns = [
        ("ann", "Alice moved to Stockholm in Sweden last spring."),
        ("bob", "Did Alice like Stockholm? The winters in Sweden are long."),
        ("ann", "Bob adopted a puppy called Rex; Rex is two years old."),
        ("bob", "Rex chewed the sofa again, that puppy is trouble."),
    ]
    for speaker, text in turns:
        cm.remember(text, speaker=speaker, session="s1")
    me = MemoryExplorer(memory=cm)  # a conversation memory: its collection, graph and topics
    assert me.collection.value == "chat" and me.conversation() is cm
    res = me.search("Alice Stockholm")
    graph = me.neighbourhood(res[0].id)
    nodes = graph.get(0).nodes.data  # the Graph of the Graph * Labels overlay
    assert nodes["kind"].iloc[0] == "selected"
    linked = set(nodes["index"])
    assert {e.node.id for e in cm.graph.neighbours(f"item:{res[0].id}")} <= linked  # the graph's own edges
    assert any(i.startswith("entity:") for i in linked)  # entities, not only nearest vectors
    hv.render(graph)
    me.refresh()  # draws the map: the topics are the conversation memory's
    assert sorted(me.topics.value["topic"]) == sorted(t.id for t in cm.topics())
    assert set(me._points["topic"]) <= {t.label for t in cm.topics()} | {""}
    me.close()

    # a plain collection: vector search approximates the neighbourhood
    lab.memory.collection("plain").add(["one note", "another note", "a third"])
    plain = MemoryExplorer(lab, collection="plain", conversations=[cm])
    assert plain.conversation() is None and plain.conversation("chat") is cm
    hits = plain.search("note")
    assert set(plain.neighbourhood(hits[0].id).nodes.data["role"]) == {"selected", "neighbour"}
    plain.close()


def test_policy_simulator_view(lab: Lab) -> None:
    import holoviews as hv

    from lumina_lab.policy import DictEntities
    from lumina_lab.ui import PolicySimulatorView

    lab.policy.entities.add(DictEntities("User", {"ann": {"team": "search"}, "bob": {"team": "agents"}}))
    lab.policy.entities.add(DictEntities("Provider", {"gpt": {"tier": "premium"}, "mini": {"tier": "standard"}}))
    v1 = '@id("standard") permit(principal, action == Action::"call", resource) when { resource.tier == "standard" };'
    lab.policy.publish(v1, message="v1")
    view = PolicySimulatorView(lab)
    assert view.principals.value.splitlines() == ['User::"ann"', 'User::"bob"']
    assert view.actions.value == "call"
    v2 = v1 + '\n@id("search") permit(principal, action, resource) when { principal.team == "search" };'
    view.editor.value = v2
    view.compare.value = "v1 (live)"
    matrix = view.run()
    assert matrix.counts == {"allow": 3, "deny": 1, "no_decision": 0}
    assert view.diff.n_changed == 1 and "1 of 4" in view.diff_summary.object
    hv.render(view.heatmap.object)
    exp = view.explain('User::"ann"', "call", 'Provider::"gpt"')
    assert exp.decision.allowed and "search" in view.explanation.object
    view.table.selection = [1]
    assert "ALLOW" in view.explanation.object or "DENY" in view.explanation.object
    view.editor.value = "permit(principal action, resource);"
    assert view.run() is None and "does not parse" in view.status.object
    view.editor.value = v2
    assert view.publish().number == 2
    settle(lab)
    view.refresh()
    assert "v2 (live)" in view.compare.options and "version 2 published" in view.feed.object
    render(view)
    view.close()


def test_policy_simulator_starts_from_a_starter_policy_when_nothing_is_published(lab: Lab) -> None:
    """A new user's first grid shows both colours: everyone may use providers, an intern only the first one."""
    from lumina_lab.ui import PolicySimulatorView

    assert lab.policy.live is None
    view = PolicySimulatorView(lab)
    providers = [s.id for s in lab.providers]
    assert view.actions.value == "use_provider"
    assert view.resources.value.splitlines() == [f'Provider::"{p}"' for p in providers]
    matrix = view.run()
    frame = matrix.frame
    intern = frame[frame.principal == 'User::"intern"']
    assert list(intern.decision) == ["allow"] + ["deny"] * (len(providers) - 1)
    assert set(frame[frame.principal == 'User::"ann"'].decision) == {"allow"}
    assert lab.policy.live is None  # nothing published until the user says so
    view.close()


def test_dashboard_layouts_and_themes(lab: Lab, lumina_home: Path) -> None:
    from lumina_lab.ui import COMPONENTS, Dashboard

    d = Dashboard(lab, components=["overview", "providers"], theme="dark")
    assert [c.title for c in d.main.objects] == ["Live overview", "Providers"]
    assert d.component("overview").metrics is d.component("providers").metrics  # one projection, subscribed once
    lab.ask("hi", max_tokens=8)
    settle(lab)
    d.refresh()
    assert d.component("providers").table.value["calls"].sum() == 1
    path = d.save_layout("ops")
    assert path == lumina_home / "dashboards" / "ops.json"
    assert json.loads(path.read_text()) == {"components": ["overview", "providers"], "theme": "dark"}
    d.chooser.value = ["events"]
    assert [c.title for c in d.main.objects] == ["Events and traces"]
    again = Dashboard(lab, layout="ops")
    assert again.components == ["overview", "providers"] and again.theme == "dark"
    render(d)
    assert type(d.template()).__name__ == "BootstrapTemplate"
    with pytest.raises(ConfigError, match="unknown dashboard component"):
        Dashboard(lab, components=["nope"])
    with pytest.raises(ConfigError, match="not a theme"):
        Dashboard(lab, theme="purple")
    with pytest.raises(ValidationError, match=r"no saved dashboard layout 'gone'(.|\n)*ops"):
        Dashboard(lab, layout="gone")
    with pytest.raises(ValidationError, match="not allowed"):
        d.save_layout("../escape")
    everything = Dashboard(lab, components=list(COMPONENTS))
    assert len(everything.main.objects) == len(COMPONENTS)
    for dash in (d, again, everything):
        dash.close()
    time.sleep(0)  # the subscriptions are gone
    assert not [s for s in lab.bus.subscriptions if s.name != "event-store"]


def test_components_work_as_ipywidgets(lab: Lab) -> None:
    pytest.importorskip("jupyter_bokeh")
    from lumina_lab.ui import Overview

    ov = Overview(lab)
    widget = ov.ipywidget()
    assert type(widget).__name__ == "BokehModel"
    ov.close()


def test_routing_view_replays_the_recorded_traffic(lab: Lab) -> None:
    from lumina_lab.ui import RoutingLabView

    view = RoutingLabView(replay=lab)
    view.run()
    assert "no provider.request.routed events" in view.note.object  # nothing recorded yet: said, not raised
    for _ in range(15):
        lab.ask("hello", max_tokens=16, project="search")
    view.run()
    assert list(view.summary["requests"]) == [15] * len(view.choice.value)
