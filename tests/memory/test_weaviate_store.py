"""The Weaviate adapter without a Weaviate server: names, ids, filter translation, connection errors.

The contract suite runs against a real server only when ``WEAVIATE_URL`` is set. Here the adapter's
own logic runs against :class:`FakeWeaviate`, a small in-memory stand-in for weaviate-client v4
whose every method first binds its arguments to the real client's signature (so a misspelt
keyword fails here, not against a server) and which evaluates the real client's filter objects.
"""

from __future__ import annotations

import inspect
import json
import random
import re
import socket
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

weaviate = pytest.importorskip("weaviate")

from weaviate.collections.aggregate import _AggregateCollection  # noqa: E402
from weaviate.collections.classes.filters import _Operator  # noqa: E402
from weaviate.collections.collection.sync import Collection  # noqa: E402
from weaviate.collections.collections.sync import _Collections  # noqa: E402
from weaviate.collections.config import _ConfigCollection  # noqa: E402
from weaviate.collections.data import _DataCollection  # noqa: E402
from weaviate.collections.query import _QueryCollection  # noqa: E402

from lumina_lab.errors import CollectionNotFound, StoreError, ValidationError  # noqa: E402
from lumina_lab.memory.filters import F, Filter, Range  # noqa: E402
from lumina_lab.memory.stores import open_vector_store  # noqa: E402
from lumina_lab.memory.stores import weaviate as wv  # noqa: E402
from lumina_lab.memory.stores.weaviate import (  # noqa: E402
    LUMINA_NAMESPACE,
    NOTHING,
    WeaviateVectorStore,
    logical_name,
    object_uuid,
    parse_url,
    physical_name,
    shadow_property,
    weaviate_filter,
)

DIM = 8


# ---- pure helpers --------------------------------------------------------------------------
def test_collection_names_map_reversibly():
    assert physical_name("Lumina", "docs") == "Lumina_docs"
    assert physical_name("Tabc_12", "agent_memory") == "Tabc_12_agent_memory"
    for name in ["docs", "Docs", "a", "x_1", "A" * 63]:
        assert logical_name("Lumina", physical_name("Lumina", name)) == name
    assert logical_name("Lumina", "Other_docs") is None
    assert logical_name("Lumina", "Lumina_") is None
    assert logical_name("Lumina", "LuminaX_docs") is None
    for bad in ["lumina", "", "9x", "Has-dash", "Spa ce"]:
        with pytest.raises(ValidationError, match="prefix"):
            WeaviateVectorStore("http://localhost:1", prefix=bad)


def test_object_ids_are_uuid5_of_our_ids():
    u = object_uuid("doc-1")
    assert u == str(uuid.uuid5(LUMINA_NAMESPACE, "doc-1")) == object_uuid("doc-1")
    assert uuid.UUID(u).version == 5
    ids = ["doc-1", "doc-2", "Doc-1", "ünïcødé", 'q"uote', "x" * 512]
    assert len({object_uuid(i) for i in ids}) == len(ids)


def test_metadata_keys_get_one_typed_property_per_kind():
    assert shadow_property("year", "n") == "m_year_n"
    assert shadow_property("year", "s") == "m_year_s"
    assert shadow_property("is_draft", "b") == "m_is_draft_b"
    assert shadow_property("Year", "n") == "mx_59656172_n"  # case and odd characters: hex
    assert shadow_property("a b/c", "s") == "mx_6120622f63_s"
    assert shadow_property("k" * 100, "s") == "m_" + "k" * 100 + "_s"
    assert shadow_property("K" * 100, "s") == "mx_" + "4b" * 100 + "_s"  # Weaviate allows 231 characters
    assert shadow_property("é" * 60, "s") is None  # too long to name: filtered in Python only
    names = {shadow_property(k, kind) for k in ["a", "a_s", "a_n", "A"] for kind in "snb"}
    assert len(names) == 12 and all(re.match(r"^[a-z][a-z0-9_]*$", n) for n in names)


def show(wf: Any) -> Any:
    """A Weaviate filter as nested tuples, for comparing."""
    if wf is None or wf is NOTHING:
        return wf
    op = wf.operator
    if op in (_Operator.AND, _Operator.OR, _Operator.NOT):
        return (op.value, *[show(x) for x in wf.filters])
    return (op.value, wf.target, wf.value)


def test_filters_translate_to_superset_weaviate_filters():
    cases = [
        (F.tag == "red", ("Equal", "m_tag_s", "red")),
        (F.n == 3, ("Equal", "m_n_n", 3.0)),  # numbers are float64 in Weaviate
        (F.flag == True, ("Equal", "m_flag_b", True)),  # noqa: E712 - its own property: never equals 1
        (F.n == "3", ("Equal", "m_n_s", "3")),
        (F.tag.isin(["a", 1]), ("Or", ("Equal", "m_tag_s", "a"), ("Equal", "m_tag_n", 1.0))),
        (F.n > 2, ("GreaterThanEqual", "m_n_n", 2.0)),  # strict bounds widen (float rounding)
        (F.n.between(1, 2.5), ("And", ("GreaterThanEqual", "m_n_n", 1.0), ("LessThanEqual", "m_n_n", 2.5))),
        (F.name > "m", None),  # string ranges: Python only
        ((F.a == 1) & ~(F.b == 2), ("Equal", "m_a_n", 1.0)),  # Not is never pushed down
        ((F.a == 1) | ~(F.b == 2), None),
        (~(F.a == 1), None),
        (Range("n", gt=1, lt="z"), "NOTHING"),  # a value is never both a number and a string
        (F.tag.isin([]), "NOTHING"),
        (F.s == "", None),  # field tokenisation indexes no token for blank strings
        (F.s.isin(["a", " "]), None),
        (F.n == 10**400, ("Equal", "m_n_n", sys.float_info.max)),  # clamped: still a superset
        (F["Odd key"] == True, ("Equal", "mx_4f6464206b6579_b", True)),  # noqa: E712
        (
            ((F.a == "x") | (F.b == "y")) & (F.c >= 0),
            ("And", ("Or", ("Equal", "m_a_s", "x"), ("Equal", "m_b_s", "y")), ("GreaterThanEqual", "m_c_n", 0.0)),
        ),
    ]
    for f, want in cases:
        got = weaviate_filter(f)
        assert (repr(got) if got is NOTHING else show(got)) == want, f
    assert weaviate_filter(None) is None


def test_keys_never_stored_match_nothing():
    known = {"m_tag_s", "m_n_n"}.__contains__
    assert weaviate_filter(F.missing == 1, known) is NOTHING
    assert weaviate_filter((F.missing == 1) & (F.tag == "a"), known) is NOTHING
    assert show(weaviate_filter((F.missing == 1) | (F.tag == "a"), known)) == ("Equal", "m_tag_s", "a")
    assert weaviate_filter(F.tag == 1, known) is NOTHING  # no number was ever stored under "tag"
    assert weaviate_filter(~(F.missing == 1), known) is None  # ...so its negation is everything


def test_urls_are_parsed():
    assert parse_url("http://localhost:8080") == ("localhost", 8080, False)
    assert parse_url("http://weaviate") == ("weaviate", 8080, False)
    assert parse_url("https://cluster.example.net") == ("cluster.example.net", 443, True)
    assert parse_url("https://10.0.0.2:8443/") == ("10.0.0.2", 8443, True)
    for bad in ["localhost:8080", "ftp://host", "http://", 8080]:
        with pytest.raises(ValidationError, match="Weaviate URL"):
            parse_url(bad)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_server_is_one_clear_store_error():
    http, grpc = free_port(), free_port()
    start = time.monotonic()
    with pytest.raises(StoreError, match=f"cannot connect to Weaviate at http://127.0.0.1:{http}") as err:
        WeaviateVectorStore(f"http://127.0.0.1:{http}", grpc_port=grpc, connect_timeout_s=2)
    assert err.value.hint and "start Weaviate" in err.value.hint and "DuckDB" in err.value.hint
    assert "\n  File " not in str(err.value)
    with pytest.raises(StoreError, match=r"cannot connect to Weaviate at http://weaviate\.invalid:8080"):
        open_vector_store("weaviate", url="http://weaviate.invalid:8080", connect_timeout_s=2)
    assert time.monotonic() - start < 20


# ---- a fake Weaviate ------------------------------------------------------------------------
def bind(real: Any, *args: Any, **kwargs: Any) -> None:
    """Fail like Python would if the real client method were called with these arguments."""
    inspect.signature(real).bind(None, *args, **kwargs)


class FakeServer:
    def __init__(self) -> None:
        self.classes: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.connects: list[dict[str, Any]] = []


class FakeWeaviate:
    """weaviate-client v4's WeaviateClient, as far as the adapter uses it."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.collections = FakeCollections(server)
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeCollections:
    def __init__(self, server: FakeServer) -> None:
        self.server = server

    def exists(self, name: str) -> bool:
        bind(_Collections.exists, name)
        return name in self.server.classes

    def list_all(self, simple: bool = True) -> dict[str, Any]:
        bind(_Collections.list_all, simple=simple)
        return {n: SimpleNamespace(name=n, description=c["description"]) for n, c in self.server.classes.items()}

    def use(self, name: str) -> FakeCollection:
        bind(_Collections.use, name)
        return FakeCollection(self.server, name)

    def create(self, name: str, **kwargs: Any) -> FakeCollection:
        bind(_Collections.create, name, **kwargs)
        assert re.match(r"^[A-Z][_0-9A-Za-z]*$", name), name
        if name in self.server.classes:
            raise RuntimeError(f"class name {name!r} already exists")
        vc = kwargs["vector_config"]
        assert vc.name == "default" and vc.vectorizer.vectorizer.value == "none"
        assert type(vc.vectorIndexConfig).__name__ == "VectorIndexConfigFlatCreate"
        assert vc.vectorIndexConfig.distance.value == "cosine"
        self.server.classes[name] = {
            "description": kwargs.get("description"),
            "props": {p.name: p.dataType.value for p in kwargs.get("properties") or []},
            "objects": {},
            "dim": None,
        }
        return FakeCollection(self.server, name)

    def delete(self, name: str) -> None:
        bind(_Collections.delete, name)
        self.server.classes.pop(name, None)


class FakeCollection:
    def __init__(self, server: FakeServer, name: str) -> None:
        self.server, self.name = server, name
        self.data = FakeData(self)
        self.query = FakeQuery(self)
        self.aggregate = FakeAggregate(self)
        self.config = FakeConfig(self)

    @property
    def cls(self) -> dict[str, Any]:
        if self.name not in self.server.classes:
            raise RuntimeError(f"could not find class {self.name} in schema")
        return self.server.classes[self.name]

    def with_consistency_level(self, consistency_level: Any) -> FakeCollection:
        bind(Collection.with_consistency_level, consistency_level)
        return self

    def iterator(self, include_vector: bool = False, return_metadata: Any = None, **kwargs: Any):
        bind(Collection.iterator, include_vector, return_metadata, **kwargs)
        objects = sorted(self.cls["objects"].items())
        return iter([self.view(u, o, kwargs.get("return_properties"), include_vector) for u, o in objects])

    def view(self, u: str, o: dict[str, Any], props: Any, vector: Any, distance: float | None = None) -> Any:
        keep = o["properties"] if props is None else {k: v for k, v in o["properties"].items() if k in props}
        return SimpleNamespace(
            uuid=uuid.UUID(u),
            properties=dict(keep),
            vector={"default": list(o["vector"])} if vector else {},
            metadata=SimpleNamespace(distance=distance),
        )

    def matches(self, wf: Any, u: str, props: dict[str, Any]) -> bool:
        if wf is None:
            return True
        op = wf.operator
        if op == _Operator.AND:
            return all(self.matches(x, u, props) for x in wf.filters)
        if op == _Operator.OR:
            return any(self.matches(x, u, props) for x in wf.filters)
        if op == _Operator.NOT:
            return not self.matches(wf.filters[0], u, props)
        if wf.target == "_id":
            assert op == _Operator.CONTAINS_ANY
            return u in wf.value
        dtype = self.cls["props"].get(wf.target)
        if dtype is None:
            raise RuntimeError(f"no such prop with name '{wf.target}' found in class '{self.name}'")
        value = wf.value
        if op == _Operator.LIKE:
            assert value == "*"
            return props.get(wf.target) is not None
        want = {"text": str, "number": float, "boolean": bool}[dtype]
        assert type(value) is want, (wf, dtype)  # Weaviate refuses a value of another type
        v = props.get(wf.target)
        if v is None:
            return False
        if dtype == "text":  # field tokenisation trims whitespace, and indexes nothing for blanks
            v, value = v.strip(), value.strip()
            if op == _Operator.EQUAL and not value:
                return False
        return {
            _Operator.EQUAL: v == value,
            _Operator.GREATER_THAN: v > value,
            _Operator.GREATER_THAN_EQUAL: v >= value,
            _Operator.LESS_THAN: v < value,
            _Operator.LESS_THAN_EQUAL: v <= value,
        }[op]

    def select(self, wf: Any) -> list[tuple[str, dict[str, Any]]]:
        return [(u, o) for u, o in sorted(self.cls["objects"].items()) if self.matches(wf, u, o["properties"])]


class FakeData:
    def __init__(self, coll: FakeCollection) -> None:
        self.coll = coll

    def insert_many(self, objects: list[Any]) -> Any:
        bind(_DataCollection.insert_many, objects)
        cls = self.coll.cls
        errors = {}
        for j, obj in enumerate(objects):
            uuid.UUID(obj.uuid)
            vec = obj.vector["default"]
            if cls["dim"] is None:
                cls["dim"] = len(vec)
            for k, v in obj.properties.items():
                dtype = cls["props"].get(k)
                want = {"text": str, "number": float, "boolean": bool}.get(dtype)
                if want is None or type(v) is not want:
                    errors[j] = SimpleNamespace(message=f"invalid property {k!r}: {v!r} ({dtype})")
            if len(vec) != cls["dim"]:
                errors[j] = SimpleNamespace(message=f"vector lengths don't match: {len(vec)} vs {cls['dim']}")
            if "REFUSE" in obj.properties.get("text", ""):
                errors[j] = SimpleNamespace(message="refused by the fake server")
            if j not in errors:
                cls["objects"][obj.uuid] = {"properties": dict(obj.properties), "vector": list(vec)}
        return SimpleNamespace(has_errors=bool(errors), errors=errors)

    def delete_many(self, where: Any, **kwargs: Any) -> Any:
        bind(_DataCollection.delete_many, where, **kwargs)
        doomed = self.coll.select(where)[: wv.MAX_RESULTS]
        for u, _ in doomed:
            del self.coll.cls["objects"][u]
        return SimpleNamespace(matches=len(doomed), successful=len(doomed), failed=0, objects=None)


class FakeQuery:
    def __init__(self, coll: FakeCollection) -> None:
        self.coll = coll

    def fetch_objects(self, **kwargs: Any) -> Any:
        bind(_QueryCollection.fetch_objects, **kwargs)
        limit = kwargs.get("limit") or 10
        assert limit <= wv.MAX_RESULTS
        self.coll.server.calls.append(("fetch_objects", kwargs.get("filters")))
        rows = self.coll.select(kwargs.get("filters"))[:limit]
        return SimpleNamespace(
            objects=[
                self.coll.view(u, o, kwargs.get("return_properties"), kwargs.get("include_vector")) for u, o in rows
            ]
        )

    def near_vector(self, near_vector: Any, **kwargs: Any) -> Any:
        bind(_QueryCollection.near_vector, near_vector, **kwargs)
        assert kwargs.get("target_vector") == "default"
        limit = kwargs.get("limit") or 10
        assert limit <= wv.MAX_RESULTS
        self.coll.server.calls.append(("near_vector", kwargs.get("filters")))
        q = np.asarray(near_vector, dtype=np.float64)
        scored = []
        for u, o in self.coll.select(kwargs.get("filters")):
            v = np.asarray(o["vector"], dtype=np.float64)
            scored.append((1.0 - float(v @ q / np.linalg.norm(v) / np.linalg.norm(q)), u, o))
        scored.sort(key=lambda t: t[0])
        props = kwargs.get("return_properties")
        return SimpleNamespace(objects=[self.coll.view(u, o, props, False, d) for d, u, o in scored[:limit]])


class FakeAggregate:
    def __init__(self, coll: FakeCollection) -> None:
        self.coll = coll

    def over_all(self, **kwargs: Any) -> Any:
        bind(_AggregateCollection.over_all, **kwargs)
        return SimpleNamespace(total_count=len(self.coll.select(kwargs.get("filters"))))


class FakeConfig:
    def __init__(self, coll: FakeCollection) -> None:
        self.coll = coll

    def get(self, simple: bool = False) -> Any:
        bind(_ConfigCollection.get, simple=simple)
        cls = self.coll.cls
        return SimpleNamespace(
            name=self.coll.name,
            description=cls["description"],
            properties=[SimpleNamespace(name=n, data_type=t) for n, t in cls["props"].items()],
        )

    def add_property(self, prop: Any) -> None:
        bind(_ConfigCollection.add_property, prop)
        if prop.name in self.coll.cls["props"]:
            raise RuntimeError(f"property {prop.name!r} already exists")
        assert prop.indexFilterable is True
        self.coll.cls["props"][prop.name] = prop.dataType.value


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    srv = FakeServer()

    real = weaviate.connect_to_custom

    def connect_to_custom(*args: Any, **kwargs: Any) -> FakeWeaviate:
        inspect.signature(real).bind(*args, **kwargs)
        srv.connects.append(kwargs)
        return FakeWeaviate(srv)

    monkeypatch.setattr(weaviate, "connect_to_custom", connect_to_custom)
    return srv


def open_store(**kw: Any) -> WeaviateVectorStore:
    return WeaviateVectorStore("https://weaviate.test", api_key="secret", prefix="Test", **kw)


@pytest.fixture
def store(server: FakeServer):
    s = open_store()
    yield s
    s.close()


def unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def truth(vectors, ids, q, k, keep=lambda j: True):
    s = unit(vectors) @ unit(q)
    return [ids[j] for j in np.argsort(-s, kind="stable") if keep(j)][:k]


# ---- the adapter against the fake --------------------------------------------------------------
def test_connection_settings_reach_the_client(server):
    with WeaviateVectorStore("http://weaviate.test:9000", grpc_port=50052, api_key="k", connect_timeout_s=3) as s:
        assert s.collections() == []
    kw = server.connects[0]
    assert (kw["http_host"], kw["http_port"], kw["http_secure"]) == ("weaviate.test", 9000, False)
    assert (kw["grpc_host"], kw["grpc_port"], kw["grpc_secure"]) == ("weaviate.test", 50052, False)
    assert kw["auth_credentials"].api_key == "k"
    assert kw["additional_config"].timeout.init == 3
    with open_store():
        assert server.connects[1]["http_secure"] is True and server.connects[1]["http_port"] == 443


def test_collections_carry_our_name_and_dimension(server, store):
    info = store.create_collection("docs", dim=DIM)
    store.create_collection("alpha", dim=3)
    cls = server.classes["Test_docs"]
    assert json.loads(cls["description"]) == {
        "lumina": 1,
        "name": "docs",
        "prefix": "Test",
        "dim": DIM,
        "metric": "cosine",
    }
    assert {"lumina_id", "text", "metadata_json"} <= set(cls["props"])
    FakeCollections(server).create("Other", vector_config=server_vc())  # someone else's collections
    FakeCollections(server).create("Test_foreign", description="not ours", vector_config=server_vc())
    assert [(c.name, c.dim) for c in store.collections()] == [("alpha", 3), ("docs", DIM)]
    assert store.create_collection("docs", dim=DIM) == info
    with pytest.raises(ValidationError, match="already exists"):
        store.create_collection("docs", dim=DIM, exist_ok=False)
    with pytest.raises(ValidationError, match="dim=8"):
        store.create_collection("docs", dim=16)
    with pytest.raises(StoreError, match="not created by Lumina Lab"):
        store.create_collection("foreign", dim=DIM)
    with open_store() as again:  # a new process: the dimension comes back from the description
        assert [(c.name, c.dim) for c in again.collections()] == [("alpha", 3), ("docs", DIM)]
        with pytest.raises(ValidationError, match="dimension is 8"):
            again.upsert("docs", ["a"], [np.ones(3)])
    store.drop_collection("alpha")
    assert "Test_alpha" not in server.classes
    with pytest.raises(CollectionNotFound, match="'alpha' does not exist") as err:
        store.count("alpha")
    assert "create it first" in str(err.value) and "docs" in str(err.value)
    with pytest.raises(CollectionNotFound, match="did you mean 'docs'"):
        store.search("DOCS", np.ones(DIM))


def server_vc() -> Any:
    from weaviate.classes.config import Configure, VectorDistances

    return Configure.Vectors.self_provided(
        name="default", vector_index_config=Configure.VectorIndex.flat(distance_metric=VectorDistances.COSINE)
    )


def test_items_round_trip_and_replace(server, store):
    store.create_collection("docs", dim=DIM)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, DIM))
    ids = [f"doc-{i:02d}" for i in range(20)]
    meta = [{"n": i, "tag": ["red", "blue"][i % 2], "even": i % 2 == 0} for i in range(20)]
    assert store.upsert("docs", ids, vectors, [f"text {i}" for i in range(20)], meta) == 20
    assert store.upsert("docs", ids, vectors, [f"text {i}" for i in range(20)], meta) == 20  # idempotent
    assert store.count("docs") == 20
    for qi in (0, 7):
        hits = store.search("docs", vectors[qi] + 0.1, k=5)
        assert [h.id for h in hits] == truth(vectors, ids, vectors[qi] + 0.1, 5)
        want = unit(vectors[[ids.index(h.id) for h in hits]]) @ unit(vectors[qi] + 0.1)
        assert [h.score for h in hits] == pytest.approx(list(want), abs=1e-6)
    top = store.search("docs", vectors[4], k=1)[0]
    assert (top.id, top.text, top.metadata) == ("doc-04", "text 4", meta[4])
    recs = store.get("docs", ["doc-10", "nope", "doc-02"], with_vectors=True)
    assert [r.id for r in recs] == ["doc-10", "doc-02"]
    assert np.allclose(recs[0].vector, unit(vectors[10]), atol=1e-6)
    store.upsert("docs", ["doc-00"], [vectors[19]], ["replaced"], [{"tag": 7}])
    (rec,) = store.get("docs", ["doc-00"])
    assert (rec.text, rec.metadata, rec.vector) == ("replaced", {"tag": 7}, None)
    assert store.count("docs", F.n == 0) == 0 and store.count("docs", F.tag == 7) == 1
    assert {h.id for h in store.search("docs", vectors[19], k=2)} == {"doc-00", "doc-19"}
    assert store.delete("docs", ["doc-00", "doc-01", "ghost"]) == 2
    assert store.delete("docs", where=F.tag == "red") == 9
    assert store.delete("docs", ["doc-03", "doc-05"], where=F.n == 3) == 1
    assert store.count("docs") == 8
    with pytest.raises(ValidationError, match="needs ids or a filter"):
        store.delete("docs")
    store.clear("docs")
    assert store.count("docs") == 0 and store.search("docs", np.ones(DIM), k=3) == []
    assert [c.name for c in store.collections()] == ["docs"]


def test_metadata_kinds_stay_apart(server, store):
    store.create_collection("docs", dim=DIM)
    meta = [{"n": 1}, {"n": True}, {"n": "1"}, {"n": 1.0}, {}, {"Odd key": " x "}]
    store.upsert("docs", [f"k{i}" for i in range(6)], np.eye(DIM)[:6], metadata=meta)
    props = server.classes["Test_docs"]["props"]
    assert {p: t for p, t in props.items() if re.match(r"^mx?_", p)} == {
        "m_n_n": "number",
        "m_n_b": "boolean",
        "m_n_s": "text",
        "mx_4f6464206b6579_s": "text",
    }
    assert store.count("docs", F.n == 1) == 2  # 1 and 1.0
    assert store.count("docs", F.n == True) == 1  # noqa: E712
    assert store.count("docs", F.n == "1") == 1
    assert store.count("docs", ~(F.n == 1)) == 4  # the absent key included
    assert store.count("docs", F["Odd key"] == "x") == 0  # Weaviate's trimmed match is re-checked
    assert store.count("docs", F["Odd key"] == " x ") == 1
    assert store.count("docs", F.never == 1) == 0
    assert store.search("docs", np.ones(DIM), k=3, where=F.never == 1) == []
    calls = len(server.calls)
    store.count("docs", F.never == 1)
    assert len(server.calls) == calls  # a key never stored needs no query at all


def test_keys_stored_by_another_client_are_found(server, store):
    store.create_collection("docs", dim=DIM)
    store.upsert("docs", ["a"], [np.ones(DIM)], metadata=[{"tag": "x"}])
    assert store.count("docs", F.fresh == 1) == 0  # "fresh" was never stored: nothing to ask
    with open_store() as other:  # e.g. another process
        other.upsert("docs", ["b"], [np.ones(DIM)], metadata=[{"fresh": 1}])
    assert store.count("docs", F.fresh == 1) == 1
    assert [h.id for h in store.search("docs", np.ones(DIM), k=5, where=F.fresh == 1)] == ["b"]


META = [
    {"n": 1, "b": True, "s": "1", "f": 1.0},
    {"n": True, "b": 1, "s": 1, "f": 1},
    {"n": 0, "b": False, "s": "a b", "f": 2.5},
    {"n": False, "b": 0, "s": " a b ", "f": -3},
    {"n": 2**53 + 1, "s": "é", "odd key": "x"},
    {"n": 2.5, "s": "true", "f": 10**400},
    {},
    {"n": "1", "b": "true", "s": "", "f": 1e20},
]
NUMBERS = [True, False, 0, 1, 2, 2.5, -3, 1.0, 2**53, 2**53 + 1, 1e20, 10**400]
POOL = [*NUMBERS, "1", "", " ", "a b", " a b ", "true", "é", "x"]
KEYS = ["n", "b", "s", "f", "odd key", "absent"]


def random_filter(rng: random.Random, depth: int = 0) -> Filter:
    r = rng.random()
    key = rng.choice(KEYS)
    if depth < 2 and r < 0.3:
        a, b = random_filter(rng, depth + 1), random_filter(rng, depth + 1)
        return a & b if rng.random() < 0.5 else a | b
    if depth < 2 and r < 0.4:
        return ~random_filter(rng, depth + 1)
    if r < 0.65:
        return F[key] == rng.choice(POOL)
    if r < 0.8:
        return F[key].isin(rng.sample(POOL, rng.randint(1, 3)))
    return getattr(F[key], rng.choice(["__gt__", "__ge__", "__lt__", "__le__"]))(rng.choice(POOL))


def test_filters_follow_the_reference_semantics_exactly(server, store):
    store.create_collection("docs", dim=DIM)
    rng = np.random.default_rng(1)
    n = 4 * len(META)
    vectors = rng.normal(size=(n, DIM))
    ids = [f"m{i:02d}" for i in range(n)]
    meta = [META[i % len(META)] for i in range(n)]
    store.upsert("docs", ids, vectors, metadata=meta)
    pick = random.Random(5)
    q = rng.normal(size=DIM)
    for _ in range(150):
        f = random_filter(pick)
        keep = [j for j in range(n) if f.matches(meta[j])]
        assert store.count("docs", f) == len(keep), f
        assert [h.id for h in store.search("docs", q, k=5, where=f)] == truth(vectors, ids, q, 5, keep.__contains__), f


def test_search_over_fetches_then_scans(server, store, monkeypatch):
    store.create_collection("docs", dim=DIM)
    rng = np.random.default_rng(2)
    n = 200
    q = unit(rng.normal(size=DIM))
    vectors = np.vstack([q + 0.05 * rng.normal(size=(n - 4, DIM)), rng.normal(size=(4, DIM))])
    ids = [f"v{i:03d}" for i in range(n)]
    store.upsert("docs", ids, vectors, metadata=[{"keep": i >= n - 4} for i in range(n)])
    where = ~(F.keep == False)  # noqa: E712 - checked in Python only
    want = truth(vectors, ids, q, 3, lambda j: j >= n - 4)
    assert [h.id for h in store.search("docs", q, k=3, where=where)] == want
    monkeypatch.setattr(wv, "MAX_RESULTS", 50)
    assert [h.id for h in store.search("docs", q, k=3, where=where)] == want
    assert [h.id for h in store.search("docs", q, k=60)] == truth(vectors, ids, q, 60)
    assert store.count("docs", F.keep == True) == 4  # noqa: E712
    assert store.count("docs", where) == 4
    store.clear("docs")  # delete_many removes at most MAX_RESULTS per call: clear loops
    assert store.count("docs") == 0


def test_refused_batches_and_closed_stores_are_store_errors(server, store):
    store.create_collection("docs", dim=DIM)
    with pytest.raises(StoreError, match="refused 1 of 2 items in 'docs': refused by the fake server"):
        store.upsert("docs", ["a", "b"], np.ones((2, DIM)), texts=["fine", "REFUSE"])
    with pytest.raises(ValidationError, match="NaN"):
        store.upsert("docs", ["c"], [np.full(DIM, np.nan)])
    server.classes.pop("Test_docs")  # dropped behind our back
    with pytest.raises(CollectionNotFound):
        store.count("docs")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.collections()
