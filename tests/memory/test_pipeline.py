"""The ingest pipeline: chunks with provenance, resumable after a failure, stale chunks removed."""

from __future__ import annotations

import numpy as np
import pytest

from lumina_lab.errors import ValidationError
from lumina_lab.memory import F, HashingEmbedder, VectorMemory, ingest
from lumina_lab.memory.stores.duckdb import DuckDBVectorStore

DOC = " ".join(f"Sentence {i} talks about topic {i % 7} in some detail." for i in range(60))


class FlakyEmbedder:
    """Fails on the n-th embed call, like a remote embedding API dropping the connection."""

    def __init__(self, fail_on: int) -> None:
        self.inner = HashingEmbedder(dim=64)
        self.dim = 64
        self.identity = "flaky"
        self.calls = 0
        self.fail_on = fail_on
        self.embedded = 0

    def embed(self, texts):
        self.calls += 1
        if self.calls == self.fail_on:
            raise ConnectionError("embedding service went away")
        self.embedded += len(texts)
        return self.inner.embed(texts)

    def embed_one(self, text):
        return self.embed([text])[0]


def test_chunks_carry_provenance_and_rerun_skips_what_is_stored():
    docs = VectorMemory(backend="memory", embedder=HashingEmbedder(dim=64)).collection("docs")
    report = ingest(docs, [("a", DOC, {"source": "test"})], size=40, overlap=8)
    assert report.documents == 1 and report.chunks > 5 and report.written == report.chunks
    rec = docs.get(["a#0"])[0]
    assert rec.metadata["doc_id"] == "a" and rec.metadata["chunk"] == 0 and rec.metadata["source"] == "test"
    assert DOC[rec.metadata["start"] : rec.metadata["end"]] == rec.text
    again = ingest(docs, [("a", DOC, {"source": "test"})], size=40, overlap=8)
    assert (again.written, again.skipped) == (0, report.chunks)
    assert "IngestReport(1 documents" in repr(again)


def test_a_failed_run_resumes_where_it_stopped(tmp_path):
    store_path = tmp_path / "v.duckdb"
    flaky = FlakyEmbedder(fail_on=3)
    docs = VectorMemory(DuckDBVectorStore(store_path), embedder=flaky).collection("docs")
    texts = [(f"doc{i}", DOC + f" Extra {i}.") for i in range(6)]
    with pytest.raises(ConnectionError):
        ingest(docs, texts, size=40, overlap=0, batch_size=20)
    stored = docs.count()
    assert stored == 40  # two whole batches landed before the failure
    fresh = FlakyEmbedder(fail_on=-1)
    docs2 = VectorMemory(DuckDBVectorStore(store_path), embedder=fresh).collection("docs")
    report = ingest(docs2, texts, size=40, overlap=0, batch_size=20)
    assert report.skipped == stored and report.written == report.chunks - stored
    assert fresh.embedded == report.written  # nothing embedded twice
    assert docs2.count() == report.chunks


def test_a_shorter_new_version_removes_stale_chunks():
    docs = VectorMemory(backend="memory", embedder=HashingEmbedder(dim=64)).collection("docs")
    first = ingest(docs, [("a", DOC)], size=40, overlap=0)
    second = ingest(docs, [("a", DOC[:200])], size=40, overlap=0)
    assert second.deleted == first.chunks - second.chunks
    assert docs.count(F.doc_id == "a") == second.chunks


def test_documents_in_every_accepted_shape():
    from langchain_core.documents import Document

    docs = VectorMemory(backend="memory", embedder=HashingEmbedder(dim=64)).collection("docs")
    report = ingest(
        docs,
        [
            "plain text",
            ("t", "a tuple"),
            {"id": "d", "text": "a dict", "metadata": {"k": 1}},
            Document(page_content="a langchain document", metadata={"source": "lc.txt", "page": 3, "tags": ["x"]}),
        ],
    )
    assert report.documents == 4 and report.written == 4
    assert docs.get(["lc.txt#0"])[0].metadata["page"] == 3
    with pytest.raises(ValidationError, match="document 0 is a int"):
        ingest(docs, [3])
    assert np.isfinite(report.seconds)
