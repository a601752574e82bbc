"""Vector-store backends behind one :class:`~lumina_lab.memory.base.VectorStore` protocol.

``memory`` (numpy, this process), ``duckdb`` (the default: one file under ``LUMINA_HOME``),
``milvus`` (pymilvus: Milvus Lite file or a server URI) and ``weaviate`` (weaviate-client v4).
Backends import their client libraries only when opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..base import VectorStore

__all__ = ["BACKENDS", "open_vector_store"]

BACKENDS = ("memory", "duckdb", "milvus", "weaviate")


def open_vector_store(backend: str = "duckdb", **options: Any) -> VectorStore:
    """Open a backend by name with its options (see each class for what it accepts).

    >>> open_vector_store("memory")
    MemoryVectorStore('memory', collections: none)
    """
    from ...errors import ConfigError

    if backend == "memory":
        from .memory import MemoryVectorStore

        return MemoryVectorStore(**options)
    if backend == "duckdb":
        from .duckdb import DuckDBVectorStore

        return DuckDBVectorStore(**options)
    if backend == "milvus":
        from .milvus import MilvusVectorStore

        return MilvusVectorStore(**options)
    if backend == "weaviate":
        from .weaviate import WeaviateVectorStore

        return WeaviateVectorStore(**options)
    raise ConfigError(
        f"vector store backend {backend!r} is unknown",
        key="memory.backend",
        value=backend,
        allowed=", ".join(BACKENDS),
        hint=f"use one of {', '.join(BACKENDS)}",
    )
