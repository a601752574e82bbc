"""A small reader for LoCoMo-format conversation files (long-term conversational memory benchmark).

LoCoMo (snap-research/LoCoMo, CC BY-NC 4.0: research and evaluation use only, never shipped
with the project) is a JSON list of samples.  Each sample has a ``sample_id``; a
``conversation`` with ``speaker_a``, ``speaker_b``, ``session_N_date_time`` (``"1:56 pm on
8 May, 2023"``) and ``session_N`` (a list of turns: ``speaker``, ``dia_id`` like ``"D1:3"``,
``text``, optional ``blip_caption``); and ``qa`` items with ``question``, ``answer``
(``adversarial_answer`` in category 5), ``evidence`` (a list of ``dia_id``) and ``category``.

:func:`load_locomo` reads such a file into :class:`Conversation` objects, doing once what
every user of the data needs:

* **evidence ids** are normalised (:func:`normalise_evidence`): ``"D8:6; D9:17"`` is two ids,
  ``"D:11:26"`` is ``D11:26``, ``"D30:05"`` is ``D30:5``; ids naming no turn are dropped, and a
  question left without evidence (or without text) is skipped and counted in ``skipped``;
* **session dates** become epoch seconds (UTC, :func:`session_time`); a session without a
  date gets day ``N`` after the epoch, so sessions keep their order;
* **categories** get their names (:data:`CATEGORIES`, the mapping of Mem0's evaluation:
  1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial);
* turns with neither text nor image caption are dropped (there is nothing to remember).

>>> import json, tempfile, pathlib
>>> sample = {"sample_id": "s1", "conversation": {"speaker_a": "Ann", "speaker_b": "Bob",
...     "session_1_date_time": "1:56 pm on 8 May, 2023",
...     "session_1": [{"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a beagle."},
...                   {"speaker": "Bob", "dia_id": "D1:2", "text": "Lovely!"}]},
...     "qa": [{"question": "What did Ann adopt?", "answer": "a beagle", "evidence": ["D1:01"], "category": 4}]}
>>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.json"
>>> _ = path.write_text(json.dumps([sample]))
>>> (conv,) = load_locomo(path)
>>> conv.id, len(conv.turns), conv.questions[0].evidence, conv.questions[0].category_name
('s1', 2, ['D1:1'], 'single-hop')
>>> conv.turns[0].line()
'Ann: I adopted a beagle.'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .entities import to_datetime

__all__ = [
    "CATEGORIES",
    "Conversation",
    "LoCoMoError",
    "Question",
    "Turn",
    "compression_examples",
    "default_path",
    "load_locomo",
    "normalise_evidence",
    "session_time",
]

CATEGORIES: dict[int, str] = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
"""LoCoMo question categories by number (the mapping used by Mem0's evaluation)."""

_SESSION = re.compile(r"^session_(\d+)$")
_EVIDENCE = re.compile(r"D:?(\d+):0*(\d+)")
_FIX = (
    "pass a JSON file in LoCoMo's format (a list of samples with 'conversation' and 'qa'); the shared copy "
    "is ../shared/datasets/locomo/locomo7.json beside the checkout (see its SOURCE.md), or set LUMINA_LOCOMO"
)


class LoCoMoError(ValidationError):
    """A LoCoMo file is missing, unreadable or not in LoCoMo's format (the message names the path)."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn: ``dia_id`` (``"D3:7"``), ``speaker``, ``text`` (may be empty when an image was shared),
    ``session`` number, ``index`` within the session (0-based), ``ts`` (the session's date, epoch
    seconds) and the image ``caption`` (``None`` without one)."""

    dia_id: str
    speaker: str
    text: str
    session: int
    index: int
    ts: float
    caption: str | None = None

    def line(self, caption_prefix: str = "") -> str:
        """``"Speaker: text [caption]"`` (``"(shared an image)"`` for a turn without text);
        ``caption_prefix`` goes before the caption inside the brackets (e.g. ``"shared image: "``)."""
        body = self.text if self.text.strip() else "(shared an image)"
        out = f"{self.speaker}: {body}"
        return out + (f" [{caption_prefix}{self.caption}]" if self.caption else "")

    def as_item(self) -> dict[str, Any]:
        """A mapping for :meth:`~lumina_lab.memory.conversation.ConversationMemory.remember_many`:
        ``speaker``, ``text``, ``dia_id``, ``blip_caption``, ``session`` (a str) and ``ts``."""
        return {
            "speaker": self.speaker,
            "text": self.text if self.text.strip() else "(shared an image)",
            "dia_id": self.dia_id,
            "blip_caption": self.caption,
            "session": str(self.session),
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class Question:
    """One question: text, ``answer`` (the adversarial answer in category 5), normalised ``evidence``
    ids (each names a turn of the conversation, never empty) and ``category`` (a number)."""

    question: str
    answer: str
    evidence: list[str]
    category: int

    @property
    def category_name(self) -> str:
        """``"multi-hop"``, ``"temporal"``, ``"open-domain"``, ``"single-hop"``, ``"adversarial"``
        (``"category-N"`` for a number outside :data:`CATEGORIES`)."""
        return CATEGORIES.get(self.category, f"category-{self.category}")


@dataclass(slots=True)
class Conversation:
    """One LoCoMo sample: ``id``, ``speakers``, ``turns`` in order, ``session_dates`` (session
    number → the date as written), ``questions`` and ``skipped`` (questions without usable evidence)."""

    id: str
    speakers: list[str]
    turns: list[Turn]
    session_dates: dict[int, str] = field(default_factory=dict)
    questions: list[Question] = field(default_factory=list)
    skipped: int = 0

    def sessions(self) -> dict[int, list[Turn]]:
        """Turns grouped by session number, sessions in order."""
        out: dict[int, list[Turn]] = {}
        for t in self.turns:
            out.setdefault(t.session, []).append(t)
        return out

    def __repr__(self) -> str:
        return (
            f"Conversation({self.id!r}, {len(self.turns)} turns in {len(self.sessions())} sessions, "
            f"{len(self.questions)} questions)"
        )


def normalise_evidence(evidence: Iterable[Any], known: Iterable[str] | None = None) -> list[str]:
    """Evidence ids as ``D<session>:<turn>``: split, repaired, de-duplicated, in order.

    ``known``: if given, ids outside it are dropped (they name no turn).

    >>> normalise_evidence(["D8:6; D9:17", "D:11:26", "D30:05", "D8:6"])
    ['D8:6', 'D9:17', 'D11:26', 'D30:5']
    >>> normalise_evidence(["D1:1", "D1:9"], known={"D1:1"})
    ['D1:1']
    """
    keep = set(known) if known is not None else None
    out = []
    for e in evidence:
        for part in re.split(r"[;,\s]+", str(e)):
            m = _EVIDENCE.fullmatch(part.strip())
            if m:
                i = f"D{int(m.group(1))}:{int(m.group(2))}"
                if keep is None or i in keep:
                    out.append(i)
    return list(dict.fromkeys(out))


def session_time(text: str) -> float:
    """Epoch seconds (UTC) of a LoCoMo session date like ``"1:56 pm on 8 May, 2023"``.

    >>> session_time("1:56 pm on 8 May, 2023")
    1683554160.0

    Raises:
        ValidationError: the text is not a date.
    """
    return to_datetime(text).timestamp()


def default_path() -> Path:
    """``$LUMINA_LOCOMO`` if set, else ``../shared/datasets/locomo/locomo7.json`` beside the checkout."""
    env = os.environ.get("LUMINA_LOCOMO")
    if env:
        return Path(env).expanduser()
    from ..data import checkout

    return checkout().parent / "shared" / "datasets" / "locomo" / "locomo7.json"


def _fail(path: Path, what: str) -> LoCoMoError:
    return LoCoMoError(f"{path} is not a LoCoMo file: {what}", input=str(path), hint=_FIX)


def load_locomo(path: str | os.PathLike[str] | None = None, *, limit: int | None = None) -> list[Conversation]:
    """Read a LoCoMo-format JSON file (default: :func:`default_path`) into conversations.

    Args:
        path: the file.
        limit: keep the first ``limit`` conversations only.

    Raises:
        LoCoMoError: the file is missing or unreadable, is not JSON, or a sample lacks its
            ``conversation``, has a session that is not a list of turns, a turn without
            ``speaker``/``dia_id``, or a session date that cannot be read.  The message names the
            path and the place in the file; the hint says where the shared copy is.
    """
    p = Path(path).expanduser() if path is not None else default_path()
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(f"limit={limit!r} must be a positive integer", input=limit)
    try:
        raw = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LoCoMoError(f"no LoCoMo file at {p}", input=str(p), hint=_FIX) from None
    except (OSError, UnicodeDecodeError) as e:
        raise LoCoMoError(f"cannot read the LoCoMo file {p}: {e}", input=str(p), hint=_FIX) from None
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise _fail(p, f"invalid JSON ({e})") from None
    if not isinstance(data, list):
        raise _fail(p, f"expected a list of samples, found a JSON {type(data).__name__}")
    return [_conversation(p, n, sample) for n, sample in enumerate(data[:limit])]


def _conversation(path: Path, n: int, sample: Any) -> Conversation:
    conv = sample.get("conversation") if isinstance(sample, dict) else None
    if not isinstance(conv, dict):
        raise _fail(path, f"sample {n} has no 'conversation' object")
    cid = str(sample.get("sample_id", n))
    numbers = sorted(int(m.group(1)) for k in conv if (m := _SESSION.match(k)))
    turns: list[Turn] = []
    dates: dict[int, str] = {}
    for s in numbers:
        when = conv.get(f"session_{s}_date_time")
        if when:
            try:
                ts = session_time(str(when))
            except ValidationError:
                raise _fail(path, f"sample {cid}: session_{s}_date_time {when!r} is not a date") from None
            dates[s] = str(when)
        else:
            ts = float(s * 86400)
        raw_turns = conv[f"session_{s}"] or []
        if not isinstance(raw_turns, list):
            raise _fail(path, f"sample {cid}: session_{s} is not a list of turns")
        for j, t in enumerate(raw_turns):
            if not isinstance(t, dict) or not t.get("speaker") or not t.get("dia_id"):
                raise _fail(path, f"sample {cid}: turn {j} of session_{s} lacks 'speaker' or 'dia_id'")
            text = str(t.get("text") or "")
            caption = t.get("blip_caption") or None
            if not text.strip() and not caption:
                continue
            turns.append(Turn(str(t["dia_id"]), str(t["speaker"]), text, s, j, ts, str(caption) if caption else None))
    known = {t.dia_id for t in turns}
    questions: list[Question] = []
    skipped = 0
    qa = sample.get("qa", [])
    if not isinstance(qa, list):
        raise _fail(path, f"sample {cid}: 'qa' is not a list")
    for q in qa:
        if not isinstance(q, dict):
            skipped += 1
            continue
        evidence = q.get("evidence", [])
        gold = normalise_evidence(evidence if isinstance(evidence, list) else [evidence], known)
        text = str(q.get("question") or "").strip()
        if not gold or not text:
            skipped += 1
            continue
        try:
            category = int(q.get("category", 0))
        except (TypeError, ValueError):
            raise _fail(path, f"sample {cid}: question {text[:40]!r} has category {q.get('category')!r}") from None
        answer = q.get("answer", q.get("adversarial_answer", ""))
        questions.append(Question(text, str(answer), gold, category))
    speakers = [str(conv[k]) for k in ("speaker_a", "speaker_b") if conv.get(k)]
    return Conversation(cid, speakers, turns, dates, questions, skipped)


def compression_examples(
    conversations: Sequence[Conversation], limit: int | None = None
) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    """Compression-evaluator examples: ``(question, items, evidence)`` per question.

    The items are every turn of the session(s) holding the question's evidence, in order (``id``:
    the ``dia_id``; ``text``: ``"Speaker: text [shared image: caption]"``; ``ts``: the session's
    date plus the turn's index in seconds), as
    :class:`~lumina_lab.memory.compression.CompressionEvaluator` takes them.  ``limit``: at most
    that many examples.
    """
    out: list[tuple[str, list[dict[str, Any]], list[str]]] = []
    for conv in conversations:
        sessions = conv.sessions()
        for q in conv.questions:
            wanted = sorted({int(e[1:].split(":")[0]) for e in q.evidence} & set(sessions))
            items = [
                {"id": t.dia_id, "text": t.line("shared image: "), "ts": t.ts + t.index}
                for s in wanted
                for t in sessions[s]
            ]
            if items:
                out.append((q.question, items, list(q.evidence)))
            if limit is not None and len(out) >= limit:
                return out
    return out
