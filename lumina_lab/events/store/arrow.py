"""Arrow schemas of the stored event log, and conversion from models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC

import pyarrow as pa

from ..deadletter import DeadLetter
from ..model import Event

__all__ = ["DEAD_LETTERS", "DEAD_MARKS", "EVENTS", "dead_letters_table", "events_table", "marks_table"]

_TS = pa.timestamp("us", tz="UTC")

#: One row per event.  ``payload`` is the JSON of the payload fields.
EVENTS = pa.schema(
    [
        ("id", pa.string()),
        ("type", pa.string()),
        ("schema_version", pa.int16()),
        ("ts", _TS),
        ("source", pa.string()),
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("payload", pa.string()),
    ]
)

DEAD_LETTERS = pa.schema(
    [
        ("id", pa.string()),
        ("ts", _TS),
        ("subscriber", pa.string()),
        ("pattern", pa.string()),
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("envelope", pa.string()),
        ("error_type", pa.string()),
        ("error", pa.string()),
        ("traceback", pa.string()),
        ("attempts", pa.int32()),
    ]
)

#: Later facts about dead letters (``replayed``), since segments are immutable.
DEAD_MARKS = pa.schema([("dead_letter_id", pa.string()), ("ts", _TS), ("action", pa.string())])


def events_table(events: Sequence[Event]) -> pa.Table:
    """Columns of ``events`` in the :data:`EVENTS` schema."""
    return pa.Table.from_arrays(
        [
            pa.array([e.id for e in events], pa.string()),
            pa.array([e.event_type for e in events], pa.string()),
            pa.array([e.event_version for e in events], pa.int16()),
            pa.array([e.ts for e in events], _TS),
            pa.array([e.source for e in events], pa.string()),
            pa.array([e.trace_id for e in events], pa.string()),
            pa.array([e.span_id for e in events], pa.string()),
            pa.array([e.payload_json_bytes() for e in events], pa.string()),
        ],
        schema=EVENTS,
    )


def dead_letters_table(letters: Sequence[DeadLetter]) -> pa.Table:
    rows = [{**d.model_dump(exclude={"envelope"}), "envelope": json.dumps(d.envelope, default=str)} for d in letters]
    return pa.Table.from_pylist(rows, schema=DEAD_LETTERS)


def marks_table(ids: Sequence[str], action: str) -> pa.Table:
    from datetime import datetime

    now = datetime.now(UTC)
    return pa.Table.from_pylist([{"dead_letter_id": i, "ts": now, "action": action} for i in ids], schema=DEAD_MARKS)
