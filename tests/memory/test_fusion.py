"""Rank fusion: RRF and weighted score fusion on hand-computed examples (exact numbers), deterministic ties,
every bad input a ValidationError, and a hybrid example where fusion beats either list alone."""

from __future__ import annotations

import doctest
import math

import pytest

import lumina_lab.memory.fusion as fusion_module
from lumina_lab.errors import ValidationError
from lumina_lab.memory.fusion import MODES, NORMALISATIONS, Fused, fuse, rrf, weighted
from lumina_lab.memory.keyword import KeywordIndex

pytestmark = pytest.mark.timeout(30)

VECTOR = [("a", 0.9), ("b", 0.8), ("c", 0.5), ("d", 0.1)]
KEYWORD = [("c", 10.0), ("e", 6.0), ("a", 2.0)]


def _rows(fused: list[Fused]) -> list[tuple[str, float]]:
    return [(f.id, f.score) for f in fused]


def test_rrf_hand_computed() -> None:
    out = rrf([VECTOR, KEYWORD])  # k = 60
    expected = {
        "a": 1 / 61 + 1 / 63,
        "c": 1 / 63 + 1 / 61,
        "b": 1 / 62,
        "e": 1 / 62,
        "d": 1 / 64,
    }
    # a and c tie exactly (ranks 1+3 and 3+1) and share best rank 1: the id decides; b and e likewise
    assert [f.id for f in out] == ["a", "c", "b", "e", "d"]
    for f in out:
        assert f.score == pytest.approx(expected[f.id], rel=1e-15, abs=0)
    assert out[0].ranks == {0: 1, 1: 3}
    assert out[3].ranks == {0: None, 1: 2}
    assert out[4].ranks == {0: 4, 1: None}


def test_rrf_k_weights_and_names() -> None:
    out = rrf({"vec": VECTOR, "kw": KEYWORD}, k=0, weights={"vec": 2.0, "kw": 1.0})
    expected = {"a": 2 / 1 + 1 / 3, "c": 2 / 3 + 1 / 1, "b": 2 / 2, "e": 1 / 2, "d": 2 / 4}
    # d and e tie at 0.5: e's best rank (2) beats d's (4)
    assert [f.id for f in out] == ["a", "c", "b", "e", "d"]
    assert {f.id: f.score for f in out} == pytest.approx(expected, rel=1e-15)
    assert out[3].score == out[4].score
    assert out[0].ranks == {"vec": 1, "kw": 3}


def test_rrf_limit_duplicates_and_zero_weights() -> None:
    assert _rows(rrf([VECTOR, KEYWORD], limit=2)) == _rows(rrf([VECTOR, KEYWORD]))[:2]
    assert rrf([VECTOR], limit=0) == []
    # a repeated id counts at its first (best) rank only; later positions keep their own ranks
    out = rrf([[("x", 3.0), ("y", 2.0), ("x", 1.0)]])
    assert _rows(out) == [("x", 1 / 61), ("y", 1 / 62)]
    # ids only in a zero-weight list are dropped, but their ranks are still reported for the others
    out = rrf([VECTOR, KEYWORD], weights=[1, 0])
    assert [f.id for f in out] == ["a", "b", "c", "d"]
    assert out[0].score == 1 / 61 and out[0].ranks == {0: 1, 1: 3}
    assert rrf([[], []]) == []


def test_weighted_minmax_hand_computed() -> None:
    # vector normalised: a 1, b 0.875, c 0.5, d 0;  keyword: c 1, e 0.5, a 0
    out = weighted([VECTOR, KEYWORD], weights=[0.6, 0.4])
    expected = [
        ("a", 0.6 * 1.0 + 0.4 * 0.0),  # 0.6
        ("c", 0.6 * 0.5 + 0.4 * 1.0),  # 0.7
        ("b", 0.6 * 0.875),  # 0.525
        ("e", 0.4 * 0.5),  # 0.2
        ("d", 0.0),
    ]
    assert [f.id for f in out] == ["c", "a", "b", "e", "d"]
    assert {f.id: f.score for f in out} == pytest.approx(dict(expected), rel=1e-12, abs=1e-15)
    assert out[0].ranks == {0: 3, 1: 1}
    # a list whose scores are all equal (here one hit) maps them to 1
    assert _rows(weighted([[("solo", 3.0)], [("p", 2.0), ("q", 2.0)]])) == [("p", 1.0), ("solo", 1.0), ("q", 1.0)]


def test_weighted_zscore_and_none() -> None:
    vec = [("a", 3.0), ("b", 2.0), ("c", 1.0)]  # mean 2, population std sqrt(2/3)
    kw = [("c", 4.0), ("d", 0.0)]  # mean 2, std 2
    z = math.sqrt(2 / 3)
    out = weighted([vec, kw], normalise="zscore")
    scores = {f.id: f.score for f in out}
    assert scores == pytest.approx({"a": 1 / z, "b": 0.0, "c": -1 / z + 1.0, "d": -1.0}, abs=1e-12)
    assert [f.id for f in out] == ["a", "b", "c", "d"]
    raw = weighted([vec, kw], weights=[1, 0.5], normalise="none")
    assert {f.id: f.score for f in raw} == pytest.approx({"a": 3.0, "b": 2.0, "c": 1.0 + 2.0, "d": 0.0})
    # zero spread under zscore: every hit of that list contributes 0
    assert _rows(weighted([[("p", 5.0), ("q", 5.0)]], normalise="zscore")) == [("p", 0.0), ("q", 0.0)]


def test_ties_are_deterministic() -> None:
    # equal scores: the better best rank wins, then the smaller id
    one = [("z", 1.0), ("m", 0.5)]
    two = [("m", 1.0), ("z", 0.5)]
    out = rrf([one, two])
    assert out[0].score == out[1].score and [f.id for f in out] == ["m", "z"]  # both best rank 1: id
    out = rrf([[("q", 1.0), ("p", 0.9)], [("r", 1.0)]], weights=[1, 1])
    # q (rank 1) and r (rank 1) tie at 1/61; p (rank 2) is below
    assert [f.id for f in out] == ["q", "r", "p"]
    # order of the input lists does not change the result
    assert _rows(rrf([VECTOR, KEYWORD])) == _rows(rrf([KEYWORD, VECTOR]))
    assert _rows(weighted([VECTOR, KEYWORD])) == _rows(weighted([KEYWORD, VECTOR]))
    # equal score and equal best rank: the id decides
    out = rrf([[("zz", 1.0), ("x", 0.1)], [("aa", 1.0)]], k=0, weights=[1, 1])
    assert [f.id for f in out] == ["aa", "zz", "x"]
    # equal score, different best rank: the better rank first even though its id sorts later
    tied = rrf([[("s", 1), ("zz", 1)], [("aa", 1), ("yy", 1), ("b", 1)]], k=1, weights=[1, 2])
    # aa: 2/2; yy: 2/3; s: 1/2 at rank 1 ties b: 2/4 at rank 3, so s goes first although "b" < "s"; zz: 1/3
    assert [f.id for f in tied] == ["aa", "yy", "s", "b", "zz"]
    assert tied[2].score == tied[3].score


def test_fused_is_a_small_frozen_record() -> None:
    f = fuse("rrf", VECTOR, KEYWORD)[0]
    doc_id, score, ranks = f
    assert (doc_id, score, ranks) == (f.id, f.score, f.ranks)
    assert doc_id == "a" and score == pytest.approx(0.5 / 61 + 0.5 / 63, rel=1e-15)
    assert ranks == {"vector": 1, "keyword": 3}
    with pytest.raises(AttributeError):
        f.score = 1.0  # type: ignore[misc]
    assert hash(f) == hash(Fused("a", f.score, {}))


def test_fuse_alpha() -> None:
    half = fuse("rrf", VECTOR, KEYWORD)
    assert _rows(half) == [(f.id, f.score / 2) for f in rrf([VECTOR, KEYWORD])]
    assert [f.id for f in fuse("rrf", VECTOR, KEYWORD, alpha=1.0)] == ["a", "b", "c", "d"]  # vector only
    assert [f.id for f in fuse("weighted", VECTOR, KEYWORD, alpha=0.0)] == ["c", "e", "a"]  # keyword only
    out = fuse("weighted", VECTOR, KEYWORD, alpha=0.6)
    assert _rows(out) == _rows(weighted([VECTOR, KEYWORD], weights=[0.6, 1 - 0.6]))
    assert out[-1].ranks == {"vector": 4, "keyword": None}
    assert [f.id for f in fuse("rrf", VECTOR, KEYWORD, k=0, limit=2)] == ["a", "c"]
    assert _rows(fuse("weighted", VECTOR, KEYWORD, normalise="none")) == _rows(
        weighted([VECTOR, KEYWORD], weights=[0.5, 0.5], normalise="none")
    )
    assert fuse("rrf", [], []) == []


def test_hybrid_beats_either_list_on_a_hand_made_relevance_set() -> None:
    """Three queries: vector search finds what keyword search ranks low, and the reverse."""
    queries = {
        # relevant ids, vector hits (cosine), keyword hits (BM25)
        "paraphrase and exact term": (
            {"d1", "d2"},
            [("d1", 0.90), ("x1", 0.80), ("x2", 0.75), ("d2", 0.70)],
            [("d2", 9.0), ("y1", 6.0), ("d1", 5.0), ("y2", 1.0)],
        ),
        "semantic query": (
            {"e1", "e2"},
            [("e1", 0.95), ("e2", 0.90), ("x3", 0.50)],
            [("y3", 8.0), ("e2", 7.0), ("e1", 6.5), ("y5", 1.0)],
        ),
        "rare identifier": (
            {"f1"},
            [("x4", 0.80), ("x5", 0.79), ("f1", 0.78), ("x6", 0.30)],
            [("f1", 11.0), ("y4", 2.0)],
        ),
    }

    def recall_at_2(relevant: set[str], ids: list[str]) -> float:
        return len(relevant & set(ids[:2])) / len(relevant)

    def mean(run) -> float:
        return sum(recall_at_2(rel, run(v, kw)) for rel, v, kw in queries.values()) / len(queries)

    vector_only = mean(lambda v, kw: [i for i, _ in v])
    keyword_only = mean(lambda v, kw: [i for i, _ in kw])
    hybrid_rrf = mean(lambda v, kw: [f.id for f in fuse("rrf", v, kw)])
    hybrid_weighted = mean(lambda v, kw: [f.id for f in fuse("weighted", v, kw)])
    assert (vector_only, keyword_only) == (pytest.approx(0.5), pytest.approx(2 / 3))
    assert hybrid_rrf == hybrid_weighted == 1.0


def test_fuses_keyword_index_results() -> None:
    idx = KeywordIndex()
    idx.add(["k1", "k2", "k3"], ["error code E1234 in the payment service", "payments are slow", "unrelated"])
    keyword_hits = idx.search("E1234 payment")
    vector_hits = [("k2", 0.9), ("k1", 0.7), ("k3", 0.1)]
    out = fuse("weighted", vector_hits, keyword_hits, alpha=0.5)
    assert [f.id for f in out][:2] == ["k1", "k2"]
    assert out[0].ranks == {"vector": 2, "keyword": 1}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rrf([VECTOR, KEYWORD], weights=[1.0]), "1 weights for 2"),
        (lambda: rrf([VECTOR, KEYWORD], weights=[1.0, -0.5]), "weights must be finite numbers >= 0"),
        (lambda: rrf([VECTOR, KEYWORD], weights=[1.0, math.nan]), ">= 0"),
        (lambda: rrf([VECTOR, KEYWORD], weights=[0, 0]), "every weight is 0"),
        (lambda: rrf({"v": VECTOR}, weights={"x": 1.0}), "keys"),
        (lambda: rrf([VECTOR], k=-1), "k=-1"),
        (lambda: rrf([VECTOR], limit=-1), "limit"),
        (lambda: rrf([]), "empty"),
        (lambda: rrf("abc"), "sequence"),
        (lambda: rrf([["a", "b"]]), "item #1"),
        (lambda: rrf([[(1, 0.5)]]), "item #1"),
        (lambda: weighted([VECTOR], normalise="l2"), "'minmax', 'zscore', 'none'"),
        (lambda: weighted([[("a", 0.1), ("b", 0.9)]]), "not sorted best first"),
        (lambda: weighted([[("a", math.nan)]]), "finite"),
        (lambda: weighted([[("a", "high")]]), "finite"),
        (lambda: fuse("hybrid", VECTOR, KEYWORD), "'rrf', 'weighted'"),
        (lambda: fuse("rrf", VECTOR, KEYWORD, alpha=1.5), "alpha"),
        (lambda: fuse("rrf", VECTOR, KEYWORD, alpha=True), "alpha"),
    ],
)
def test_bad_inputs_are_validation_errors(call, match) -> None:
    with pytest.raises(ValidationError) as err:
        call()
    assert match in str(err.value)


def test_unknown_mode_names_the_allowed_values() -> None:
    with pytest.raises(ValidationError) as err:
        fuse("magic", VECTOR, KEYWORD)
    assert all(repr(m) in err.value.hint for m in MODES)
    assert NORMALISATIONS == ("minmax", "zscore", "none")


def test_module_examples() -> None:
    result = doctest.testmod(fusion_module)
    assert result.attempted > 0 and result.failed == 0
