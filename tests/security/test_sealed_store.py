"""The DuckDB vector store with ``encryption=``: texts (and listed metadata) sealed in the file,
searchable as before, re-wrappable, unreadable without the key ring."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lumina_lab.errors import DecryptionError, StoreError, ValidationError
from lumina_lab.memory.collection import VectorMemory
from lumina_lab.memory.conversation import ConversationMemory
from lumina_lab.memory.embeddings import HashingEmbedder
from lumina_lab.memory.stores.duckdb import DuckDBVectorStore
from lumina_lab.security import KeyRing, key_id_of

SECRET = "Ann's passport number is X1234567"


def _raw(path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())


def test_texts_and_listed_metadata_are_sealed_in_the_file_and_open_in_memory(tmp_path):
    ring = KeyRing.generate(path=tmp_path / "k.json")
    db = tmp_path / "v.duckdb"
    store = DuckDBVectorStore(db, encryption=ring, sealed_metadata=["email"])
    store.create_collection("notes", 4)
    store.upsert("notes", ["a", "b"], np.eye(4)[:2], [SECRET, "hello"], [{"email": "ann@example.org", "n": 1}, {}])
    assert store.get("notes", ["a"])[0].text == SECRET
    assert [h.id for h in store.search("notes", np.eye(4)[0], k=1, where={"email": "ann@example.org"})] == ["a"]
    raw = store.sql("SELECT text, metadata::VARCHAR AS m FROM c_notes ORDER BY id")
    assert all(t.startswith("lx1:") for t in raw.text) and "ann@example.org" not in raw.m[0] and '"n": 1' in raw.m[0]
    store.close()
    blob = _raw(db)
    assert b"X1234567" not in blob and b"ann@example.org" not in blob

    again = DuckDBVectorStore(db, encryption=KeyRing.open(tmp_path / "k.json"))
    rec = again.get("notes", ["a"])[0]
    assert rec.text == SECRET and rec.metadata == {"email": "ann@example.org", "n": 1}
    again.close()


def test_without_the_key_ring_the_texts_stay_sealed_and_a_warning_says_why(tmp_path, caplog):
    db = tmp_path / "v.duckdb"
    store = DuckDBVectorStore(db, encryption=KeyRing.generate())
    store.create_collection("notes", 4)
    store.upsert("notes", ["a"], np.eye(4)[:1], [SECRET])
    store.close()
    with caplog.at_level(logging.WARNING):
        plain = DuckDBVectorStore(db)
        assert plain.get("notes", ["a"])[0].text.startswith("lx1:")
    assert "sealed" in caplog.text and "encryption=KeyRing" in caplog.text
    plain.close()
    with pytest.raises(DecryptionError, match="not in the key ring"):
        DuckDBVectorStore(db, encryption=KeyRing.generate()).get("notes", ["a"])


def test_rotate_rewrap_retire_keeps_every_value_readable(tmp_path):
    path = tmp_path / "k.json"
    ring = KeyRing.generate(path=path)
    db = tmp_path / "v.duckdb"
    store = DuckDBVectorStore(db, encryption=ring, sealed_metadata=["email"])
    store.create_collection("notes", 4)
    store.upsert("notes", ["a", "b"], np.eye(4)[:2], [SECRET, "hello"], [{"email": "a@x.org"}, {"email": "b@x.org"}])
    old = ring.active
    ring.rotate()
    store.upsert("notes", ["c"], np.eye(4)[2:3], ["new"], [{"email": "c@x.org"}])  # sealed with the new key
    assert store.rewrap() == 4  # two texts and two emails were under the old key
    assert store.rewrap() == 0
    ring.retire(old)
    store.close()
    again = DuckDBVectorStore(db, encryption=KeyRing.open(path))
    assert [r.text for r in again.get("notes", ["a", "b", "c"])] == [SECRET, "hello", "new"]
    assert [r.metadata["email"] for r in again.get("notes", ["a", "b", "c"])] == ["a@x.org", "b@x.org", "c@x.org"]
    raw = again.sql("SELECT text FROM c_notes")
    assert {key_id_of(t) for t in raw.text} == {ring.active}
    again.close()


def test_a_conversation_memory_on_a_sealed_store_recalls_as_before(tmp_path):
    ring = KeyRing.generate(path=tmp_path / "k.json")
    turns = [
        {"speaker": "Ann", "text": "I moved from Sweden four years ago.", "dia_id": "D1:1"},
        {"speaker": "Bob", "text": "My passport number is X1234567.", "dia_id": "D1:2"},
        {"speaker": "Ann", "text": "We adopted a beagle called Rex.", "dia_id": "D1:3"},
    ]

    def open_mem(keys):
        store = DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0.05, encryption=keys)
        return ConversationMemory(VectorMemory(store, embedder=HashingEmbedder(dim=64)), name="chat", graph_path=False)

    mem = open_mem(ring)
    mem.remember_many(turns, session="1", ts="2023-05-08")
    before = mem.recall("What is Bob's passport number?", k=2)
    mem.memory.close()
    assert b"X1234567" not in _raw(tmp_path / "v.duckdb")
    again = open_mem(KeyRing.open(tmp_path / "k.json"))
    after = again.recall("What is Bob's passport number?", k=2)
    assert after.ids == before.ids and after[0].text == "Bob: My passport number is X1234567."
    again.memory.close()


def test_the_semantic_graph_file_of_a_sealed_memory_is_sealed_too(tmp_path, monkeypatch):
    ring = KeyRing.generate(path=tmp_path / "k.json")
    graph_file = tmp_path / "chat.graph.json"

    def open_mem(keys):
        store = DuckDBVectorStore(tmp_path / "v.duckdb", lease_s=0.05, encryption=keys)
        return ConversationMemory(
            VectorMemory(store, embedder=HashingEmbedder(dim=64)), name="chat", graph_path=graph_file
        )

    mem = open_mem(ring)
    mem.remember_many(
        [{"speaker": "Bob", "text": "I moved to Reykjavik with my passport X1234567.", "dia_id": "D1:1"}],
        session="1",
        ts="2023-05-08",
    )
    mem.memory.close()
    text = graph_file.read_text()
    assert text.startswith("lx1:") and "Reykjavik" not in text and "X1234567" not in text

    def rebuilt(*_: object) -> None:
        raise AssertionError("the graph was rebuilt instead of read from its sealed file")

    monkeypatch.setattr(ConversationMemory, "_graph_item", rebuilt)
    again = open_mem(KeyRing.open(tmp_path / "k.json"))
    assert [n.id for n in again.graph.about("Reykjavik")] == ["item:D1:1"]
    again.memory.close()


def test_bad_encryption_options_are_named(tmp_path):
    with pytest.raises(ValidationError, match="encryption must be a KeyRing or a Sealer, not str"):
        DuckDBVectorStore(tmp_path / "a.duckdb", encryption="secret")
    with pytest.raises(ValidationError, match="sealed_metadata needs encryption"):
        DuckDBVectorStore(tmp_path / "b.duckdb", sealed_metadata=["email"])
    with pytest.raises(ValidationError, match="list of field names"):
        DuckDBVectorStore(tmp_path / "c.duckdb", encryption=KeyRing.generate(), sealed_metadata="email")
    plain = DuckDBVectorStore(tmp_path / "d.duckdb")
    with pytest.raises(StoreError, match="has no encryption"):
        plain.rewrap()
    plain.close()
