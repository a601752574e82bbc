"""Sets of authorization requests: from grids, files, DataFrames or the event log.

A :class:`RequestSet` is columnar (principals, actions, resources, contexts,
and optionally the expected decision and a name per request), so a million
requests cost a few lists, not a million objects.

>>> rs = RequestSet.grid(['User::"alice"', 'User::"bob"'], ["read", "write"], ['Doc::"d1"'])
>>> len(rs), rs[3].action
(4, 'Action::"write"')
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from .decision import ALLOW, DENY, Request
from .uids import format_uid, parse_uid

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RequestSet"]

_EMPTY: dict[str, Any] = {}


def _action(a: Any) -> Any:
    if isinstance(a, str) and "::" not in a:
        return f'Action::"{a}"'
    return a


def _hashable_uid(v: Any, what: str) -> Any:
    if isinstance(v, str):
        return v
    return format_uid(*parse_uid(v, what=what))


def _expected(v: Any, where: str) -> str | None:
    if v is None:
        return None
    s = str(v).strip().lower()
    if s in ("allow", "allowed", "permit", "true"):
        return ALLOW
    if s in ("deny", "denied", "forbid", "false"):
        return DENY
    raise ValidationError(f"{where}: expected decision {v!r} is neither allow nor deny", input=v)


class RequestSet:
    """Authorization requests, column by column.

    Args:
        principals / actions / resources: uids (any form; ``"read"`` means ``Action::"read"``).
        contexts: one dict per request (default: empty).
        expected: the expected decision per request (``"allow"``/``"deny"``/None), for tests.
        names: a label per request (e.g. the file it came from).
    """

    def __init__(
        self,
        principals: Sequence[Any],
        actions: Sequence[Any],
        resources: Sequence[Any],
        contexts: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        expected: Sequence[str | None] | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        n = len(principals)
        if len(actions) != n or len(resources) != n or (contexts is not None and len(contexts) != n):
            raise ValidationError(
                f"request columns differ in length: {n} principals, {len(actions)} actions, {len(resources)} "
                f"resources, {len(contexts) if contexts is not None else n} contexts"
            )
        # kept as given: uids are canonicalised (and checked) once per distinct value when evaluated
        self.principals: list[Any] = principals if isinstance(principals, list) else list(principals)
        self.actions: list[Any] = actions if isinstance(actions, list) else list(actions)
        self.resources: list[Any] = resources if isinstance(resources, list) else list(resources)
        if contexts is None:
            self.contexts: list[Mapping[str, Any] | None] = [_EMPTY] * n
        else:
            self.contexts = contexts if isinstance(contexts, list) else list(contexts)
        self.expected = list(expected) if expected is not None else None
        self.names = list(names) if names is not None else None

    # construction -------------------------------------------------------------------------
    @classmethod
    def of(cls, requests: Any) -> RequestSet:
        """Coerce: a RequestSet, Requests, dicts, a DataFrame, or a file/folder path."""
        if isinstance(requests, RequestSet):
            return requests
        if isinstance(requests, (str, Path)):
            return cls.load(requests)
        if type(requests).__name__ == "DataFrame":
            return cls.from_frame(requests)
        if isinstance(requests, Request):
            requests = [requests]
        return cls.from_records(requests)

    @classmethod
    def from_records(cls, records: Iterable[Any]) -> RequestSet:
        """From dicts (``principal``, ``action``, ``resource``, ``context``; optional ``expected`` and ``name``,
        read when the first record has them) or :class:`Request` objects."""
        records = records if isinstance(records, list) else list(records)
        if records and isinstance(records[0], Mapping):
            try:  # the fast path: plain dicts, column by column
                ps = [r["principal"] for r in records]
                acts = [r["action"] for r in records]
                rs = [r["resource"] for r in records]
                cs = [r.get("context") for r in records]
            except (KeyError, TypeError, AttributeError):
                pass
            else:
                first = records[0]
                exp = names = None
                if "expected" in first:
                    exp = [_expected(r.get("expected"), f"request #{i}") for i, r in enumerate(records)]
                if "name" in first:
                    names = [r.get("name") for r in records]
                return cls(ps, acts, rs, cs, expected=exp, names=names)
        ps, acts, rs, cs, exp, names = [], [], [], [], [], []
        has_exp = has_names = False
        for i, rec in enumerate(records):
            if isinstance(rec, Request):
                ps.append(rec.principal)
                acts.append(rec.action)
                rs.append(rec.resource)
                cs.append(rec.context)
                exp.append(None)
                names.append(None)
                continue
            try:
                ps.append(rec["principal"])
                acts.append(rec["action"])
                rs.append(rec["resource"])
            except (KeyError, TypeError):
                raise ValidationError(
                    f"request #{i} needs principal, action and resource: {str(rec)[:160]}",
                    input=rec,
                    hint='{"principal": "User::\\"alice\\"", "action": "Action::\\"read\\"", "resource": ..., "context": {}}',
                ) from None
            cs.append(cls._context(rec.get("context"), i, rec))
            e = rec.get("expected")
            has_exp = has_exp or e is not None
            exp.append(_expected(e, f"request #{i}"))
            nm = rec.get("name")
            has_names = has_names or nm is not None
            names.append(nm)
        return cls(ps, acts, rs, cs, expected=exp if has_exp else None, names=names if has_names else None)

    @staticmethod
    def _context(ctx: Any, i: int, rec: Any) -> Mapping[str, Any] | None:
        if isinstance(ctx, str):
            ctx = json.loads(ctx) if ctx.strip() else None
        if ctx is not None and not isinstance(ctx, Mapping):
            raise ValidationError(f"request #{i}: context must be an object, got {type(ctx).__name__}", input=rec)
        return ctx

    @classmethod
    def grid(
        cls,
        principals: Iterable[Any],
        actions: Iterable[Any],
        resources: Iterable[Any],
        contexts: Iterable[Mapping[str, Any] | None] | None = None,
    ) -> RequestSet:
        """Every combination of principals x actions x resources x contexts."""
        ctxs = list(contexts) if contexts is not None else [None]
        rows = list(itertools.product(list(principals), [_action(a) for a in actions], list(resources), ctxs))
        return cls([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])

    @classmethod
    def load(cls, path: str | Path) -> RequestSet:
        """From a ``.json`` file (one request or a list), a ``.jsonl`` file, a ``.csv``/``.parquet`` table, or a
        folder: ``ALLOW/*.json`` and ``DENY/*.json`` (the Cedar examples layout; the folder is the expected
        decision) or plain ``*.json`` files."""
        path = Path(path)
        if path.is_dir():
            return cls._from_dir(path)
        if not path.is_file():
            raise ValidationError(f"request file {str(path)!r} does not exist", input=str(path))
        suffix = path.suffix.lower()
        if suffix in (".csv", ".parquet"):
            import pandas as pd

            frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
            return cls.from_frame(frame)
        text = path.read_text()
        try:
            if suffix == ".jsonl":
                data: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{path.name}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", input=str(path)
            ) from None
        if isinstance(data, Mapping):
            data = [{**data, "name": data.get("name", path.stem)}]
        return cls.from_records(data)

    @classmethod
    def _from_dir(cls, path: Path) -> RequestSet:
        records: list[dict[str, Any]] = []
        for label, expected in (("ALLOW", ALLOW), ("DENY", DENY)):
            for f in sorted((path / label).glob("*.json")):
                rec = json.loads(f.read_text())
                records.append({**rec, "expected": expected, "name": f"{label}/{f.name}"})
        if not records:
            for f in sorted(path.glob("*.json")):
                if f.name in ("entities.json",):
                    continue
                rec = json.loads(f.read_text())
                for r in rec if isinstance(rec, list) else [rec]:
                    records.append({**r, "name": r.get("name", f.name)})
        if not records:
            raise ValidationError(
                f"no requests in {str(path)!r}", input=str(path), hint="put them in ALLOW/*.json and DENY/*.json"
            )
        return cls.from_records(records)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> RequestSet:
        """From a DataFrame: ``principal``, ``action``, ``resource``, and ``context`` (dicts or JSON) or
        ``context.<name>`` columns; optional ``expected`` and ``name``."""
        missing = {"principal", "action", "resource"} - set(frame.columns)
        if missing:
            raise ValidationError(f"request table lacks column(s) {sorted(missing)}", input=list(frame.columns))
        if "context" in frame.columns:
            contexts = [json.loads(c) if isinstance(c, str) else (c if isinstance(c, Mapping) else None) for c in frame["context"]]
        else:
            cols = [c for c in frame.columns if c.startswith("context.")]
            if cols:
                names = [c.split(".", 1)[1] for c in cols]
                values = zip(*(frame[c].tolist() for c in cols), strict=True)
                contexts = [{k: _py(v) for k, v in zip(names, row, strict=True) if not _isna(v)} for row in values]
            else:
                contexts = None
        expected = [_expected(v, "expected") for v in frame["expected"]] if "expected" in frame.columns else None
        names = [str(v) for v in frame["name"]] if "name" in frame.columns else None
        return cls(
            frame["principal"].tolist(), frame["action"].tolist(), frame["resource"].tolist(), contexts,
            expected=expected, names=names,
        )

    @classmethod
    def from_events(cls, store: Any, *, type: str = "policy.decided", since: Any = None, where: str | None = None) -> RequestSet:
        """Real requests from the event log: every ``policy.decided`` event (or ``type``) in ``store``
        (an event store, or a :class:`~lumina_lab.lab.Lab`)."""
        if hasattr(store, "sync") and hasattr(store, "store"):
            store.sync()
            store = store.store
        frame = store.query(where, type=type, since=since)
        if frame.empty:
            return cls([], [], [])
        payloads = [json.loads(p) if isinstance(p, str) else p for p in frame["payload"]]
        for i, p in enumerate(payloads):
            if not {"principal", "action", "resource"} <= set(p):
                raise ValidationError(
                    f"event {frame['id'].iloc[i]} of type {frame['type'].iloc[i]!r} has no principal/action/resource",
                    hint="replay policy.decided or policy.denied events",
                )
        return cls(
            [p["principal"] for p in payloads],
            [p["action"] for p in payloads],
            [p["resource"] for p in payloads],
            [p.get("context") or None for p in payloads],
            names=[str(i) for i in frame["id"]],
        )

    # access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.principals)

    def __getitem__(self, i: int) -> Request:
        return Request.of(self.principals[i], _action(self.actions[i]), self.resources[i], self.contexts[i])

    def __iter__(self) -> Iterator[Request]:
        for i in range(len(self)):
            yield self[i]

    def __add__(self, other: RequestSet) -> RequestSet:
        exp = None
        if self.expected is not None or other.expected is not None:
            exp = (self.expected or [None] * len(self)) + (other.expected or [None] * len(other))
        names = None
        if self.names is not None or other.names is not None:
            names = (self.names or [""] * len(self)) + (other.names or [""] * len(other))
        return RequestSet(
            self.principals + other.principals, self.actions + other.actions, self.resources + other.resources,
            list(self.contexts) + list(other.contexts), expected=exp, names=names,
        )

    def take(self, rows: Iterable[int]) -> RequestSet:
        """The requests at ``rows``."""
        idx = list(rows)
        return RequestSet(
            [self.principals[i] for i in idx], [self.actions[i] for i in idx], [self.resources[i] for i in idx],
            [self.contexts[i] for i in idx],
            expected=[self.expected[i] for i in idx] if self.expected is not None else None,
            names=[self.names[i] for i in idx] if self.names is not None else None,
        )

    def records(self) -> list[dict[str, Any]]:
        """The requests as dicts in the Cedar examples' layout."""
        return [
            {"principal": p, "action": _action(a), "resource": r, "context": dict(c or {})}
            for p, a, r, c in zip(self.principals, self.actions, self.resources, self.contexts, strict=True)
        ]

    def frame(self) -> pd.DataFrame:
        """The requests as a DataFrame (context as dicts)."""
        import pandas as pd

        data: dict[str, Any] = {
            "principal": self.principals, "action": [_action(a) for a in self.actions], "resource": self.resources,
            "context": [c or {} for c in self.contexts],
        }
        if self.names is not None:
            data["name"] = self.names
        if self.expected is not None:
            data["expected"] = self.expected
        return pd.DataFrame(data)

    def __repr__(self) -> str:
        extra = " with expected decisions" if self.expected is not None else ""
        return f"RequestSet({len(self)} requests{extra})"


def _isna(v: Any) -> bool:
    try:
        return v is None or (isinstance(v, float) and v != v)
    except Exception:
        return False


def _py(v: Any) -> Any:
    """numpy scalars to Python (bool before int)."""
    item = getattr(v, "item", None)
    return item() if callable(item) else v
