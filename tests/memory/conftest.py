"""Fixtures shared by the memory tests: every vector-store backend behind one factory.

The contract suite (``test_vector_store_contract.py``) runs against each backend listed in
``BACKENDS``. Weaviate needs a server: it joins the list only when ``WEAVIATE_URL`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lumina_lab.memory.base import VectorStore

BACKENDS = ["memory", "duckdb", "duckdb-sealed", "milvus", "sharded"] + (["weaviate"] if os.environ.get("WEAVIATE_URL") else [])


def make_store(backend: str, root: Path, *, reopen: bool = False) -> VectorStore:
    """A store of ``backend`` whose files live under ``root`` (same files again when ``reopen``)."""
    if backend == "memory":
        from lumina_lab.memory.stores.memory import MemoryVectorStore

        return MemoryVectorStore()
    if backend == "duckdb":
        from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

        return DuckDBVectorStore(root / "vectors.duckdb", lease_s=0.05)
    if backend == "duckdb-sealed":  # texts and a metadata field encrypted at rest; the same contract
        from lumina_lab.memory.stores.duckdb import DuckDBVectorStore
        from lumina_lab.security import KeyRing

        ring = KeyRing.open(root / "keyring.json", create=True)
        return DuckDBVectorStore(root / "vectors.duckdb", lease_s=0.05, encryption=ring, sealed_metadata=["topic"])
    if backend == "milvus":
        from lumina_lab.memory.stores.milvus import MilvusVectorStore

        return MilvusVectorStore(uri=str(root / "milvus.db"))
    if backend == "sharded":  # three DuckDB files behind one hash-partitioned store
        from lumina_lab.memory.sharding import ShardedVectorStore
        from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

        return ShardedVectorStore([DuckDBVectorStore(root / f"shard{j}.duckdb", lease_s=0.05) for j in range(3)])
    if backend == "weaviate":
        from lumina_lab.memory.stores.weaviate import WeaviateVectorStore

        return WeaviateVectorStore(url=os.environ["WEAVIATE_URL"], prefix=f"T{root.name[-8:]}")
    raise AssertionError(backend)


PERSISTENT = {"duckdb", "milvus", "weaviate", "sharded"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> Iterator[Callable[..., VectorStore]]:
    """``store_factory()`` opens the backend's store on this test's files; closed at teardown."""
    opened: list[VectorStore] = []

    def factory(*, reopen: bool = False) -> VectorStore:
        s = make_store(backend, tmp_path, reopen=reopen)
        opened.append(s)
        return s

    yield factory
    for s in opened:
        try:
            if backend == "weaviate":
                for c in s.collections():
                    s.drop_collection(c.name)
            s.close()
        except Exception:
            pass


@pytest.fixture
def store(store_factory: Callable[..., VectorStore]) -> VectorStore:
    return store_factory()
