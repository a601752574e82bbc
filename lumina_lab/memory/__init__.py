"""Memory: vector stores behind one protocol, embedders, keyword + hybrid search, sharding, caching.

>>> from lumina_lab.memory import VectorMemory, F
>>> mem = VectorMemory(backend="memory")
>>> docs = mem.collection("docs")
>>> _ = docs.add(["red apples", "green pears"], metadata=[{"n": 1}, {"n": 2}])
>>> docs.search("apples", k=1, where=F.n < 5)[0].text
'red apples'

Names are imported lazily, so ``import lumina_lab.memory`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # stores and their protocol
    "VectorStore": ".base",
    "CollectionInfo": ".base",
    "Hit": ".base",
    "Record": ".base",
    "MemoryVectorStore": ".stores.memory",
    "DuckDBVectorStore": ".stores.duckdb",
    "MilvusVectorStore": ".stores.milvus",
    "WeaviateVectorStore": ".stores.weaviate",
    "open_vector_store": ".stores",
    "ShardedVectorStore": ".sharding",
    "QueryCache": ".cache",
    # filters
    "F": ".filters",
    "Filter": ".filters",
    "parse_filter": ".filters",
    # text level
    "VectorMemory": ".collection",
    "Collection": ".collection",
    "SearchResults": ".collection",
    "KeywordIndex": ".keyword",
    "fuse": ".fusion",
    "rrf": ".fusion",
    "ingest": ".pipeline",
    "IngestReport": ".pipeline",
    "chunk": ".chunking",
    "Chunk": ".chunking",
    "detect_kind": ".chunking",
    "KINDS": ".chunking",
    # conversation memory
    "ConversationMemory": ".conversation",
    "Recall": ".conversation",
    "Recalled": ".conversation",
    "RecallConfig": ".retrieval",
    "Retriever": ".retrieval",
    "SemanticGraph": ".graph",
    "extract_entities": ".entities",
    "parse_dates": ".entities",
    "Entity": ".entities",
    "DateSpan": ".entities",
    "MemoryRemembered": ".conversation_events",
    "MemoryRecalled": ".conversation_events",
    # consolidation, topics, compression
    "TopicModel": ".topics",
    "Topic": ".topics",
    "MemoryItem": ".consolidation",
    "consolidate": ".consolidation",
    "ConsolidationReport": ".consolidation",
    "Merge": ".consolidation",
    "Supersession": ".consolidation",
    "Summarizer": ".consolidation",
    "ExtractiveSummarizer": ".consolidation",
    "LLMSummarizer": ".consolidation",
    "recency_weight": ".consolidation",
    "compress": ".compression",
    "Compressed": ".compression",
    "CompressionEvaluator": ".compression",
    "evaluate_compression": ".compression",
    "plot_compression_curve": ".compression",
    "STRATEGIES": ".compression",
    # embedders
    "Embedder": ".embeddings",
    "HashingEmbedder": ".embeddings",
    "CachedEmbedder": ".embeddings",
    "embedder_from": ".embeddings",
    "embed_batched": ".embeddings",
    "EMBEDDER_SPECS": ".embeddings",
    "DiskCachedEmbedder": ".embed_cache",
    "MiniLMEmbedder": ".minilm",
    "LangChainEmbedder": ".lc_embeddings",
    "as_langchain": ".lc_embeddings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lumina_lab.memory' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
