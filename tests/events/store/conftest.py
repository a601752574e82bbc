"""Fixtures of the event-store tests: the contract suite runs against both stores."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # child processes import _events the same way
    sys.path.insert(0, str(HERE))

from lumina_lab.events.store import BufferedEventStore, FileEventStore, MemoryEventStore  # noqa: E402

StoreFactory = Callable[..., BufferedEventStore]


@pytest.fixture(params=["file", "memory"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Make stores of one kind (``file`` in ``tmp_path/events``, or ``memory``); closed after the test."""
    made: list[BufferedEventStore] = []

    def make(**kwargs: Any) -> BufferedEventStore:
        store: BufferedEventStore
        store = FileEventStore(tmp_path / "events", **kwargs) if request.param == "file" else MemoryEventStore(**kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> BufferedEventStore:
    """A store with default settings."""
    return store_factory()


@pytest.fixture
def file_root(tmp_path: Path) -> Path:
    return tmp_path / "events"
