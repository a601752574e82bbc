"""KeywordIndex: BM25 ranking (checked against the formula), upserts and deletes seen by the very next
search, filtered search that still fills k, deterministic ties, persistence, and every bad input."""

from __future__ import annotations

import doctest
import json
import math
import random
import threading

import pytest

import lumina_lab.memory.keyword as keyword_module
from lumina_lab.errors import StoreError, ValidationError
from lumina_lab.memory.keyword import KeywordIndex

pytestmark = pytest.mark.timeout(60)

ANIMALS = {
    "a1": "The animal shelter takes in every animal: dogs, cats and rabbits.",
    "a2": "A quokka is a small animal found on Rottnest Island.",
    "a3": "Animal welfare laws protect animal rights; animal care matters.",
    "a4": "Dogs are loyal animals and cats are independent ones.",
    "a5": "The zoo keeps one animal of every kind.",
}


def _ids(hits: list[tuple[str, float]]) -> list[str]:
    return [doc_id for doc_id, _ in hits]


def _index(docs: dict[str, str], **kw) -> KeywordIndex:
    idx = KeywordIndex(**kw)
    idx.add(list(docs), list(docs.values()))
    return idx


def test_doc_with_the_rare_query_term_ranks_first() -> None:
    idx = _index(ANIMALS)
    hits = idx.search("animal quokka", k=10)
    assert _ids(hits)[0] == "a2"  # "quokka" is in one document only; "animal" is everywhere
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(s > 0 for s in scores)
    assert "a4" not in _ids(hits)  # "animals" is another token (no stemming by default)
    assert _ids(idx.search("quokka")) == ["a2"]


def test_scores_follow_the_bm25_formula() -> None:
    idx = _index({"d1": "apple banana apple", "d2": "banana cherry", "d3": "cherry durian elderberry fig"})
    k1, b, n, avgdl = 1.5, 0.75, 3, 3.0

    def term(df: int, tf: int, dl: int) -> float:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))

    [(doc, score)] = idx.search("apple")
    assert doc == "d1" and score == pytest.approx(term(1, 2, 3), rel=1e-6)

    hits = idx.search("banana cherry")
    assert _ids(hits) == ["d2", "d1", "d3"]
    expected = [term(2, 1, 2) + term(2, 1, 2), term(2, 1, 3), term(2, 1, 4)]
    assert [s for _, s in hits] == pytest.approx(expected, rel=1e-6)
    # a repeated query term counts once
    assert idx.search("banana banana cherry") == hits


def test_upsert_replaces_the_text() -> None:
    idx = _index(ANIMALS)
    g = idx.generation
    idx.add(["a2"], ["A wombat digs burrows."])
    assert idx.generation == g + 1 and idx.stale
    assert idx.search("quokka") == []  # the old text no longer matches
    assert _ids(idx.search("wombat")) == ["a2"]
    assert not idx.stale
    assert len(idx) == 5 and idx.get("a2") == "A wombat digs burrows."
    # the same text again changes nothing (no new generation, no rebuild)
    idx.add(["a2"], ["A wombat digs burrows."])
    assert idx.generation == g + 1 and not idx.stale
    # a repeated id inside one call: the last text wins
    idx.add(["n", "n"], ["first numbat", "second bilby"])
    assert idx.search("numbat") == [] and _ids(idx.search("bilby")) == ["n"]


def test_remove_and_clear() -> None:
    idx = _index(ANIMALS)
    assert "a2" in idx and 42 not in idx
    assert idx.remove(["a2", "nope"]) == 1
    assert "a2" not in idx and len(idx) == 4
    assert idx.search("quokka") == []
    assert "a2" not in _ids(idx.search("animal", k=10))
    g = idx.generation
    assert idx.remove(["a2"]) == 0 and idx.generation == g  # nothing removed: no new generation
    idx.clear()
    assert len(idx) == 0 and idx.search("animal") == [] and idx.generation == g + 1
    idx.add(["z"], ["zebra"])
    assert _ids(idx.search("zebra")) == ["z"]


def test_allowed_filter_still_returns_k_allowed_hits() -> None:
    docs = {f"hot{i:02d}": "apple " * 5 + f"filler{i}" for i in range(30)}  # the best matches, all disallowed
    docs |= {f"ok{i:02d}": f"apple pie number{i} with a long tail of other words here" for i in range(8)}
    docs |= {f"no{i:02d}": f"banana bread {i}" for i in range(40)}  # no match at all
    idx = _index(docs)
    top = idx.search("apple", k=5)
    assert all(doc.startswith("hot") for doc in _ids(top))

    allowed = {f"ok{i:02d}" for i in range(8)} | {"no00", "missing-id"}
    hits = idx.search("apple", k=5, allowed=allowed)  # few allowed ids: looked up directly
    assert len(hits) == 5 and all(doc.startswith("ok") for doc in _ids(hits))
    assert _ids(hits) == sorted(_ids(hits))  # the "ok" docs tie, so ids order them
    assert len(idx.search("apple", k=50, allowed=allowed)) == 8  # every allowed match, nothing else

    many = set(docs) - {f"hot{i:02d}" for i in range(30)}  # more allowed ids than matching docs
    assert idx.search("apple", k=5, allowed=many) == hits
    assert idx.search("apple", k=5, allowed=frozenset()) == []
    assert idx.search("apple", k=5, allowed=list(allowed)) == hits  # any collection of ids
    with pytest.raises(ValidationError, match="single str"):
        idx.search("apple", allowed="ok00")


def test_ties_are_broken_by_id() -> None:
    idx = KeywordIndex()
    ids = ["m", "c", "x", "a", "q"]
    idx.add(ids, ["same words here"] * 5)
    hits = idx.search("words", k=5)
    assert _ids(hits) == ["a", "c", "m", "q", "x"]
    assert len({s for _, s in hits}) == 1
    assert _ids(idx.search("words", k=2)) == ["a", "c"]  # the cut keeps the smallest ids among ties
    other = KeywordIndex()
    other.add(list(reversed(ids)), ["same words here"] * 5)
    assert other.search("words", k=3) == idx.search("words", k=3)


def test_tokenisation_case_unicode_stopwords_and_stemming() -> None:
    idx = _index({"z": "Zürich's café — 中文 text", "s": "The cats are sleeping"})
    assert _ids(idx.search("ZÜRICH")) == ["z"]
    assert _ids(idx.search("Café")) == ["z"]
    assert _ids(idx.search("中文")) == ["z"]
    assert idx.search("the are") == []  # stopwords only
    assert idx.search("cat") == []  # no stemming by default
    assert idx.tokenize("The Cats, the DOGS!") == ["cats", "dogs"]

    keep_all = _index({"s": "The cats are sleeping"}, stopwords=None)
    assert _ids(keep_all.search("the")) == ["s"]
    custom = _index({"s": "The cats are sleeping"}, stopwords=["CATS"])
    assert custom.search("cats") == [] and _ids(custom.search("the")) == ["s"]

    def stem(word: str) -> str:
        return word.removesuffix("s")

    stemmed = _index({"s": "The cats are sleeping", "d": "one dog"}, stemmer=stem)
    assert _ids(stemmed.search("cat")) == ["s"]
    assert _ids(stemmed.search("dogs")) == ["d"]


def test_empty_and_degenerate_inputs() -> None:
    idx = KeywordIndex()
    assert idx.search("anything") == [] and len(idx) == 0
    idx.add([], [])
    assert idx.generation == 0
    idx.add(["e", "f"], ["", "the and of"])  # documents with no terms at all
    assert idx.search("the") == [] and idx.search("") == []
    idx.add(["g"], ["gecko"])
    assert _ids(idx.search("gecko")) == ["g"]
    assert idx.search("unknownword") == []
    assert idx.search("!!! ...") == []


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "3"])
def test_bad_k_is_a_validation_error_with_a_hint(k) -> None:
    idx = _index(ANIMALS)
    with pytest.raises(ValidationError) as err:
        idx.search("animal", k=k)
    assert "k=" in str(err.value) and err.value.hint


def test_bad_documents_are_refused_and_change_nothing() -> None:
    idx = _index(ANIMALS)
    g = idx.generation
    with pytest.raises(ValidationError, match="'bad'") as err:
        idx.add(["ok", "bad"], ["fine text", None])
    assert "NoneType" in str(err.value) and err.value.hint
    assert "ok" not in idx and idx.generation == g  # validated before any change
    with pytest.raises(ValidationError, match="#1"):
        idx.add(["x", 7], ["a", "b"])
    with pytest.raises(ValidationError, match="2 ids but 1 texts"):
        idx.add(["x", "y"], ["a"])
    with pytest.raises(ValidationError, match="single str"):
        idx.add("x", "some text")
    with pytest.raises(ValidationError, match="single str"):
        idx.remove("a1")
    with pytest.raises(ValidationError, match="query"):
        idx.search(["animal"])  # type: ignore[arg-type]
    for kw in ({"stopwords": "klingon"}, {"k1": -1}, {"b": 2}, {"method": "bm25+"}, {"stemmer": 3}):
        with pytest.raises(ValidationError):
            KeywordIndex(**kw)


def test_save_load_round_trip(tmp_path) -> None:
    idx = _index(ANIMALS, stopwords=["dogs", "the"], k1=1.2, b=0.5)
    idx.remove(["a5"])
    path = idx.save(tmp_path / "sub" / "kw.json")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["kw.json"]  # no temporary file left

    back = KeywordIndex.load(path)
    assert len(back) == 4 and back.ids() == idx.ids()
    assert (back.k1, back.b, back.stopwords) == (1.2, 0.5, frozenset({"dogs", "the"}))
    for query in ("animal quokka", "cats", "dogs", "animal"):
        assert back.search(query, k=10) == idx.search(query, k=10)
    assert back.generation == idx.generation

    back.add(["a9"], ["a platypus"])
    back.save(path)  # overwrite in place
    assert _ids(KeywordIndex.load(path).search("platypus")) == ["a9"]
    assert len(KeywordIndex.load(path)) == 5

    empty = KeywordIndex(stopwords=None)
    assert KeywordIndex.load(empty.save(tmp_path / "empty.json")).search("x") == []


def test_load_refuses_missing_or_foreign_files(tmp_path) -> None:
    with pytest.raises(StoreError, match="cannot read"):
        KeywordIndex.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StoreError, match="cannot read"):
        KeywordIndex.load(bad)
    bad.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(StoreError, match="not a keyword index"):
        KeywordIndex.load(bad)
    good = _index(ANIMALS).save(tmp_path / "good.json")
    payload = json.loads(good.read_text())
    payload["version"] = 99
    bad.write_text(json.dumps(payload))
    with pytest.raises(StoreError, match="version 99"):
        KeywordIndex.load(bad)
    payload["version"] = 1
    payload["texts"] = payload["texts"][:-1]
    bad.write_text(json.dumps(payload))
    with pytest.raises(StoreError, match="damaged"):
        KeywordIndex.load(bad)


def test_churn_matches_a_fresh_index(monkeypatch) -> None:
    """After many upserts and deletes (and vocabulary compactions) results equal a fresh build's."""
    monkeypatch.setattr(keyword_module, "_MIN_GARBAGE", 0)
    compactions = []
    real_compact = KeywordIndex._compact

    def spy(self: KeywordIndex) -> None:
        compactions.append(len(self._vocab))
        real_compact(self)

    monkeypatch.setattr(KeywordIndex, "_compact", spy)
    rng = random.Random(7)
    idx = KeywordIndex()
    live: dict[str, str] = {}
    for step in range(30):
        ids = [f"d{rng.randrange(60)}" for _ in range(40)]
        texts = [" ".join(f"w{rng.randrange(step * 20, step * 20 + 40)}" for _ in range(6)) for _ in ids]
        idx.add(ids, texts)
        live.update(zip(ids, texts, strict=True))
        gone = [f"d{rng.randrange(60)}" for _ in range(10)]
        idx.remove(gone)
        for g in gone:
            live.pop(g, None)
        idx.search("w1")  # rebuild (and compact) on the way
    assert compactions  # the vocabulary of replaced texts was dropped
    fresh = _index(live)
    assert len(idx) == len(fresh) and idx.ids() != []
    assert len(idx._vocab) <= 2 * len(fresh._vocab) + 1
    for query in ("w560 w561", "w570", "w599 w580 w550", "w1", "w540 w541 w542 w543"):
        assert idx.search(query, k=20) == fresh.search(query, k=20)
    assert idx.search("w560 w561 w570", k=20)  # the comparison is not between two empty lists


def test_large_index_with_filter() -> None:
    rng = random.Random(1)
    vocab = [f"t{i}" for i in range(2000)]
    n = 20_000
    ids = [f"doc{i:05d}" for i in range(n)]
    idx = KeywordIndex()
    idx.add(ids, [" ".join(rng.choice(vocab) for _ in range(10)) for _ in range(n)])
    idx.add(["needle"], ["t1 t2 zzrare"])
    assert _ids(idx.search("zzrare t1", k=5))[0] == "needle"
    even = set(ids[::2])
    hits = idx.search("t1 t2 t3", k=25, allowed=even)
    assert len(hits) == 25 and set(_ids(hits)) <= even
    unrestricted = [h for h in idx.search("t1 t2 t3", k=n) if h[0] in even][:25]
    assert hits == unrestricted


def test_concurrent_writes_and_searches() -> None:
    idx = KeywordIndex()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(50):
                idx.add([f"w{w}-{i}"], [f"shared token{w} item{i}"])
                if i % 5 == 0:
                    idx.remove([f"w{w}-{i - 1}"])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(50):
                for doc_id, score in idx.search("shared", k=5):
                    assert score > 0 and isinstance(doc_id, str)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)] + [
        threading.Thread(target=reader) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(idx.search("shared", k=1000)) == len(idx) == 3 * (50 - 9)


def test_module_examples() -> None:
    result = doctest.testmod(keyword_module)
    assert result.attempted > 0 and result.failed == 0
