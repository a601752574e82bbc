"""`lumina_lab.ui.login`: which Panel login handlers are audited, and the login event's schema."""

from __future__ import annotations

import logging

import pytest

pauth = pytest.importorskip("panel.auth")

from lumina_lab.events import default_registry  # noqa: E402
from lumina_lab.security.events import LoginAttempted  # noqa: E402
from lumina_lab.ui import login  # noqa: E402


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """Panel's provider table, restored after the test (the swap is process-wide)."""
    table = dict(pauth.AUTH_PROVIDERS)
    monkeypatch.setattr(pauth, "AUTH_PROVIDERS", table)
    return table


def test_an_oauth_code_flow_provider_is_wrapped_once(providers: dict[str, type]) -> None:
    original = providers["github"]
    assert login.install_oauth_audit("github") is True
    wrapped = providers["github"]
    assert wrapped is not original and issubclass(wrapped, original) and wrapped.__name__ == original.__name__
    assert login.install_oauth_audit("github") is True and providers["github"] is wrapped  # idempotent
    assert providers["generic"] is pauth.GenericLoginHandler  # only the one asked for


@pytest.mark.parametrize("name", ["password", "pam"])
def test_handlers_outside_the_code_flow_are_left_alone_and_the_log_says_so(
    providers: dict[str, type], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    original = providers[name]
    with caplog.at_level(logging.WARNING, logger="lumina_lab.ui.login"):
        assert login.install_oauth_audit(name) is False
    assert providers[name] is original
    assert f"logins through the {name!r} provider are not audited" in caplog.text


def test_login_events_say_how_the_user_logged_in_and_old_ones_read_as_password_logins() -> None:
    assert LoginAttempted.event_version == 2
    event = LoginAttempted(user="ada@example.org", ok=True, method="oauth:generic")
    assert default_registry.load(event.to_envelope()).method == "oauth:generic"
    old = {**event.to_envelope(), "schema_version": 1}
    old["payload"] = {k: v for k, v in old["payload"].items() if k != "method"}
    assert default_registry.load(old).method == "password"


def test_an_unreachable_audit_trail_never_fails_the_login(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_bus() -> None:
        raise RuntimeError("event log locked")

    monkeypatch.setattr(login, "audit_bus", no_bus)
    with caplog.at_level(logging.WARNING, logger="lumina_lab.security.events"):
        login._audit_login("ann", True, "", "10.0.0.7", "oauth:github")  # returns: the login goes on
    assert "no bus for audit event security.login: event log locked" in caplog.text


def test_audit_takes_the_bus_or_a_function_that_returns_it() -> None:
    from lumina_lab.events.bus import InProcessBus
    from lumina_lab.security.events import AccessRefused, audit

    bus = InProcessBus()
    seen: list[object] = []
    bus.subscribe("security.*", seen.append)
    audit(bus, AccessRefused, resource="/metrics", reason="no credentials")
    audit(lambda: bus, AccessRefused, resource="/metrics", reason="unknown token", remote="10.0.0.7")
    bus.drain_sync(timeout=5)
    assert [(e.reason, e.remote) for e in seen] == [("no credentials", None), ("unknown token", "10.0.0.7")]
    bus.close_sync()
