"""The semantic graph: nodes, typed edges, neighbours, paths, 'about X between dates', persistence."""

from __future__ import annotations

import doctest
import json
from datetime import UTC, datetime

import pytest

import lumina_lab.memory.graph as graph_module
from lumina_lab.errors import StoreError, ValidationError
from lumina_lab.memory.graph import SemanticGraph

DAY = 86400.0
T0 = datetime(2023, 5, 8, tzinfo=UTC).timestamp()


@pytest.fixture
def g() -> SemanticGraph:
    g = SemanticGraph()
    g.add_item("t1", "Caroline: I moved from Sweden 4 years ago.", ts=T0, session="1")
    g.add_item("t2", "Melanie: Sweden sounds lovely. Did you visit Stockholm?", ts=T0 + 60, session="1")
    g.add_item("t3", "Caroline: Yes! My grandma still lives in Stockholm.", ts=T0 + 120, session="1")
    g.add_item("t4", "Melanie: I went camping with Oscar yesterday.", ts=T0 + 30 * DAY, session="2")
    g.link("t1", "t2", "next")
    g.link("t2", "t3", "next")
    g.link("t4", "t1", "similar", 0.71)
    return g


def test_docstring_examples():
    assert doctest.testmod(graph_module, optionflags=doctest.ELLIPSIS).failed == 0


def test_items_link_to_the_entities_and_dates_they_mention(g):
    assert {e.id for e in g.neighbours("t1", edge="mention")} >= {"entity:caroline", "entity:sweden", "date:2019"}
    assert [e.id for e in g.neighbours("Stockholm")] == ["item:t2", "item:t3"]
    # t4 said on 7 June: "yesterday" is 6 June 2023
    assert "date:2023-06-06" in {e.id for e in g.neighbours("t4", kind="date")}
    assert g.node("sweden").label == "Sweden" and g.node("entity:sweden").kind == "entity"
    assert repr(g).startswith("SemanticGraph(4 item")


def test_neighbours_filter_by_edge_and_kind_and_sort_by_weight(g):
    nb = g.neighbours("t1")
    assert nb[0].weight >= nb[-1].weight
    assert [e.id for e in g.neighbours("t1", edge="similar")] == ["item:t4"]
    assert g.neighbours("t1", edge="similar")[0].weight == pytest.approx(0.71)
    assert {e.id for e in g.neighbours("t2", kind="item")} == {"item:t1", "item:t3"}
    assert g.neighbors is not None  # the American spelling works too


def test_repeated_mentions_add_weight():
    g = SemanticGraph()
    g.add_item("a", "Oslo, Oslo, and Oslo again.")
    assert g.neighbours("Oslo")[0].weight == 3.0


def test_path_shortest_and_restricted(g):
    shortest = g.path("t1", "t3")
    assert shortest[0] == "item:t1" and shortest[-1] == "item:t3" and len(shortest) == 3
    assert g.path("t4", "Stockholm") is not None
    assert g.path("t1", "t3", edges=["next"]) == ["item:t1", "item:t2", "item:t3"]
    assert g.path("t4", "t3", edges=["next"]) is None
    assert g.path("t1", "t1") == ["item:t1"]
    assert g.path("t1", "t3", max_hops=1) is None


def test_about_between_dates(g):
    assert [n.id for n in g.about("Caroline")] == ["item:t1", "item:t3"]
    assert [n.id for n in g.about("Sweden", since=T0 + 30)] == ["item:t2"]
    assert [n.id for n in g.about("Sweden", until=T0 + 30)] == ["item:t1"]
    assert [n.id for n in g.about("Melanie", since="2023-06-01", until=datetime(2023, 6, 30, tzinfo=UTC))] == [
        "item:t4"
    ]
    assert [n.id for n in g.about("date:2019")] == ["item:t1"]
    with pytest.raises(ValidationError, match="is an item"):
        g.about("t1")


def test_entities_ranked_by_mentions(g):
    ranked = [(n.label, c) for n, c in g.entities()]
    assert ranked[0][1] >= ranked[-1][1]
    assert ("Stockholm", 2) in ranked
    assert [n.label for n, _ in g.entities("place")] == ["Stockholm", "Sweden"]


def test_remove_drops_orphaned_entities(g):
    assert g.remove("t4")
    assert "Oscar" not in g and "item:t4" not in g
    assert "Caroline" in g
    assert not g.remove("t4")
    g.clear_kind("entity")
    assert g.entities() == []


def test_tables_and_html(g):
    edges = g.df()
    assert list(edges.columns) == ["source", "target", "kind", "weight"]
    assert set(edges["kind"]) == {"mention", "next", "similar"}
    assert len(edges) == g.edge_count()
    nodes = g.nodes_df()
    assert set(nodes["kind"]) == {"item", "entity", "date"}
    assert "most mentioned" in g._repr_html_()


def test_save_and_load_round_trip(g, tmp_path):
    path = g.save(tmp_path / "g" / "graph.json")
    back = SemanticGraph.load(path)
    assert back.to_dict() == g.to_dict()
    assert [e.id for e in back.neighbours("Stockholm")] == ["item:t2", "item:t3"]
    assert back.file == path
    assert not list(path.parent.glob(".*tmp"))


def test_bad_input_is_refused(g, tmp_path):
    with pytest.raises(ValidationError, match="no node 'Narnia'"):
        g.neighbours("Narnia")
    with pytest.raises(ValidationError, match="close entities: Sweden"):
        g.node("Swedish")
    with pytest.raises(ValidationError, match="edge kind"):
        g.link("t1", "t2", "likes")
    with pytest.raises(ValidationError, match="edge kind"):
        g.neighbours("t1", edge="likes")
    with pytest.raises(ValidationError, match="node kind"):
        g.add_node("person", "x")
    with pytest.raises(ValidationError):
        g.add_node("entity", "")
    with pytest.raises(ValidationError):
        g.add_item("t9", None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="no path to save"):
        SemanticGraph().save()
    with pytest.raises(StoreError):
        SemanticGraph.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValidationError, match="not a saved SemanticGraph"):
        SemanticGraph.load(tmp_path / "other.json")
