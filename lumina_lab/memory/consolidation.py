"""Consolidation: merge near-duplicates, supersede outdated facts, score by importance and recency, summarise.

:func:`consolidate` takes :class:`MemoryItem` objects and returns a
:class:`ConsolidationReport` with the consolidated items and every decision, each with
its reason.  Inputs are never modified: the report holds copies.

1. **Merges.**  Items are visited oldest first (``ts``, then input order).  An item whose
   cosine similarity to an earlier kept item is at least ``duplicate_threshold`` (or whose
   text is the same but for case, spacing and punctuation) is merged into the most similar
   one: the kept item (the older one, whose id and text stay) takes the newest ``ts``
   (the fact was reinforced), the highest importance, ``metadata["mentions"]`` counts the
   copies, and its ``history`` records each merged item.  Merged items leave ``items``;
   :attr:`ConsolidationReport.removed_ids` lists them.
2. **Supersessions** (``supersede=True``).  A newer item supersedes an older one about the
   same subject when they state different values of the same attribute.  Two heuristics,
   both requiring the same *owner* (``metadata`` ``subject``/``speaker``/``user``/``owner``, or a
   ``"Name: "`` prefix of the text; items with different owners never interact):

   * *slots*: both match one of a few patterns that name an attribute -- where someone
     lives (``live in``/``moved to``/``relocated to``), works (``work at``/``joined``), their
     age, or a possessive attribute (``my favorite color is``, ``Ann's phone number is``) --
     with the same subject and attribute and a different value: ``"I live in Paris"`` then
     ``"I moved to Berlin"``;
   * *aligned values*: the two texts are at least ``supersede_threshold`` similar, start
     alike (same subject), share at least half of their words including a state cue
     (``is``, ``are``, ``am``, ``live``, ``work``, ``now``, ``favorite``...; so ``"I went to Rome"`` and
     ``"I went to Paris"`` are two events, not a change), and differ only in
     short replaced values (``"The meeting is on Tuesday"`` / ``"... on Thursday"``) or in a
     negation (``"I like coffee"`` / ``"I don't like coffee"``).

   The older item stays in ``items`` with ``superseded_by`` set (it is history, not
   deleted); the newer one's ``history`` gains it (and its history, so chains keep it all).
   These are heuristics: pass ``supersede=False`` to turn them off, or a function
   ``(old, new) -> reason | None`` to decide yourself.
3. **Scores**: ``importance * 0.5 ** (age_days / half_life_days)`` for every item
   (:func:`recency_weight`), with ``age_days`` counted from ``ts`` to ``now``.
4. **Summaries** (``summarize_older_than_days=d``): active episodic items older than
   ``d`` days, not yet summarised, are grouped into episodes (``metadata["episode"]`` or
   ``["session"]``, else the UTC day of ``ts``), and every episode of at least
   ``min_episode_items`` items becomes one new ``semantic`` item whose text the
   ``summarizer`` writes (default :class:`ExtractiveSummarizer`, deterministic; or
   :class:`LLMSummarizer` over any langchain-core chat model), with
   ``metadata["source_ids"]`` naming the items it covers; each of those gets
   ``metadata["summarized_into"]``.

>>> now = 100 * 86400.0
>>> items = [MemoryItem("a", "I live in Paris", ts=now - 10 * 86400),
...          MemoryItem("b", "I moved to Berlin", ts=now - 86400),
...          MemoryItem("c", "I moved to Berlin!", ts=now)]
>>> report = consolidate(items, now=now, half_life_days=10)
>>> [(m.kept_id, m.merged_ids) for m in report.merges]
[('b', ['c'])]
>>> [(s.old_id, s.new_id) for s in report.supersessions]
[('a', 'b')]
>>> [it.id for it in report.active], round(report.scores["a"], 3)
(['b'], 0.5)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ProviderError, ValidationError
from .chunking import _TURN, estimate_tokens
from .topics import STOPWORDS, _wordset

if TYPE_CHECKING:
    import pandas as pd

    from ..events.bus import InProcessBus

__all__ = [
    "LEVELS",
    "ConsolidationReport",
    "ExtractiveSummarizer",
    "LLMSummarizer",
    "MemoryItem",
    "Merge",
    "Summarizer",
    "Supersession",
    "consolidate",
    "recency_weight",
]

#: Memory levels of a :class:`MemoryItem`.
LEVELS: tuple[str, ...] = ("episodic", "semantic")
_DAY = 86400.0
_OWNER_KEYS = ("subject", "speaker", "user", "owner", "agent")


# ---------------------------------------------------------------------- items


@dataclass
class MemoryItem:
    """One memory: a text with its vector, time, importance and provenance.

    Attributes:
        id: unique id.
        text: what is remembered.
        vector: its unit-norm embedding (``None``: :func:`consolidate` embeds it).
        ts: when it was stated or last reinforced, epoch seconds.
        importance: how much it matters, ``>= 0`` (1.0 by default; scores decay from it).
        metadata: free JSON-like data; ``subject``/``speaker``/``user`` name its owner,
            ``episode``/``session`` its episode.
        level: ``"episodic"`` (something said or seen) or ``"semantic"`` (a distilled fact or summary).
        superseded_by: id of the newer item that replaced it, if one did.
        history: what happened to it: dicts with ``op`` (``merged``, ``supersedes``, ...), ``id``,
            ``text``, ``ts`` and details.
    """

    id: str
    text: str
    vector: np.ndarray | None = field(default=None, repr=False, compare=False)
    ts: float = 0.0
    importance: float = 1.0
    metadata: dict[str, Any] = field(default_factory=dict)
    level: str = "episodic"
    superseded_by: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def active(self) -> bool:
        """``True`` unless a newer item superseded it."""
        return self.superseded_by is None

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 50 else self.text[:47] + "..."
        extra = f", superseded_by={self.superseded_by!r}" if self.superseded_by else ""
        return (
            f"MemoryItem(id={self.id!r}, text={text!r}, ts={self.ts:g}, importance={self.importance:g}, "
            f"level={self.level!r}{extra})"
        )


def recency_weight(ts: float, now: float, half_life_days: float) -> float:
    """``0.5 ** (age_days / half_life_days)``: 1 now, 0.5 one half-life ago; future times count as now.

    >>> recency_weight(0.0, 30 * 86400.0, 30.0)
    0.5
    """
    if not half_life_days > 0:
        raise ValidationError(f"half_life_days={half_life_days!r} must be positive", input=half_life_days)
    age_days = max(0.0, (now - ts) / _DAY)
    if math.isinf(half_life_days):
        return 1.0
    return float(0.5 ** (age_days / half_life_days))


@dataclass(frozen=True)
class Merge:
    """Near-duplicates folded into one item: ``merged_ids`` went into ``kept_id``.

    ``similarity`` is the lowest similarity of a merged item to the kept one.
    """

    kept_id: str
    merged_ids: list[str]
    reason: str
    similarity: float


@dataclass(frozen=True)
class Supersession:
    """``new_id`` replaced ``old_id`` (which stays, marked, as history)."""

    old_id: str
    new_id: str
    reason: str
    similarity: float


# ---------------------------------------------------------------------- summarizers


@runtime_checkable
class Summarizer(Protocol):
    """Anything that turns a list of texts (an episode, oldest first) into one summary text."""

    def summarize(self, texts: list[str]) -> str:
        """One text that says what ``texts`` say, shorter."""
        ...


class ExtractiveSummarizer:
    """Deterministic extractive summary: the most central sentences within a token budget.

    Centroid-based selection (Radev et al.): the texts are cut into sentences; each
    sentence is a TF-IDF vector of its content words (stopwords removed, sentences as the
    documents); the centroid is the mean of those vectors.  A sentence scores the sum of
    the centroid weights of its distinct words (so informative sentences beat "Wow, great!"),
    plus ``lead`` for the first sentence of a text.  Sentences are taken best first,
    skipping any whose cosine similarity to one already taken exceeds ``redundancy`` and any
    that would break ``max_tokens``, then returned in their original order, joined by spaces.
    A sentence from a dialogue turn (``"Ann: ..."``) keeps its speaker.

    Args:
        max_tokens: most tokens of a summary (by :func:`~lumina_lab.memory.chunking.estimate_tokens`).
        redundancy: largest cosine similarity allowed between two chosen sentences.
        lead: score bonus of a text's first sentence, as a share of the best score.

    >>> ExtractiveSummarizer(max_tokens=16).summarize(
    ...     ["Ann: We hiked to the lake. Wow!", "Bob: The lake was cold.", "Ann: We swam in the cold lake anyway."])
    'Bob: The lake was cold. Ann: We swam in the cold lake anyway.'
    """

    name = "extractive"

    def __init__(self, max_tokens: int = 120, *, redundancy: float = 0.6, lead: float = 0.1) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValidationError(f"max_tokens={max_tokens!r} must be a positive integer", input=max_tokens)
        self.max_tokens = max_tokens
        self.redundancy = _check_fraction("redundancy", redundancy)
        self.lead = float(lead)

    def __repr__(self) -> str:
        return f"ExtractiveSummarizer(max_tokens={self.max_tokens}, redundancy={self.redundancy:g})"

    @staticmethod
    def _sentences(texts: list[str]) -> list[tuple[str, bool]]:
        """``(sentence with its speaker, is the first of its text)`` for every sentence."""
        out = []
        for text in texts:
            m = _TURN.match(text)
            prefix, body = (text[: m.end()].strip() + " ", text[m.end() :]) if m else ("", text)
            parts = [p.strip() for p in _SENTENCE_SPLIT.split(body) if p.strip()]
            out.extend((prefix + p, k == 0) for k, p in enumerate(parts))
        return out

    def summarize(self, texts: list[str]) -> str:
        from .topics import terms_of

        texts = _check_texts(texts)
        sents = self._sentences(texts)
        if not sents:
            return ""
        docs = [Counter(terms_of(_TURN.sub("", s, count=1))) for s, _ in sents]
        vocab = sorted({t for d in docs for t in d})
        if not vocab:
            return _fit(sents[0][0], self.max_tokens)
        index = {t: i for i, t in enumerate(vocab)}
        df = np.zeros(len(vocab))
        for d in docs:
            for t in d:
                df[index[t]] += 1
        idf = np.log((1 + len(docs)) / (1 + df)) + 1.0
        mat = np.zeros((len(docs), len(vocab)))
        for r, d in enumerate(docs):
            for t, n in d.items():
                mat[r, index[t]] = (1 + math.log(n)) * idf[index[t]]
        centroid = mat.mean(axis=0)
        scores = (mat > 0) @ centroid
        scores = scores + self.lead * float(scores.max()) * np.array([first for _, first in sents], dtype=float)
        norms = np.linalg.norm(mat, axis=1)
        unit = np.divide(mat, norms[:, None], out=np.zeros_like(mat), where=norms[:, None] > 0)
        chosen: list[int] = []
        used = -1  # characters of the joined summary (no space before the first sentence)
        for r in sorted(range(len(sents)), key=lambda r: (-scores[r], r)):
            if scores[r] <= 0:
                break
            if chosen and float(np.max(unit[chosen] @ unit[r])) > self.redundancy:
                continue
            cost = len(sents[r][0]) + 1
            if used + cost <= 4 * self.max_tokens:
                chosen.append(r)
                used += cost
        if not chosen:  # even the best sentence is too long: cut it at a word
            best = int(np.argmax(scores))
            return _fit(sents[best][0], self.max_tokens)
        return " ".join(sents[r][0] for r in sorted(chosen))


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?\u2026])[\"')\]]*\s+|\n+")


def _fit(text: str, max_tokens: int) -> str:
    """``text`` cut at a word boundary to at most ``max_tokens`` tokens (with an ellipsis when cut)."""
    if estimate_tokens(text) <= max_tokens:
        return text
    cut = text[: 4 * max_tokens - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else cut).rstrip() + "\u2026"


class LLMSummarizer:
    """Summaries written by a chat model: any langchain-core ``BaseChatModel`` (or anything with ``invoke``).

    The model gets a system message (``instructions``) and one human message listing the
    texts, oldest first, one per line; its answer's text is the summary.

    Args:
        chat_model: the chat model, e.g. ``ChatOpenAI(...)`` or langchain's ``FakeListChatModel`` in tests.
        instructions: the system prompt.
        max_input_tokens: the listed texts are cut (oldest kept first) to this many tokens.
        fallback: a summarizer used when the model fails or answers nothing (``None``: raise).

    Raises:
        ProviderError: from :meth:`summarize` when the model fails and there is no fallback.
    """

    DEFAULT_INSTRUCTIONS = (
        "You consolidate an agent's memory. Summarise the following conversation excerpts or notes "
        "into a few factual sentences in the third person: keep names, dates, numbers, preferences and "
        "decisions; drop greetings and small talk. Answer with the summary only."
    )

    def __init__(
        self,
        chat_model: Any,
        *,
        instructions: str | None = None,
        max_input_tokens: int = 6000,
        fallback: Summarizer | None = None,
    ) -> None:
        if not callable(getattr(chat_model, "invoke", None)):
            raise ValidationError(
                f"{type(chat_model).__name__} has no invoke(): not a langchain chat model",
                input=chat_model,
                hint="pass a langchain_core BaseChatModel, e.g. ChatOpenAI(model=...)",
            )
        self.chat_model = chat_model
        self.instructions = instructions or self.DEFAULT_INSTRUCTIONS
        self.max_input_tokens = max_input_tokens
        self.fallback = fallback
        self.name = f"llm:{type(chat_model).__name__}"

    def __repr__(self) -> str:
        return f"LLMSummarizer({type(self.chat_model).__name__})"

    def messages(self, texts: list[str]) -> list[Any]:
        """The messages sent to the model for ``texts``."""
        from langchain_core.messages import HumanMessage, SystemMessage

        lines, used = [], 0
        for t in _check_texts(texts):
            line = "- " + " ".join(t.split())
            used += estimate_tokens(line) + 1
            if used > self.max_input_tokens and lines:
                break
            lines.append(line)
        return [SystemMessage(content=self.instructions), HumanMessage(content="\n".join(lines))]

    @staticmethod
    def _text(answer: Any) -> str:
        content = getattr(answer, "content", answer)
        if isinstance(content, list):  # content blocks
            content = "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
        return str(content).strip()

    def summarize(self, texts: list[str]) -> str:
        try:
            text = self._text(self.chat_model.invoke(self.messages(texts)))
            if not text:
                raise ProviderError(f"{type(self.chat_model).__name__} answered with an empty summary")
            return text
        except Exception as exc:
            if self.fallback is not None:
                return self.fallback.summarize(texts)
            if isinstance(exc, ProviderError | ValidationError):
                raise
            raise ProviderError(
                f"{type(self.chat_model).__name__} failed to summarise: {exc}",
                hint="check the model, or pass fallback=ExtractiveSummarizer()",
            ) from exc

    async def asummarize(self, texts: list[str]) -> str:
        """:meth:`summarize` through the model's ``ainvoke``."""
        try:
            text = self._text(await self.chat_model.ainvoke(self.messages(texts)))
            if not text:
                raise ProviderError(f"{type(self.chat_model).__name__} answered with an empty summary")
            return text
        except Exception as exc:
            if self.fallback is not None:
                return self.fallback.summarize(texts)
            if isinstance(exc, ProviderError | ValidationError):
                raise
            raise ProviderError(f"{type(self.chat_model).__name__} failed to summarise: {exc}") from exc


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise ValidationError("summarize() takes a list of strings", input=type(texts).__name__)
    return list(texts)


# ---------------------------------------------------------------------- report


@dataclass
class ConsolidationReport:
    """What :func:`consolidate` decided, and the items that result.

    Attributes:
        items: the consolidated items: kept and superseded ones (marked) in input order,
            then new summaries.  Merged-away items are not here (see :attr:`removed_ids`).
        merges: near-duplicate merges.
        supersessions: outdated facts replaced by newer ones.
        scores: ``{id: importance * recency weight}`` for every item of ``items``.
        summaries: the new semantic items (also at the end of ``items``).
        now: the time the scores were computed at (epoch seconds).
        ms: how long consolidation took.
    """

    items: list[MemoryItem]
    merges: list[Merge] = field(default_factory=list)
    supersessions: list[Supersession] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    summaries: list[MemoryItem] = field(default_factory=list)
    now: float = 0.0
    ms: float = 0.0

    @property
    def active(self) -> list[MemoryItem]:
        """Items not superseded, in the order of :attr:`items`."""
        return [it for it in self.items if it.superseded_by is None]

    @property
    def removed_ids(self) -> list[str]:
        """Ids of the items merged into others (no longer in :attr:`items`)."""
        return [i for m in self.merges for i in m.merged_ids]

    @property
    def superseded_ids(self) -> list[str]:
        """Ids of the items superseded by this consolidation."""
        return [s.old_id for s in self.supersessions]

    def get(self, item_id: str) -> MemoryItem | None:
        """The item with id ``item_id`` in :attr:`items`, or ``None``."""
        return next((it for it in self.items if it.id == item_id), None)

    def ranked(self) -> list[MemoryItem]:
        """Active items by score, highest first (ties by id)."""
        return sorted(self.active, key=lambda it: (-self.scores.get(it.id, 0.0), it.id))

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision as a dict: ``action`` (merge, supersede, summarize), ``id`` (the item kept,
        the new one, or the summary), ``other_ids``, ``reason``, ``similarity``."""
        rows: list[dict[str, Any]] = []
        for m in self.merges:
            rows.append(
                {
                    "action": "merge",
                    "id": m.kept_id,
                    "other_ids": list(m.merged_ids),
                    "reason": m.reason,
                    "similarity": m.similarity,
                }
            )
        for s in self.supersessions:
            rows.append(
                {
                    "action": "supersede",
                    "id": s.new_id,
                    "other_ids": [s.old_id],
                    "reason": s.reason,
                    "similarity": s.similarity,
                }
            )
        for it in self.summaries:
            src = list(it.metadata.get("source_ids", []))
            rows.append(
                {
                    "action": "summarize",
                    "id": it.id,
                    "other_ids": src,
                    "reason": f"episode {it.metadata.get('episode')!r}: {len(src)} items",
                    "similarity": None,
                }
            )
        return rows

    def df(self) -> pd.DataFrame:
        """The decisions as a DataFrame (see :meth:`decisions`)."""
        import pandas as pd

        return pd.DataFrame(self.decisions(), columns=["action", "id", "other_ids", "reason", "similarity"])

    def items_df(self) -> pd.DataFrame:
        """The items as a DataFrame: id, level, ts, importance, score, superseded_by, text."""
        import pandas as pd

        rows = [
            {
                "id": it.id,
                "level": it.level,
                "ts": it.ts,
                "importance": it.importance,
                "score": self.scores.get(it.id),
                "superseded_by": it.superseded_by,
                "text": it.text,
            }
            for it in self.items
        ]
        return pd.DataFrame(rows, columns=["id", "level", "ts", "importance", "score", "superseded_by", "text"])

    def __repr__(self) -> str:
        return (
            f"ConsolidationReport(items={len(self.items)}, active={len(self.active)}, merges={len(self.merges)}, "
            f"supersessions={len(self.supersessions)}, summaries={len(self.summaries)})"
        )

    def _repr_html_(self) -> str:
        from html import escape

        head = (
            f"<b>Consolidation</b>: {len(self.items)} items ({len(self.active)} active); "
            f"{len(self.merges)} merges ({len(self.removed_ids)} items folded), "
            f"{len(self.supersessions)} supersessions, {len(self.summaries)} summaries"
        )
        rows = self.decisions()
        if not rows:
            return head
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{escape(str(v if not isinstance(v, float) else round(v, 3)))}</td>"
                for v in (r["action"], r["id"], ", ".join(map(str, r["other_ids"])), r["reason"], r["similarity"])
            )
            + "</tr>"
            for r in rows[:100]
        )
        more = f"<p>... {len(rows) - 100} more</p>" if len(rows) > 100 else ""
        return (
            f"{head}<table><tr><th>action</th><th>id</th><th>other ids</th><th>reason</th><th>similarity</th></tr>"
            f"{body}</table>{more}"
        )


# ---------------------------------------------------------------------- heuristics

_WORDS = re.compile(r"[\w']+")
_NORM = re.compile(r"[^\w]+")
_NEGATIONS = _wordset(
    "not no never don't doesn't didn't isn't aren't wasn't weren't won't can't cannot haven't hasn't "
    "anymore longer nobody nothing neither nor"
)
_STATE_CUES = _wordset(
    "is are am i'm we're he's she's it's they're you're live lives living work works working now currently "
    "moved prefer prefers preferred favorite favourite status located based usually "
    "costs cost due scheduled set"
)
_AMBIGUOUS = _wordset("he she it they his her its their him them he's she's it's they're this that these those")
_PRONOUNS = {
    "i": "self", "i'm": "self", "me": "self", "my": "self", "mine": "self",
    "we": "we", "our": "we", "us": "we", "we're": "we",
    "he": "he", "his": "he", "him": "he", "he's": "he",
    "she": "she", "her": "she", "she's": "she",
    "they": "they", "their": "they", "they're": "they",
}  # fmt: skip
_ATTR_NOUN = re.compile(  # attributes that hold one value at a time
    r"(?:^|\s)(?:favou?rite\s+\w+|name|nickname|age|birthday|phone|phone number|number|email|address|job|"
    r"job title|title|role|position|city|country|hometown|deadline|salary|manager|boss|partner|wife|husband|"
    r"girlfriend|boyfriend|major|password|timezone|time zone|employer|company|pronouns)$"
)
# subjects: first person or a name (a third-person pronoun may mean anyone, so it never matches)
_SUBJ = r"(?P<subj>\b(?:[Ii]|[Ww]e|(?!(?:He|She|They|It|This|That|There)\b)[A-Z][\w'-]+(?:\s[A-Z][\w'-]+)?))"
_VALUE = r"(?P<value>[^.,;!?\n]+)"
_BE = r"(?:\s*'m|\s*'s|\s*'re|\s+am|\s+is|\s+are)?"
_ADV = r"(?:\s+(?i:now|currently|still|just|recently|finally|actually))?"
_SLOTS: list[tuple[str, re.Pattern[str]]] = [
    (
        "location",
        re.compile(
            _SUBJ + _BE + _ADV + r"\s+(?i:live|lives|living|reside|resides|residing|moved|relocated|"
            r"have\s+moved|has\s+moved|moving|am\s+moving|based)\s+(?i:in|to|into|at)\s+" + _VALUE
        ),
    ),
    (
        "employer",
        re.compile(
            _SUBJ + _BE + _ADV + r"\s+(?i:work|works|working|started\s+working|am\s+working|employed)\s+"
            r"(?i:at|for|by)\s+" + _VALUE
        ),
    ),
    (
        "employer",
        re.compile(
            _SUBJ + _ADV + r"\s+(?i:(?:got|took|accepted|started)\s+(?:a\s+)?(?:new\s+)?job\s+(?:at|with))\s+" + _VALUE
        ),
    ),
    (
        "age",
        re.compile(
            _SUBJ
            + r"(?:\s*'m|\s*'s|\s+am|\s+is|\s+turned)\s+(?:now\s+)?(?P<value>\d{1,3})(?:\s+years?\s+old)?(?=\s*(?:[.,;!?]|$))"
        ),
    ),
    (
        "attribute",
        re.compile(
            r"(?P<subj>\b(?i:my|our)|\b(?!(?:He|She|It|That|There)'s)[A-Z][\w-]+'s)\s+(?P<attr>[a-z][a-z -]{0,30}?)\s+"
            r"(?i:is|are|was\s+changed\s+to|has\s+changed\s+to|changed\s+to)(?:\s+(?i:now|still))?\s+" + _VALUE
        ),
    ),
]
_VALUE_STOP = re.compile(
    r"\s+(?:now|last|this|next|since|with|because|for|and|but|after|before|when|as|so|from|until|today|in|on|during|"
    r"yesterday|tomorrow|again|anymore|recently)\b.*$",
    re.I,
)


def _strip_speaker(text: str) -> tuple[str | None, str]:
    m = _TURN.match(text)
    if m is None:
        return None, text
    return m.group(0).strip(" \t*:").lower(), text[m.end() :]


def _owner(item: MemoryItem) -> str | None:
    for key in _OWNER_KEYS:
        v = item.metadata.get(key)
        if isinstance(v, str) and v.strip():
            return v.strip().lower()
    return _strip_speaker(item.text)[0]


def _norm_value(value: str) -> str:
    value = _VALUE_STOP.sub("", value.strip())
    words = [w for w in _WORDS.findall(value.lower()) if w not in ("the", "a", "an")]
    return " ".join(words[:5])


def _slots(text: str) -> dict[tuple[str, str], str]:
    """``{(subject, attribute): value}`` of the facts a text states, by the slot patterns."""
    body = _strip_speaker(text)[1]
    out: dict[tuple[str, str], str] = {}
    for attr, pattern in _SLOTS:
        for m in pattern.finditer(body):
            subj = m.group("subj").lower()
            if subj.endswith("'s"):
                subj = subj[:-2]
            subj = _PRONOUNS.get(subj, subj)
            name = attr
            if attr == "attribute":
                a = " ".join(m.group("attr").lower().split())
                if not _ATTR_NOUN.search(a):
                    continue
                name = a
            value = _norm_value(m.group("value"))
            if value:
                out.setdefault((subj, name), value)
    return out


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORDS.findall(_strip_speaker(text)[1])]


def _conflict(old: str, new: str) -> str | None:
    """Why ``new`` contradicts ``old`` by the aligned-values heuristic, or ``None``."""
    a, b = _words(old), _words(new)
    if len(a) < 2 or len(b) < 2:
        return None
    ops = SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    equal = [a[i1:i2] for tag, i1, i2, _, _ in ops if tag == "equal"]
    shared = sum(len(e) for e in equal)
    if shared < 2 or shared < 0.5 * max(len(a), len(b)):
        return None
    if ops[0][0] != "equal" or a[0] in _AMBIGUOUS:  # the same subject, and one we can tell apart
        return None
    neg_a, neg_b = set(a) & _NEGATIONS, set(b) & _NEGATIONS
    if neg_a != neg_b:
        changed = [w for tag, i1, i2, j1, j2 in ops if tag != "equal" for w in a[i1:i2] + b[j1:j2]]
        if all(w in _NEGATIONS or w in STOPWORDS for w in changed):
            return f"negation changed: {' '.join(a)!r} -> {' '.join(b)!r}"
        return None
    if not any(w in _STATE_CUES for e in equal for w in e):
        return None
    olds, news = [], []
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            continue
        x, y = a[i1:i2], b[j1:j2]
        if tag != "replace":
            if any(w not in STOPWORDS for w in x + y):  # added or dropped content: an elaboration, not a change
                return None
            continue
        if len(x) > 4 or len(y) > 4:
            return None
        if not any(w not in STOPWORDS for w in x) or not any(w not in STOPWORDS for w in y):
            continue
        olds.append(" ".join(x))
        news.append(" ".join(y))
    if not olds:
        return None
    return f"same subject, value changed: {', '.join(olds)!r} -> {', '.join(news)!r}"


def _norm_text(text: str) -> str:
    return " ".join(_NORM.sub(" ", text.lower()).split())


def _episode(item: MemoryItem) -> str:
    for key in ("episode", "session"):
        v = item.metadata.get(key)
        if v is not None:
            return str(v)
    return datetime.fromtimestamp(item.ts, UTC).date().isoformat()


# ---------------------------------------------------------------------- validation


def _check_items(items: Any) -> list[MemoryItem]:
    if isinstance(items, MemoryItem | str) or not isinstance(items, Sequence):
        raise ValidationError(
            "items must be a list of MemoryItem", input=type(items).__name__, hint="wrap a single item in a list"
        )
    out: list[MemoryItem] = []
    seen: set[str] = set()
    for k, it in enumerate(items):
        if isinstance(it, Mapping):
            try:
                it = MemoryItem(**it)
            except TypeError as exc:
                raise ValidationError(f"item {k} is not a MemoryItem: {exc}", input=it) from None
        if not isinstance(it, MemoryItem):
            raise ValidationError(f"item {k} is a {type(it).__name__}, not a MemoryItem", input=it)
        if not isinstance(it.id, str) or not it.id:
            raise ValidationError(f"item {k} has id {it.id!r}; ids must be non-empty strings", input=it.id)
        if it.id in seen:
            raise ValidationError(f"item id {it.id!r} appears twice", input=it.id, hint="give every item its own id")
        seen.add(it.id)
        if not isinstance(it.text, str):
            raise ValidationError(f"item {it.id!r}: text must be a string", input=it.text)
        if isinstance(it.ts, bool) or not isinstance(it.ts, int | float) or not math.isfinite(it.ts):
            raise ValidationError(f"item {it.id!r}: ts={it.ts!r} must be finite epoch seconds", input=it.ts)
        imp = it.importance
        if isinstance(imp, bool) or not isinstance(imp, int | float) or not math.isfinite(imp) or imp < 0:
            raise ValidationError(f"item {it.id!r}: importance={imp!r} must be a finite number >= 0", input=imp)
        if it.level not in LEVELS:
            raise ValidationError(
                f"item {it.id!r}: level={it.level!r} is not a memory level", input=it.level, hint=f"use one of {LEVELS}"
            )
        if not isinstance(it.metadata, dict):
            raise ValidationError(f"item {it.id!r}: metadata must be a dict", input=it.metadata)
        out.append(
            dataclasses.replace(
                it,
                ts=float(it.ts),
                importance=float(imp),
                metadata=dict(it.metadata),
                history=[dict(h) for h in it.history],
            )
        )
    return out


def _check_fraction(name: str, value: Any, lo: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo < float(value) <= 1.0:
        raise ValidationError(f"{name}={value!r} must be a number in ({lo:g}, 1]", input=value)
    return float(value)


def _vectors(items: list[MemoryItem], embedder: Any) -> tuple[np.ndarray, Any]:
    """Unit vectors of ``items`` (rows) and the embedder used (``None`` when all came with vectors)."""
    if not items:
        return np.zeros((0, 1), np.float32), None
    missing = [k for k, it in enumerate(items) if it.vector is None]
    emb = None
    if missing:
        if embedder is None and len(missing) < len(items):
            raise ValidationError(
                f"{len(items) - len(missing)} items have vectors and {len(missing)} do not "
                f"(first without: {items[missing[0]].id!r})",
                input=items[missing[0]].id,
                hint="pass embedder= the embedder that made the vectors, so the others can be embedded alike",
            )
        if embedder is None:
            from .embeddings import HashingEmbedder

            emb = HashingEmbedder()
        else:
            from .embeddings import _is_embedder, embedder_from

            emb = embedder if _is_embedder(embedder) else embedder_from(embedder)
        new = np.asarray(emb.embed([items[k].text for k in missing]), dtype=np.float32)
        for k, row in zip(missing, new, strict=True):
            items[k].vector = row
    dims = {np.asarray(it.vector).shape for it in items}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        raise ValidationError(f"item vectors have different or non-1-D shapes: {sorted(dims)}", input=sorted(dims))
    mat = np.stack([np.asarray(it.vector, dtype=np.float32) for it in items])
    if not np.all(np.isfinite(mat)):
        raise ValidationError("an item vector contains NaN or infinite values", input="vector")
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    mat = np.divide(mat, norms, out=np.zeros_like(mat), where=norms > 0)
    return mat, emb


def _pairs(mat: np.ndarray, threshold: float, block: int = 1024) -> dict[int, list[tuple[int, float]]]:
    """``{j: [(i, sim), ...]}`` for rows ``i < j`` with cosine ``>= threshold``."""
    out: dict[int, list[tuple[int, float]]] = {}
    n = len(mat)
    for lo in range(0, n, block):
        sims = mat[lo : lo + block] @ mat[: lo + block].T
        rows, cols = np.nonzero(sims >= threshold)
        for r, i in zip(rows.tolist(), cols.tolist(), strict=True):
            j = lo + r
            if i < j:
                out.setdefault(j, []).append((i, float(sims[r, i])))
    return out


# ---------------------------------------------------------------------- consolidate


def consolidate(
    items: Sequence[MemoryItem],
    *,
    now: float | None = None,
    duplicate_threshold: float = 0.92,
    supersede: bool | Callable[[MemoryItem, MemoryItem], str | None] = True,
    half_life_days: float = 30.0,
    summarize_older_than_days: float | None = None,
    summarizer: Summarizer | None = None,
    embedder: Any = None,
    supersede_threshold: float = 0.5,
    min_episode_items: int = 2,
    bus: InProcessBus | None = None,
) -> ConsolidationReport:
    """Merge near-duplicates, supersede outdated facts, score, and summarise old episodes (see the module docs).

    Args:
        items: the memory items (not modified; the report holds copies).  An empty list gives an empty report.
        now: epoch seconds to score against (default: the wall clock).
        duplicate_threshold: cosine similarity at or above which items are near-duplicates, in ``(0, 1]``.
        supersede: ``True`` for the built-in heuristics, ``False`` for none, or a function
            ``(old, new) -> reason | None`` tried on each pair of the same owner that is at least
            ``supersede_threshold`` similar or shares a slot.
        half_life_days: days after which a score halves (``> 0``; ``math.inf``: no decay).
        summarize_older_than_days: summarise episodes older than this many days (``None``: never).
        summarizer: writes the summaries (default :class:`ExtractiveSummarizer`).
        embedder: embeds items without vectors (and summaries); default a ``HashingEmbedder``
            when no item has a vector.  When some items have vectors, pass the embedder that made them.
        supersede_threshold: least cosine similarity for the aligned-values heuristic, in ``(0, 1]``.
        min_episode_items: least items of an episode worth a summary.
        bus: publishes a ``memory.consolidated`` event there when given.

    Raises:
        ValidationError: malformed items (duplicate ids, bad ts/importance/level/vectors), or a bad
            threshold, half-life, age or summarizer.
    """
    t0 = time.perf_counter()
    work = _check_items(items)
    dup_thr = _check_fraction("duplicate_threshold", duplicate_threshold)
    sup_thr = _check_fraction("supersede_threshold", supersede_threshold)
    if isinstance(half_life_days, bool) or not isinstance(half_life_days, int | float) or not half_life_days > 0:
        raise ValidationError(
            f"half_life_days={half_life_days!r} must be a positive number of days", input=half_life_days
        )
    if summarize_older_than_days is not None and (
        isinstance(summarize_older_than_days, bool)
        or not isinstance(summarize_older_than_days, int | float)
        or not summarize_older_than_days >= 0
    ):
        raise ValidationError(
            f"summarize_older_than_days={summarize_older_than_days!r} must be a number of days >= 0 or None",
            input=summarize_older_than_days,
        )
    if summarizer is not None and not callable(getattr(summarizer, "summarize", None)):
        raise ValidationError(
            f"summarizer={summarizer!r} has no summarize(texts) method",
            input=summarizer,
            hint="pass ExtractiveSummarizer(), LLMSummarizer(chat_model) or an object with summarize(list[str]) -> str",
        )
    if not (isinstance(supersede, bool) or callable(supersede)):
        raise ValidationError(
            f"supersede={supersede!r} must be True, False or a function (old, new) -> reason", input=supersede
        )
    if isinstance(min_episode_items, bool) or not isinstance(min_episode_items, int) or min_episode_items < 1:
        raise ValidationError(
            f"min_episode_items={min_episode_items!r} must be a positive integer", input=min_episode_items
        )
    now_s = time.time() if now is None else float(now)

    mat, used_embedder = _vectors(work, embedder)
    active = [k for k, it in enumerate(work) if it.superseded_by is None]
    order = sorted(active, key=lambda k: (work[k].ts, k))
    sub = mat[order]
    owners = [_owner(work[k]) for k in order]
    norms = [_norm_text(work[k].text) for k in order]
    near = _pairs(sub, min(dup_thr, sup_thr) if supersede else dup_thr)

    # 1. merges: leaders in time order
    leader_of: dict[int, int] = {}
    groups: dict[int, list[tuple[int, float, str]]] = {}
    exact: dict[tuple[str | None, str, str], int] = {}
    for j in range(len(order)):
        best, best_sim, reason = -1, -1.0, ""
        key = (owners[j], work[order[j]].level, norms[j])
        if norms[j] and key in exact:
            best, best_sim, reason = exact[key], 1.0, "same text (case, spacing and punctuation aside)"
        else:
            for i, s in near.get(j, ()):
                if (
                    s < dup_thr
                    or i in leader_of
                    or owners[i] != owners[j]
                    or work[order[i]].level != work[order[j]].level
                ):
                    continue
                if s > best_sim:
                    best, best_sim, reason = i, s, f"near-duplicate (cosine {s:.3f})"
        if best >= 0:
            leader_of[j] = best
            groups.setdefault(best, []).append((j, best_sim, reason))
        elif norms[j]:
            exact.setdefault(key, j)
    merges: list[Merge] = []
    for i, members in sorted(groups.items()):
        keep = work[order[i]]
        for j, s, reason in members:
            gone = work[order[j]]
            keep.history.extend(gone.history)
            keep.history.append(
                {
                    "op": "merged",
                    "id": gone.id,
                    "text": gone.text,
                    "ts": gone.ts,
                    "similarity": round(s, 6),
                    "reason": reason,
                }
            )
            keep.ts = max(keep.ts, gone.ts)
            keep.importance = max(keep.importance, gone.importance)
        keep.metadata["mentions"] = int(keep.metadata.get("mentions", 1)) + len(members)
        keep.metadata["merged_ids"] = [
            *keep.metadata.get("merged_ids", []),
            *(work[order[j]].id for j, _, _ in members),
        ]
        reasons = {r for _, _, r in members}
        merges.append(
            Merge(
                kept_id=keep.id,
                merged_ids=[work[order[j]].id for j, _, _ in members],
                reason=reasons.pop() if len(reasons) == 1 else "; ".join(sorted(reasons)),
                similarity=round(min(s for _, s, _ in members), 6),
            )
        )
    gone_rows = set(leader_of)

    # 2. supersessions: newer (by the time order; merged leaders keep their first position) over older
    supersessions: list[Supersession] = []
    if supersede:
        survivors = [j for j in range(len(order)) if j not in gone_rows]
        slots = {j: _slots(work[order[j]].text) for j in survivors}
        survivors.sort(key=lambda j: (work[order[j]].ts, j))  # reinforced facts count as restated
        pos = {j: p for p, j in enumerate(survivors)}
        nbrs: dict[int, list[tuple[int, float]]] = {}
        for j, lst in near.items():
            for i, s in lst:
                if i in pos and j in pos and s >= sup_thr:
                    nbrs.setdefault(j, []).append((i, s))
                    nbrs.setdefault(i, []).append((j, s))
        slot_index: dict[tuple[str | None, str, str], list[tuple[int, str]]] = {}
        superseded: set[int] = set()
        for j in survivors:
            new = work[order[j]]
            candidates: dict[int, tuple[str | None, float]] = {}
            for (subj, attr), value in slots[j].items():
                for i, old_value in slot_index.get((owners[j], subj, attr), ()):
                    if old_value != value and i not in superseded:
                        why = f"newer {attr} of {subj}: {old_value!r} -> {value!r}"
                        candidates.setdefault(i, (why, float(sub[i] @ sub[j])))
            for i, s in nbrs.get(j, ()):
                if pos[i] < pos[j] and i not in superseded and i not in candidates and owners[i] == owners[j]:
                    candidates[i] = (None, s)
            for i, (why, s) in sorted(candidates.items(), key=lambda c: pos[c[0]]):
                old = work[order[i]]
                if callable(supersede) and not isinstance(supersede, bool):
                    why = supersede(old, new)
                elif why is None and s < dup_thr:
                    why = _conflict(old.text, new.text)
                if not why:
                    continue
                superseded.add(i)
                old.superseded_by = new.id
                new.history.extend(old.history)
                new.history.append({"op": "supersedes", "id": old.id, "text": old.text, "ts": old.ts, "reason": why})
                supersessions.append(Supersession(old.id, new.id, why, round(s, 6)))
            for key, value in slots[j].items():
                slot_index.setdefault((owners[j], *key), []).append((j, value))

    result = [it for k, it in enumerate(work) if k not in {order[j] for j in gone_rows}]

    # 3. summaries of old episodes
    summaries: list[MemoryItem] = []
    if summarize_older_than_days is not None:
        writer: Any = summarizer if summarizer is not None else ExtractiveSummarizer()
        cutoff = now_s - float(summarize_older_than_days) * _DAY
        episodes: dict[str, list[MemoryItem]] = {}
        for it in sorted(result, key=lambda it: it.ts):
            if (
                it.level == "episodic"
                and it.superseded_by is None
                and it.ts < cutoff
                and "summarized_into" not in it.metadata
            ):
                episodes.setdefault(_episode(it), []).append(it)
        for key, members in episodes.items():
            if len(members) < min_episode_items:
                continue
            text = writer.summarize([m.text for m in members])
            if not isinstance(text, str) or not text.strip():
                continue
            source_ids = [m.id for m in members]
            sid = "summary-" + hashlib.blake2b("\x1f".join(source_ids).encode(), digest_size=6).hexdigest()
            vector = None
            if used_embedder is not None or embedder is not None:
                from .embeddings import _is_embedder, embedder_from

                emb = used_embedder or (embedder if _is_embedder(embedder) else embedder_from(embedder))
                vector = np.asarray(emb.embed([text]), dtype=np.float32)[0]
            summary = MemoryItem(
                id=sid,
                text=text.strip(),
                vector=vector,
                ts=max(m.ts for m in members),
                importance=max(m.importance for m in members),
                metadata={
                    "source_ids": source_ids,
                    "episode": key,
                    "summarizer": getattr(writer, "name", type(writer).__name__),
                },
                level="semantic",
                history=[{"op": "summarized", "ids": source_ids, "episode": key}],
            )
            for m in members:
                m.metadata["summarized_into"] = sid
            summaries.append(summary)
        result.extend(summaries)

    # 4. scores
    hl = float(half_life_days)
    scores = {it.id: it.importance * recency_weight(it.ts, now_s, hl) for it in result}
    ms = (time.perf_counter() - t0) * 1000.0
    report = ConsolidationReport(
        items=result,
        merges=merges,
        supersessions=supersessions,
        scores=scores,
        summaries=summaries,
        now=now_s,
        ms=ms,
    )
    if bus is not None:
        from .compression_events import MemoryConsolidated, emit

        emit(
            bus,
            MemoryConsolidated,
            items=len(work),
            merged=len(report.removed_ids),
            superseded=len(supersessions),
            summarized=len(summaries),
            summarized_items=sum(len(s.metadata["source_ids"]) for s in summaries),
            active=len(report.active),
            ms=ms,
            summarizer=None if not summaries else summaries[0].metadata.get("summarizer"),
        )
    return report
