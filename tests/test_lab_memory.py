"""``lab.memory``: the configured store and embedder, with events in the lab's event log."""

from __future__ import annotations

import pytest

from lumina_lab import Lab
from lumina_lab.errors import ConfigError


def test_lab_memory_persists_under_home_and_logs_events(tmp_path):
    with Lab(profile="test", home=tmp_path, events={"store": "file"}) as lab:
        docs = lab.memory.collection("docs")
        docs.add(["the router picks a provider", "budgets cap spend"], metadata=[{"k": 1}, {"k": 2}])
        assert docs.search("provider routing", k=1)[0].text == "the router picks a provider"
        lab.sync()
        kinds = lab.query(type="memory.*")["type"].tolist()
        assert kinds == ["memory.written", "memory.searched"]
    assert (tmp_path / "memory" / "vectors.duckdb").exists()
    with Lab(profile="test", home=tmp_path) as lab:
        assert lab.memory.collection("docs").count() == 2


def test_lab_memory_shards_and_backends_come_from_settings(tmp_path):
    with Lab(profile="test", home=tmp_path, memory={"shards": 2, "embedder": "hashing:256"}) as lab:
        docs = lab.memory.collection("docs")
        docs.add([f"text {i}" for i in range(20)])
        assert docs.count() == 20
        assert [s.count("docs") > 0 for s in lab.memory.store.shards] == [True, True]
        assert lab.memory.embedder.dim == 256
    with pytest.raises(ConfigError, match="memory"):
        Lab(profile="test", home=tmp_path, memory={"backend": "pinecone"})
