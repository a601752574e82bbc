"""Child process for the multi-process event-store tests.

Usage: python _child.py ROOT WHO COUNT BATCH MERGE_AT [--wait] [--forever] [--no-fsync]

Writes ``COUNT`` ``Tick(n=i, who=WHO)`` events (``i`` from 0) to a
:class:`FileEventStore` in ``ROOT``, ``BATCH`` at a time, calling ``flush()``
after each batch and then printing ``ack <last n>`` (stdout is flushed), so
the parent knows which events are acknowledged.  ``--forever`` keeps going
until killed; ``--wait`` waits for a line on stdin before exiting.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _events import Tick

from lumina_lab.events.store import FileEventStore


def main(argv: list[str]) -> None:
    root, who, count, batch, merge_at = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    flags = set(argv[5:])
    store = FileEventStore(
        root,
        merge_at=merge_at,
        fsync="--no-fsync" not in flags,
        batch_size=max(batch, 1),
        flush_interval_s=60.0,
    )
    print(f"writer {store._log('events').writer}", flush=True)
    n = 0
    while "--forever" in flags or n < count:
        store.append([Tick(n=i, who=who) for i in range(n, n + batch)])
        store.flush()
        n += batch
        print(f"ack {n - 1}", flush=True)
    print("done", flush=True)
    if "--wait" in flags:
        sys.stdin.readline()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
