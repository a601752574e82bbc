"""Memory: text embedders (and, later, vector stores built on them).

>>> from lumina_lab.memory import HashingEmbedder
>>> HashingEmbedder(dim=64).embed(["hello world"]).shape
(1, 64)
"""

from __future__ import annotations

from .embeddings import CachedEmbedder, Embedder, HashingEmbedder

__all__ = ["CachedEmbedder", "Embedder", "HashingEmbedder"]
