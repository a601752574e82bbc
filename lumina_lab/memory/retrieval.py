"""Recall for conversation memory: hybrid first pass, expansion, time, neighbours, sessions, speaker, rerank,
run for the question and for its aspect, with weights suited to what the question asks for.

:class:`Retriever` keeps what ranking needs about every item of a
:class:`~lumina_lab.memory.conversation.ConversationMemory` (session, position in it, time,
speaker, terms, entities) and a BM25 index; vectors stay in the vector store, which answers
the dense part through a callable.  A query runs these steps, each switchable in
:class:`RecallConfig` so its effect can be measured (the LoCoMo benchmark prints one
ablation per step):

1. **first pass** — dense cosine top-``depth`` from the store and, with ``hybrid``, BM25
   top-``depth`` (Porter-stemmed terms, English function words dropped); both min-max
   scaled over the candidates and mixed ``alpha * dense + (1 - alpha) * keyword``.
   With ``sentences`` (when the memory attached sentence vectors, see
   :meth:`Retriever.add_sentence_vectors`), the dense score of an item is
   ``(1 - sentence_weight) * its cosine + sentence_weight * the cosine of its best sentence``,
   and the ``depth`` items with the best sentence join the candidates: a long turn whose one
   sentence answers is no longer drowned by the rest of it in a mean-pooled vector.
2. ``expansion`` — pseudo-relevance feedback: the ``prf_terms`` most distinctive terms
   (``score * tf / |d| * idf``) of the ``prf_docs`` best first-pass items, and the names and
   places those items mention (through the semantic graph), are searched again; that
   ranking is added to the keyword side with weight ``prf_weight`` (RM3-style).  Items
   that share a topic with the best hits get ``topic_weight`` of their topic's score (when a
   topic model is attached).
3. ``temporal`` — dates in the query (``"in June 2023"``, ``"last weekend"``), resolved
   against the memory's latest time (or ``now``), favour items said in that span (or up to
   ``temporal_after_days`` later) or mentioning a date in it: score * ``1 + temporal_weight``.
4. ``neighbours`` — answers span turns: each item gains ``neighbour_weight`` * the larger
   score of its previous and next turn in the same session.
5. ``sessions`` — two-stage retrieval: a session's score is the mean of its best
   ``session_top`` item scores; every item gains ``session_weight`` * its session's
   min-max-scaled score.
6. ``speaker`` — a soft prior: when the query names exactly one known speaker, the other
   speakers' items are scaled by ``1 - speaker_weight`` (never removed).
   ``statements`` — a turn that ends by asking (:func:`is_question`) states less than one that
   answers: its score is scaled by ``1 - question_weight``.
7. ``rerank`` — answer-type matching: a *when* question favours items holding a date, *how
   many* a number, *where* a place, *who* a name: score * ``1 + rerank_weight``.

After ranking, with a token budget (``ConversationMemory.recall(..., budget_tokens=...)`` and
``ConversationMemory.context``):

* ``trim`` — extractive compression of what is returned, as little as needed: the ``k`` best
  items whole if they fit the budget; else the longest is cut first, only as far as the excess
  asks (never below an even share), then the next longest, until they fit.  A cut turn keeps its
  (at most ``trim_sentences``) sentences most relevant to the query
  (:meth:`Retriever.sentence_relevance`: cosine plus ``trim_lexical`` x the idf-weighted share of
  the query's terms it holds), in their order, speaker prefix kept, marked ``trimmed``.  When
  cutting all long ones is not enough, items are packed in rank order instead, and one that does
  not fit the tokens left (or, with ``trim_share > 0``, is longer than ``trim_share`` x its fair
  share) is cut the same way.  So the ``k`` best fit the budget instead of a long one being
  skipped, and answers are cut no more than the budget asks.  Off: items are kept whole or skipped.

Around these, per query:

* ``intent`` — a question that asks for a list gathered over time (:func:`asks_for_many`:
  ``"What books has Ann read?"``, ``"Which cities have both visited?"``) runs with the
  ``list_*`` weights: less neighbour and session boost (which favour one stretch of
  conversation, while such answers are spread over many), a stronger speaker prior, a little
  more dense weight.
* ``multiquery`` — multi-query retrieval: when the question names a participant, steps 1-7 run
  again for its :func:`aspect_query` (the question without the participants' names, which are in
  almost every turn and pull the embedding towards any turn of that person); both rankings are
  scaled by their best score and summed, the aspect's with weight ``aspect_weight``.  The aspect
  run keeps the speaker prior of the question (its text names nobody any more).

The weights are fixed, round values chosen for what each signal means, checked on
LoCoMo conversations 0-2 only and reported on all, the others held out (see
``benchmarks/locomo_recall.py``).

>>> r = Retriever()
>>> r.add(["t1", "t2", "t3"], ["Ann: I adopted a puppy called Rex.", "Bob: What breed is he?",
...                             "Ann: A beagle, two years old."],
...       [{"session": "s1", "speaker": "Ann"}, {"session": "s1", "speaker": "Bob"},
...        {"session": "s1", "speaker": "Ann"}])
>>> best = r.search("How old is Rex?", k=2)  # "how old" asks for a number: the answer turn wins
>>> [(s.id, s.via) for s in best]
[('t3', ['keyword', 'expansion', 'session', 'rerank']), ('t1', ['keyword', 'expansion', 'session'])]
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import ValidationError
from .entities import extract_entities, parse_dates, to_datetime

__all__ = [
    "STEPS",
    "STOPWORDS",
    "RecallConfig",
    "Retriever",
    "Scored",
    "answer_type",
    "asks_for_many",
    "aspect_query",
    "is_question",
    "sentences",
    "stem",
    "terms",
]

STEPS: tuple[str, ...] = (
    "hybrid",
    "expansion",
    "topics",
    "temporal",
    "neighbours",
    "sessions",
    "speaker",
    "rerank",
    "multiquery",
    "intent",
    "statements",
    "sentences",
    "trim",
)
"""The switchable steps of the recall pipeline (the module docs say where each one runs)."""


# English function words (pronouns, auxiliaries, determiners, prepositions, conjunctions,
# question words, contraction pieces): what a question shares with every turn.
def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOPWORDS: frozenset[str] = _wordset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom whose this that these those
    am is are was were be been being have has had having do does did doing a an the and but if or because as
    until while of at by for with about against between into through during before after above below to from
    up down in out on off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will just don should now
    d ll m o re ve y ain aren couldn didn doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn
    weren won wouldn would could might must shall may also
    """
)
_WORD = re.compile(r"\w+")
_ANSWER_TYPES = (
    (
        "date",
        re.compile(
            r"^\s*(?:when\b|(?:in |on |at |by |since )?what (?:date|day|year|month|time|week)\b|how long ago\b)", re.I
        ),
    ),
    ("number", re.compile(r"^\s*(?:how (?:many|much|old|often|long)\b|what (?:number|percentage|amount)\b)", re.I)),
    ("place", re.compile(r"^\s*(?:where\b|(?:in |at )?what (?:city|country|place|town|state|location)\b)", re.I)),
    ("name", re.compile(r"^\s*(?:who\b|whom\b|whose\b|what (?:is|was|are|were) the names?\b)", re.I)),
)


# ---------------------------------------------------------------------- text
def _cons(w: str, i: int) -> bool:
    c = w[i]
    if c in "aeiou":
        return False
    if c == "y":
        return i == 0 or not _cons(w, i - 1)
    return True


def _measure(stem_: str) -> int:
    n, i, size = 0, 0, len(stem_)
    while i < size and _cons(stem_, i):
        i += 1
    while i < size:
        while i < size and not _cons(stem_, i):
            i += 1
        if i >= size:
            break
        while i < size and _cons(stem_, i):
            i += 1
        n += 1
    return n


def _has_vowel(s: str) -> bool:
    return any(not _cons(s, i) for i in range(len(s)))


def _double_cons(w: str) -> bool:
    return len(w) >= 2 and w[-1] == w[-2] and _cons(w, len(w) - 1)


def _cvc(w: str) -> bool:
    return (
        len(w) >= 3
        and _cons(w, len(w) - 3)
        and not _cons(w, len(w) - 2)
        and _cons(w, len(w) - 1)
        and w[-1] not in "wxy"
    )


_STEP2 = sorted(
    [
        ("ational", "ate"),
        ("tional", "tion"),
        ("enci", "ence"),
        ("anci", "ance"),
        ("izer", "ize"),
        ("bli", "ble"),
        ("alli", "al"),
        ("entli", "ent"),
        ("eli", "e"),
        ("ousli", "ous"),
        ("ization", "ize"),
        ("ation", "ate"),
        ("ator", "ate"),
        ("alism", "al"),
        ("iveness", "ive"),
        ("fulness", "ful"),
        ("ousness", "ous"),
        ("aliti", "al"),
        ("iviti", "ive"),
        ("biliti", "ble"),
        ("logi", "log"),
    ],
    key=lambda r: -len(r[0]),
)
_STEP3 = sorted(
    [("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", "")],
    key=lambda r: -len(r[0]),
)
_STEP4 = sorted(
    [
        "al",
        "ance",
        "ence",
        "er",
        "ic",
        "able",
        "ible",
        "ant",
        "ement",
        "ment",
        "ent",
        "ion",
        "ou",
        "ism",
        "ate",
        "iti",
        "ous",
        "ive",
        "ize",
    ],
    key=len,
    reverse=True,
)


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The Porter (1980) stem of a lowercase word: ``"paintings"`` → ``"paint"``, ``"adoption"`` → ``"adopt"``.

    >>> [stem(w) for w in ["classes", "class", "camping", "relational", "happy"]]
    ['class', 'class', 'camp', 'relat', 'happi']
    """
    w = word
    if len(w) <= 2:
        return w
    if w.endswith("sses") or w.endswith("ies"):
        w = w[:-2]
    elif not w.endswith("ss") and w.endswith("s"):
        w = w[:-1]
    again = False
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    elif w.endswith("ed") and _has_vowel(w[:-2]):
        w, again = w[:-2], True
    elif w.endswith("ing") and _has_vowel(w[:-3]):
        w, again = w[:-3], True
    if again:
        if w.endswith(("at", "bl", "iz")):
            w += "e"
        elif _double_cons(w) and w[-1] not in "lsz":
            w = w[:-1]
        elif _measure(w) == 1 and _cvc(w):
            w += "e"
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    for rules in (_STEP2, _STEP3):
        for suffix, repl in rules:
            if w.endswith(suffix):
                if _measure(w[: -len(suffix)]) > 0:
                    w = w[: -len(suffix)] + repl
                break
    for suffix in _STEP4:
        if w.endswith(suffix):
            base = w[: -len(suffix)]
            if _measure(base) > 1 and (suffix != "ion" or base.endswith(("s", "t"))):
                w = base
            break
    if w.endswith("e"):
        base = w[:-1]
        m = _measure(base)
        if m > 1 or (m == 1 and not _cvc(base)):
            w = base
    if _measure(w) > 1 and _double_cons(w) and w.endswith("l"):
        w = w[:-1]
    return w


def terms(text: str) -> list[str]:
    """Index terms of ``text``: lowercase word tokens, :data:`STOPWORDS` dropped, Porter-stemmed.

    >>> terms("What books has Melanie read?")
    ['book', 'melani', 'read']
    """
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def answer_type(question: str) -> str | None:
    """What a question asks for: ``"date"``, ``"number"``, ``"place"``, ``"name"`` or ``None``.

    >>> answer_type("When did Caroline go to the support group?"), answer_type("How many dogs?")
    ('date', 'number')
    """
    for kind, pattern in _ANSWER_TYPES:
        if pattern.search(question):
            return kind
    return None


_AUX = _wordset("does did has have is are was were do had will would can could might")
_MANY = re.compile(r"\b(?:both|in common|how many times|ever)\b")
# "How many screenplays has Ann written?": a count of things done over time (not "how many years ...")
_HOW_MANY = re.compile(r"^\s*how many (?:[\w'-]+ ){0,2}?[\w'-]{3,}s (?:has|have|had|did|does|do)\b")
_UNITS = re.compile(r"^\s*how many (?:years|months|weeks|days|hours|minutes|seconds)\b")


def asks_for_many(question: str) -> bool:
    """Whether a question asks for a list of things gathered over time (an aggregation question).

    English cues only: a plural noun right after *what*/*which* (``"What books..."``, ``"Which
    cities..."``, ``"What are..."``), a present perfect right after *what*/*where*/*which*/*who*
    (``"Where has Ann camped?"``), *both*, *in common*, *how many times*, *ever*, or a count of
    things done (``"How many tournaments has Nate won?"``; not a duration, ``"How many years
    ..."``).  Such answers are usually said at different times, so recall weakens the boosts that
    favour one stretch of conversation.

    >>> asks_for_many("What books has Melanie read?"), asks_for_many("What did Bob bake?")
    (True, False)
    >>> asks_for_many("How many turtles does Nate have?"), asks_for_many("How many years ago did Ann move?")
    (True, False)
    """
    low = question.lower()
    words = re.findall(r"[\w'+-]+", low)
    if not words:
        return False
    if words[0] in ("what", "which"):
        for w in words[1:4]:
            if w in _AUX:
                break
            if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "'s")):
                return True
        if len(words) > 1 and words[1] in ("are", "were"):
            return True
    if words[0] in ("what", "where", "which", "who") and len(words) > 1 and words[1] in ("has", "have"):
        return True  # present perfect: "Where has Ann camped?" asks for experiences up to now
    if _HOW_MANY.search(low) and not _UNITS.search(low):
        return True
    return bool(_MANY.search(low))


def aspect_query(query: str, names: Iterable[str]) -> str | None:
    """``query`` without the given participants' names (first names, possessives too), or ``None``
    when nothing was removed or nothing worth searching is left.

    In a conversation the participants' names are in almost every turn, so they say little about
    *which* turn answers; the rest of the question (its aspect) does.

    >>> aspect_query("What books has Melanie read?", ["Melanie", "Caroline Smith"])
    'What books has read?'
    """
    out = query
    for name in names:
        first = name.split()[0] if name.split() else ""
        if first:
            out = re.sub(r"\b" + re.escape(first) + r"(?:['\u2019]s)?\b", " ", out, flags=re.I)
    out = re.sub(r"\s+", " ", out).strip()
    out = re.sub(r"\s+([?.!,])", r"\1", out)
    if out == query.strip() or not terms(out):
        return None
    return out


_CAPTION = re.compile(r"\s*\[[^\]]*\]\s*$")


def is_question(text: str) -> bool:
    """Whether a turn ends by asking (its last sentence ends with ``?``; a trailing ``[image caption]``
    is ignored).

    >>> is_question("Bob: Nice! What breed is he?"), is_question("Ann: A beagle. [a photo of a dog]")
    (True, False)
    """
    return _CAPTION.sub("", text).rstrip().endswith("?")


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SPEAKER = re.compile(r"^[^:\n]{1,40}:\s+")


def sentences(text: str) -> list[str]:
    """The sentences of an item's text, a leading ``"Speaker: "`` dropped (what the ``sentences``
    step embeds one by one); fragments of three characters or less are left out.

    >>> sentences("Ann: I adopted a puppy! He is a beagle. Ok.")
    ['I adopted a puppy!', 'He is a beagle.']
    """
    body = _SPEAKER.sub("", text, count=1)
    parts = [p.strip() for p in _SENTENCE_END.split(body) if len(p.strip()) > 3]
    return parts or ([body.strip()] if body.strip() else [])


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class RecallConfig:
    """Which recall steps run, and their weights (see the module docs for what each does).

    ``RecallConfig().without("neighbours", "rerank")`` switches steps off;
    ``RecallConfig.only("hybrid")`` keeps just the first pass.
    """

    hybrid: bool = True
    expansion: bool = True
    topics: bool = True
    temporal: bool = True
    neighbours: bool = True
    sessions: bool = True
    speaker: bool = True
    rerank: bool = True
    multiquery: bool = True
    intent: bool = True
    alpha: float = 0.5
    depth: int = 100
    prf_docs: int = 5
    prf_terms: int = 10
    prf_weight: float = 0.3
    topic_weight: float = 0.1
    temporal_weight: float = 0.3
    temporal_after_days: float = 31.0
    neighbour_weight: float = 0.35
    session_weight: float = 0.3
    session_top: int = 3
    speaker_weight: float = 0.1
    rerank_weight: float = 0.2
    aspect_weight: float = 0.5
    list_alpha: float = 0.6
    list_neighbour_weight: float = 0.1
    list_session_weight: float = 0.1
    list_speaker_weight: float = 0.4
    statements: bool = True
    question_weight: float = 0.1
    sentences: bool = True
    sentence_weight: float = 0.5
    trim: bool = True
    trim_sentences: int = 2
    trim_share: float = 1.25
    trim_lexical: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in STEPS:
                if not isinstance(v, bool):
                    raise ValidationError(f"RecallConfig.{f.name}={v!r} must be True or False", input=v)
            elif f.name in ("depth", "prf_docs", "prf_terms", "session_top", "trim_sentences"):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ValidationError(f"RecallConfig.{f.name}={v!r} must be a positive integer", input=v)
            elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ValidationError(f"RecallConfig.{f.name}={v!r} must be a finite number >= 0", input=v)
        for name in ("alpha", "list_alpha"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValidationError(
                    f"RecallConfig.{name}={getattr(self, name)!r} must be in [0, 1]",
                    input=getattr(self, name),
                    hint="alpha weighs the dense side; 1 - alpha the keyword side",
                )
        for name in ("speaker_weight", "list_speaker_weight", "question_weight", "sentence_weight"):
            if getattr(self, name) > 1.0:
                raise ValidationError(
                    f"RecallConfig.{name}={getattr(self, name)!r} must be in [0, 1]", input=getattr(self, name)
                )

    def for_lists(self) -> RecallConfig:
        """The weights used for a question that :func:`asks_for_many` (the ``intent`` step)."""
        return replace(
            self,
            alpha=self.list_alpha,
            neighbour_weight=self.list_neighbour_weight,
            session_weight=self.list_session_weight,
            speaker_weight=self.list_speaker_weight,
        )

    def without(self, *steps: str) -> RecallConfig:
        """A copy with ``steps`` switched off."""
        _check_steps(steps)
        return replace(self, **dict.fromkeys(steps, False))

    @classmethod
    def only(cls, *steps: str) -> RecallConfig:
        """A config with only ``steps`` on (``only()`` is dense search alone)."""
        _check_steps(steps)
        return cls(**{s: s in steps for s in STEPS})

    def with_(self, **changes: Any) -> RecallConfig:
        """A copy with fields changed (validated)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValidationError(
                f"RecallConfig has no field(s) {sorted(unknown)}",
                input=sorted(unknown),
                hint=f"fields: {', '.join(f.name for f in fields(self))}",
            )
        return replace(self, **changes)

    @property
    def steps(self) -> list[str]:
        """The steps switched on."""
        return [s for s in STEPS if getattr(self, s)]


def _check_steps(steps: Iterable[str]) -> None:
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise ValidationError(f"unknown recall step(s) {bad}", input=bad, hint=f"steps are {', '.join(STEPS)}")


# ---------------------------------------------------------------------- the index
@dataclass(slots=True)
class _Row:
    id: str
    text: str
    session: str
    ts: float | None
    speaker: str | None
    seq: int
    terms: Counter[str]
    surface: dict[str, str]
    entities: list[str]
    names: list[str]
    dates: list[tuple[float, float]]
    types: frozenset[str]
    asks: bool
    metadata: dict[str, Any]


@dataclass(slots=True)
class Scored:
    """One recalled item: id, final score, and what each step contributed (``parts``)."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any]
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def via(self) -> list[str]:
        """The steps that surfaced or raised this item."""
        return [k for k, v in self.parts.items() if v > 0]


DenseSearch = Callable[[np.ndarray, int, "set[str] | None"], Sequence[tuple[str, float]]]


class Retriever:
    """The ranking side of a conversation memory: per-item features, BM25, and the recall pipeline.

    Args:
        dense: ``dense(query_vector, k, allowed_ids_or_None) -> [(id, cosine), ...]`` best first
            (a vector store search); without it only keyword search runs.
        embed: ``embed(text) -> vector`` for queries (needed with ``dense``).
        vectors: ``vectors(ids) -> (len(ids), dim) array`` of stored unit vectors, so candidates
            found by keyword or as neighbours get their exact dense score (else they count 0).
        graph: an optional :class:`~lumina_lab.memory.graph.SemanticGraph` the entity expansion reads.
        topic_of: optional ``item id -> topic id`` (the topic step).
    """

    def __init__(
        self,
        dense: DenseSearch | None = None,
        embed: Callable[[str], np.ndarray] | None = None,
        *,
        vectors: Callable[[list[str]], np.ndarray] | None = None,
        graph: Any = None,
        topic_of: Callable[[str], Any] | None = None,
    ) -> None:
        from .keyword import KeywordIndex

        self.dense = dense
        self.embed = embed
        self.vectors = vectors
        self.graph = graph
        self.topic_of = topic_of
        self.keyword = KeywordIndex(stopwords=sorted(STOPWORDS), stemmer=stem)
        self.rows: dict[str, _Row] = {}
        self.df: Counter[str] = Counter()
        self.sessions: dict[str, list[str]] = defaultdict(list)  # session -> ids in (ts, seq) order
        self.speakers: Counter[str] = Counter()
        self._seq = 0
        self._sorted: set[str] = set()
        self._sentences: dict[str, np.ndarray] = {}  # id -> (n_sentences, dim) unit vectors
        self._stacked: tuple[list[str], np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.rows

    # ---- writes
    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Index items (an id already present is replaced).  Metadata keys read: ``session``, ``ts``, ``speaker``, ``seq``."""
        metas = list(metadata) if metadata is not None else [None] * len(ids)
        if not (len(ids) == len(texts) == len(metas)):
            raise ValidationError(f"{len(ids)} ids, {len(texts)} texts and {len(metas)} metadata do not match")
        self.remove([i for i in ids if i in self.rows])
        for item_id, text, meta in zip(ids, texts, metas, strict=True):
            meta = dict(meta or {})
            ts = meta.get("ts")
            ts = float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None
            seq = meta.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                seq = self._seq
            self._seq = max(self._seq, seq + 1)
            words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
            surface: dict[str, str] = {}
            tcount: Counter[str] = Counter()
            for w in words:
                s = stem(w)
                tcount[s] += 1
                surface.setdefault(s, w)
            ents = extract_entities(text, ts)
            session = str(meta.get("session", "")) if meta.get("session") is not None else ""
            speaker = meta.get("speaker") if isinstance(meta.get("speaker"), str) else None
            row = _Row(
                id=item_id,
                text=text,
                session=session,
                ts=ts,
                speaker=speaker,
                seq=seq,
                terms=tcount,
                surface=surface,
                entities=[e.key for e in ents if e.kind in ("name", "place")],
                names=[e.text for e in ents if e.kind in ("name", "place")],
                dates=[(e.value.start_ts, e.value.end_ts) for e in ents if e.kind == "date"],
                types=frozenset(e.kind for e in ents),
                asks=is_question(text),
                metadata=meta,
            )
            self.rows[item_id] = row
            self.df.update(tcount.keys())
            if session:
                self.sessions[session].append(item_id)
                self._sorted.discard(session)
            if speaker:
                self.speakers[speaker] += 1
        self.keyword.add(list(ids), list(texts))

    def add_sentence_vectors(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Attach the embeddings of each item's sentences (``id -> (n, dim)`` array, see
        :func:`sentences`): the ``sentences`` step then matches a query against an item's best
        sentence as well as against the item as a whole.  Ids not indexed are ignored."""
        for item_id, mat in vectors.items():
            if item_id not in self.rows:
                continue
            m = np.asarray(mat, dtype=np.float32)
            if m.ndim != 2 or not len(m):
                continue
            self._sentences[item_id] = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        self._stacked = None

    def _sentence_scores(self, qv: np.ndarray) -> dict[str, float]:
        """``id -> largest cosine`` between ``qv`` and the item's sentences (items with sentence vectors)."""
        if not self._sentences:
            return {}
        if self._stacked is None:
            ids = list(self._sentences)
            mats = [self._sentences[i] for i in ids]
            owner = np.repeat(np.arange(len(ids)), [len(m) for m in mats])
            self._stacked = (ids, np.vstack(mats), owner)
        ids, mat, owner = self._stacked
        q = np.asarray(qv, dtype=np.float32)
        sims = mat @ (q / (np.linalg.norm(q) or 1.0))
        best = np.full(len(ids), -np.inf, dtype=np.float32)
        np.maximum.at(best, owner, sims)
        return dict(zip(ids, best.tolist(), strict=True))

    def sentence_relevance(
        self, item_id: str, text: str, query: str, query_vector: np.ndarray | None = None, lexical: float = 1.0
    ) -> list[tuple[str, float]]:
        """The :func:`sentences` of ``text`` (the item ``item_id``'s text or a part of it), each with
        its relevance to the query, in text order (what the ``trim`` step keeps): the idf-weighted
        share of the query's terms that the sentence holds, times ``lexical``, plus the cosine between
        ``query_vector`` and the sentence's stored vector when the item has sentence vectors that
        match ``text``.  Either alone picks worse: the cosine favours the sentence that restates the
        question's context over the one that answers it ("How long was Max part of the family?" ->
        "long time no talk!"), the terms miss paraphrases.
        """
        parts = sentences(text)
        qt = set(terms(query))
        total = sum(self.idf(t) for t in qt) or 1.0
        lex = [sum(self.idf(t) for t in qt & set(terms(p))) / total for p in parts]
        mat = self._sentences.get(item_id)
        if query_vector is not None and mat is not None and len(mat) == len(parts):
            q = np.asarray(query_vector, dtype=np.float32)
            sims = mat @ (q / (np.linalg.norm(q) or 1.0))
            return [(p, c + lexical * x) for p, c, x in zip(parts, sims.tolist(), lex, strict=True)]
        return list(zip(parts, lex, strict=True))

    def remove(self, ids: Iterable[str]) -> int:
        """Forget items; returns how many were indexed."""
        gone = [i for i in ids if i in self.rows]
        for item_id in gone:
            if self._sentences.pop(item_id, None) is not None:
                self._stacked = None
            row = self.rows.pop(item_id)
            self.df.subtract(row.terms.keys())
            if row.session:
                self.sessions[row.session].remove(item_id)
                if not self.sessions[row.session]:
                    del self.sessions[row.session]
            if row.speaker:
                self.speakers[row.speaker] -= 1
                if self.speakers[row.speaker] <= 0:
                    del self.speakers[row.speaker]
        if gone:
            self.df = +self.df
            self.keyword.remove(gone)
        return len(gone)

    def clear(self) -> None:
        self._sentences.clear()
        self._stacked = None
        self.rows.clear()
        self.df.clear()
        self.sessions.clear()
        self.speakers.clear()
        self.keyword.clear()
        self._sorted.clear()

    # ---- structure
    def session_ids(self, session: str) -> list[str]:
        """Ids of one session in time order (``ts``, then insertion)."""
        ids = self.sessions.get(session, [])
        if session not in self._sorted:
            ids.sort(key=lambda i: (self.rows[i].ts if self.rows[i].ts is not None else -math.inf, self.rows[i].seq))
            self._sorted.add(session)
        return ids

    def adjacent(self, item_id: str) -> tuple[str | None, str | None]:
        """The previous and next item of the same session (``None`` at the ends or without a session)."""
        row = self.rows[item_id]
        if not row.session:
            return None, None
        ids = self.session_ids(row.session)
        j = ids.index(item_id)
        return (ids[j - 1] if j > 0 else None), (ids[j + 1] if j + 1 < len(ids) else None)

    def latest_ts(self) -> float | None:
        ts = [r.ts for r in self.rows.values() if r.ts is not None]
        return max(ts) if ts else None

    def idf(self, term: str) -> float:
        n = len(self.rows)
        d = self.df.get(term, 0)
        return math.log(1.0 + (n - d + 0.5) / (d + 0.5))

    # ---- search
    def search(
        self,
        query: str,
        k: int = 10,
        config: RecallConfig | None = None,
        *,
        allowed: set[str] | None = None,
        now: float | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Scored]:
        """The ``k`` best items for ``query`` by the pipeline of ``config`` (see the module docs).

        Candidates are the ``depth`` best of each first-pass list (and of the expansion
        search), plus their adjacent turns; every candidate then gets its exact dense and
        keyword scores, so no item is ranked on a partial score.

        With ``intent``, a question that :func:`asks_for_many` runs with the ``list_*`` weights
        (:meth:`RecallConfig.for_lists`).  With ``multiquery``, when the question names a
        participant, its :func:`aspect_query` (the question without participants' names) runs the
        same pipeline; each list is scaled by its best score and they are summed, the aspect's
        with weight ``aspect_weight``.

        Args:
            allowed: only these ids can be returned (a level or metadata filter); ``None``: all.
            now: reference time for relative dates in the query (default: the latest item time).
            query_vector: the query's embedding, if already computed.
        """
        cfg = config or RecallConfig()
        if allowed is not None and not allowed:
            return []
        if cfg.intent and asks_for_many(query):
            cfg = cfg.for_lists()
        aspect = aspect_query(query, self.speakers) if cfg.multiquery and cfg.aspect_weight > 0 else None
        if aspect is None:
            return self._search(query, k, cfg, allowed, now, query_vector)
        pool = max(k, 50)  # both lists deep enough that their sum ranks the top k well
        main = self._search(query, pool, cfg, allowed, now, query_vector)
        # the aspect run keeps the question's speaker prior (its text no longer names anyone)
        side = self._search(aspect, pool, cfg, allowed, now, None, named=self._speakers_in(query))
        top_main = max((x.score for x in main), default=0.0) or 1.0
        top_side = max((x.score for x in side), default=0.0) or 1.0
        fused: dict[str, Scored] = {}
        for x in main:
            fused[x.id] = Scored(
                x.id, x.score / top_main, x.text, x.metadata, {p: v / top_main for p, v in x.parts.items()}
            )
        for x in side:
            add = cfg.aspect_weight * x.score / top_side
            got = fused.get(x.id)
            if got is None:
                got = fused[x.id] = Scored(x.id, 0.0, x.text, x.metadata, {})
            got.score += add
            got.parts["aspect"] = add
        order = sorted(fused.values(), key=lambda x: (-x.score, self.rows[x.id].seq))
        return order[:k]

    def _search(
        self,
        query: str,
        k: int,
        cfg: RecallConfig,
        allowed: set[str] | None,
        now: float | None,
        query_vector: np.ndarray | None,
        named: set[str] | None = None,
    ) -> list[Scored]:
        """One run of the pipeline (steps 1-7 of the module docs) for one query text; ``named``: the
        participants the speaker prior favours (default: those ``query`` names)."""
        depth = max(cfg.depth, 4 * k)
        qv = query_vector
        if qv is None and self.dense is not None and self.embed is not None:
            qv = self.embed(query)
        use_dense = self.dense is not None and qv is not None
        use_keyword = cfg.hybrid or not use_dense
        dense: dict[str, float] = dict(self.dense(qv, depth, allowed)) if use_dense else {}  # type: ignore[misc]
        kw: dict[str, float] = (
            dict(self.keyword.search(query, depth, allowed)) if use_keyword and len(self.keyword) else {}
        )
        cand: dict[str, None] = dict.fromkeys(i for i in [*dense, *kw] if i in self.rows)
        # 1b. sentences: an item's best sentence counts beside the item as a whole
        sent: dict[str, float] = {}
        if cfg.sentences and cfg.sentence_weight > 0 and use_dense and self._sentences:
            sent = self._sentence_scores(qv)  # type: ignore[arg-type]
            pool = [i for i in sent if allowed is None or i in allowed]
            cand.update(dict.fromkeys(sorted(pool, key=lambda i: -sent[i])[:depth]))
        if not cand:
            return []
        mixed: set[str] = set()

        def mix() -> None:
            """Dense scores become ``(1 - w) * item cosine + w * best sentence cosine``."""
            for i in dense.keys() - mixed:
                if i in sent:
                    dense[i] = (1 - cfg.sentence_weight) * dense[i] + cfg.sentence_weight * sent[i]
                mixed.add(i)

        self._complete(cand, query, qv, dense, kw, use_dense, use_keyword)
        if sent:
            mix()
        a = cfg.alpha if (use_dense and use_keyword) else (1.0 if use_dense else 0.0)
        dmax = max((max(v, 0.0) for v in dense.values()), default=0.0) or 1.0

        def first_pass(keyword: Mapping[str, float], kmax: float) -> dict[str, float]:
            kmax = kmax or 1.0
            return {i: a * max(dense.get(i, 0.0), 0.0) / dmax + (1 - a) * keyword.get(i, 0.0) / kmax for i in cand}

        kmax = max(kw.values(), default=0.0)
        s = first_pass(kw, kmax)

        # 2. expansion: pseudo-relevance feedback terms + entities of the best hits
        prf: dict[str, float] = {}
        if cfg.expansion and use_keyword and cfg.prf_weight > 0:
            words = self._feedback_words(query, s, cfg)
            if words:
                expanded = " ".join(words)
                prf = dict(self.keyword.search(expanded, depth, allowed))
                cand.update(dict.fromkeys(i for i in prf if i in self.rows))
        # members of the best hits' topics join the candidates (expansion through topics)
        if cfg.topics and self.topic_of is not None and cfg.topic_weight > 0:
            best = {self.topic_of(i) for i in sorted(s, key=lambda i: -s[i])[: cfg.prf_docs]} - {None}
            if best:
                members = [i for i in self.rows if (allowed is None or i in allowed) and self.topic_of(i) in best]
                cand.update(dict.fromkeys(members[-depth:]))
        # adjacent turns join the candidates (the neighbour step needs their own scores)
        if cfg.neighbours:
            for i in list(cand):
                for j in self.adjacent(i):
                    if j is not None and (allowed is None or j in allowed):
                        cand.setdefault(j, None)
        self._complete(cand, query, qv, dense, kw, use_dense, use_keyword)
        if sent:
            mix()
        if prf:
            missing = set(cand) - set(prf)
            if missing:
                prf.update(self.keyword.search(expanded, len(missing), missing))
            pmax = max(prf.values(), default=0.0) or 1.0
            mixed = {i: kw.get(i, 0.0) / (kmax or 1.0) + cfg.prf_weight * prf.get(i, 0.0) / pmax for i in cand}
            s = first_pass(mixed, max(mixed.values(), default=0.0))
        else:
            s = first_pass(kw, kmax)
        parts: dict[str, dict[str, float]] = {i: {} for i in cand}
        for i in cand:
            if use_dense and dense.get(i, 0.0) > 0:
                parts[i]["vector"] = a * dense[i] / dmax
            if kw.get(i, 0.0) > 0:
                parts[i]["keyword"] = (1 - a) * kw[i] / (kmax or 1.0)
            if prf.get(i, 0.0) > 0:
                parts[i]["expansion"] = (1 - a) * cfg.prf_weight * prf[i] / (max(prf.values()) or 1.0)
        if cfg.topics and self.topic_of is not None and cfg.topic_weight > 0:
            self._topic_boost(s, parts, cfg)

        # 3. temporal: dates in the question
        if cfg.temporal and cfg.temporal_weight > 0:
            ref = now if now is not None else self.latest_ts()
            spans = [(d.value.start_ts, d.value.end_ts) for d in parse_dates(query, ref)] if ref is not None else []
            if spans:
                after = cfg.temporal_after_days * 86400.0
                for i in cand:
                    row = self.rows[i]
                    hit = row.ts is not None and any(lo <= row.ts < hi + after for lo, hi in spans)
                    hit = hit or any(lo < dhi and dlo < hi for lo, hi in spans for dlo, dhi in row.dates)
                    if hit:
                        parts[i]["temporal"] = s[i] * cfg.temporal_weight
                        s[i] *= 1 + cfg.temporal_weight

        # 4. neighbours: a hit's adjacent turns share its score
        if cfg.neighbours and cfg.neighbour_weight > 0:
            base = dict(s)
            for i in cand:
                p, n = self.adjacent(i)
                share = max(base.get(p, 0.0) if p else 0.0, base.get(n, 0.0) if n else 0.0)
                if share > 0:
                    s[i] = base[i] + cfg.neighbour_weight * share
                    parts[i]["neighbour"] = cfg.neighbour_weight * share

        # 5. sessions: boost the items of the best sessions
        if cfg.sessions and cfg.session_weight > 0:
            by_session: dict[str, list[float]] = defaultdict(list)
            for i in cand:
                by_session[self.rows[i].session or f"\0{i}"].append(s[i])
            agg = {key: float(np.mean(sorted(v, reverse=True)[: cfg.session_top])) for key, v in by_session.items()}
            norm = _minmax(agg)
            for i in cand:
                b = cfg.session_weight * norm[self.rows[i].session or f"\0{i}"]
                s[i] += b
                if b > 0:
                    parts[i]["session"] = b

        # 6. speaker prior
        if cfg.speaker and cfg.speaker_weight > 0 and self.speakers:
            if named is None:
                named = self._speakers_in(query)
            if len(named) == 1:
                (who,) = named
                for i in cand:
                    sp = self.rows[i].speaker
                    if sp is not None and sp != who:
                        s[i] *= 1 - cfg.speaker_weight
                    elif sp == who:
                        parts[i]["speaker"] = s[i] * cfg.speaker_weight

        # 6b. statements: a turn that only asks holds the answer less often than one that states
        if cfg.statements and cfg.question_weight > 0:
            for i in cand:
                if self.rows[i].asks:
                    parts[i]["question"] = -s[i] * cfg.question_weight
                    s[i] *= 1 - cfg.question_weight

        # 7. rerank by answer type
        if cfg.rerank and cfg.rerank_weight > 0:
            want = answer_type(query)
            if want is not None:
                kinds = {"date": ("date",), "number": ("number",), "place": ("place",), "name": ("name", "place")}[want]
                for i in cand:
                    if any(t in self.rows[i].types for t in kinds):
                        parts[i]["rerank"] = s[i] * cfg.rerank_weight
                        s[i] *= 1 + cfg.rerank_weight

        order = sorted(cand, key=lambda i: (-s[i], self.rows[i].seq))[:k]
        return [Scored(i, float(s[i]), self.rows[i].text, self.rows[i].metadata, parts[i]) for i in order]

    def _complete(
        self,
        cand: Mapping[str, None],
        query: str,
        qv: np.ndarray | None,
        dense: dict[str, float],
        kw: dict[str, float],
        use_dense: bool,
        use_keyword: bool,
    ) -> None:
        """Fill in the exact dense and keyword scores of candidates that a top-``depth`` list left out."""
        if use_dense and self.vectors is not None:
            missing = [i for i in cand if i not in dense]
            if missing:
                mat = self.vectors(missing)
                q = np.asarray(qv, dtype=np.float32)
                q = q / (np.linalg.norm(q) or 1.0)
                sims = np.asarray(mat, dtype=np.float32) @ q
                dense.update(zip(missing, (float(x) for x in sims), strict=True))
        if use_keyword and len(self.keyword):
            missing_set = {i for i in cand if i not in kw}
            if missing_set:
                kw.update(self.keyword.search(query, len(missing_set), missing_set))

    def _feedback_words(self, query: str, s: Mapping[str, float], cfg: RecallConfig) -> list[str]:
        """Expansion words: distinctive terms and linked entities of the best first-pass items."""
        qterms = set(terms(query))
        top = sorted(s, key=lambda i: -s[i])[: cfg.prf_docs]
        weight: Counter[str] = Counter()
        surface: dict[str, str] = {}
        for i in top:
            row = self.rows[i]
            size = sum(row.terms.values()) or 1
            for t, f in row.terms.items():
                if t in qterms or t.isdigit():
                    continue
                weight[t] += s[i] * f / size * self.idf(t)
                surface.setdefault(t, row.surface[t])
        words = [surface[t] for t, _ in weight.most_common(cfg.prf_terms)]
        if self.graph is not None:  # entities the best items mention, linked through the graph
            speakers = {sp.lower() for sp in self.speakers}
            for i in top[:3]:
                for name in self.rows[i].names:
                    if name.lower() not in speakers and not (set(terms(name)) <= qterms):
                        words.append(name)
        return list(dict.fromkeys(words))

    def _topic_boost(self, s: dict[str, float], parts: dict[str, dict[str, float]], cfg: RecallConfig) -> None:
        assert self.topic_of is not None
        top = sorted(s, key=lambda i: -s[i])[: cfg.prf_docs]
        weight: dict[Any, float] = {}
        for i in top:
            t = self.topic_of(i)
            if t is not None:
                weight[t] = max(weight.get(t, 0.0), s[i])
        if not weight:
            return
        for i in list(s):
            t = self.topic_of(i)
            if t in weight:
                b = cfg.topic_weight * weight[t]
                s[i] += b
                parts[i]["topic"] = b

    def _speakers_in(self, query: str) -> set[str]:
        found = set()
        low = query.lower()
        for sp in self.speakers:
            first = sp.split()[0].lower() if sp.split() else sp.lower()
            if re.search(r"\b" + re.escape(first) + r"\b", low):
                found.add(sp)
        return found


def _minmax(values: Mapping[str, float | None]) -> dict[str, float]:
    """Min-max scale to [0, 1]; missing (``None``) values become 0; all equal gives 1 for present ones."""
    present = [v for v in values.values() if v is not None]
    if not present:
        return dict.fromkeys(values, 0.0)
    lo, hi = min(present), max(present)
    if hi <= lo:
        return {k: (1.0 if v is not None else 0.0) for k, v in values.items()}
    return {k: ((v - lo) / (hi - lo) if v is not None else 0.0) for k, v in values.items()}


def _scaled(scores: Mapping[str, float], ids: Iterable[str]) -> dict[str, float]:
    """BM25-like scores divided by their maximum (0 for ids without a score)."""
    top = max(scores.values(), default=0.0)
    if top <= 0:
        return dict.fromkeys(ids, 0.0)
    return {i: scores.get(i, 0.0) / top for i in ids}


def to_ts(value: Any) -> float | None:
    """Epoch seconds of a time-like value (``None`` stays ``None``)."""
    return None if value is None else to_datetime(value).timestamp()
