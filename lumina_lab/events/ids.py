"""Sortable unique event ids: UUIDv7 (RFC 9562) strings.

48 bits of Unix milliseconds, then a 12-bit per-process counter (method 1 of
RFC 9562 section 6.2), then 62 random bits.  Ids from one process are strictly
increasing; ids from different processes sort by millisecond.  The lowercase
hex text sorts exactly like the number, so ``ORDER BY id`` is time order.
"""

from __future__ import annotations

import os
import random
import threading
import time

__all__ = ["id_time_ms", "new_id"]

_lock = threading.Lock()
_rng = random.Random()
_last_ms = 0
_counter = 0


def _reseed() -> None:
    global _last_ms, _counter
    _rng.seed(os.urandom(16))
    _last_ms, _counter = 0, 0


_reseed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """Return a new UUIDv7 string, greater than every id this process made before."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, _rng.getrandbits(8)  # random start, room to count
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
        rand = _rng.getrandbits(62)
    n = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def id_time_ms(event_id: str) -> int:
    """Milliseconds since the Unix epoch encoded in a UUIDv7 ``event_id``."""
    return int(event_id[:8] + event_id[9:13], 16)
