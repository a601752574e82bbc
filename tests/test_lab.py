"""``Lab`` wires settings, the bus and the store; its sync helpers serve notebooks and scripts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lumina_lab import Lab
from lumina_lab.errors import ConfigError
from lumina_lab.events import Event, event


@event("test.lab.noted")
class Noted(Event):
    text: str
    n: int = 0


def test_dev_profile_stores_events_in_files_under_home(lumina_home: Path) -> None:
    with Lab() as lab:
        lab.publish(Noted(text="hello"))
        frame = lab.query(type="test.lab.*")
    assert list(frame["type"]) == ["test.lab.noted"]
    assert list((lumina_home / "events" / "log").glob("*.parquet"))


def test_test_profile_keeps_events_in_memory(lumina_home: Path) -> None:
    with Lab(profile="test") as lab:
        assert lab.store.kind == "memory"
        lab.publish(Noted(text="a"), Noted(text="b"))
        assert lab.sql("SELECT count(*) AS n FROM events")["n"][0] == 2
    assert not (lumina_home / "events").exists()


def test_home_argument_wins(tmp_path: Path) -> None:
    with Lab(home=tmp_path / "elsewhere") as lab:
        lab.publish(Noted(text="x"))
        lab.sync()
    assert (tmp_path / "elsewhere" / "events" / "log").is_dir()


def test_events_from_one_lab_are_visible_to_the_next(lumina_home: Path) -> None:
    with Lab() as lab:
        lab.publish(*[Noted(text="t", n=i) for i in range(100)])
    with Lab() as again:
        assert again.store.count(type="test.lab.*") == 100
        assert [e.n for e in again.store.events(type="test.lab.*")] == list(range(100))


def test_subscribers_see_what_is_published(lumina_home: Path) -> None:
    with Lab(profile="test") as lab:
        seen: list[int] = []
        lab.bus.subscribe("test.lab.*", lambda e: seen.append(e.n))
        lab.publish(*[Noted(text="t", n=i) for i in range(50)])
        lab.sync()
        assert seen == list(range(50))


async def test_async_helpers(lumina_home: Path) -> None:
    lab = Lab(profile="test")
    try:
        await lab.apublish(Noted(text="async", n=1))
        assert await lab.async_sync() == 1
    finally:
        await asyncio.to_thread(lab.close)


def test_invalid_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="profile"):
        Lab(profile="staging")


def test_repr_and_html_name_the_profile_and_home(lumina_home: Path) -> None:
    with Lab(profile="test") as lab:
        assert "profile='test'" in repr(lab)
        assert str(lumina_home) in lab._repr_html_()
