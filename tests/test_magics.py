"""`%load_ext lumina_lab`: the %lumina magics in an in-process IPython shell."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from lumina_lab import Lab


@pytest.fixture
def shell(lumina_home: Path) -> Iterator[InteractiveShell]:
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "lumina_lab")
    sh.user_ns["lab"] = Lab(profile="test", memory={"backend": "memory"})
    try:
        yield sh
    finally:
        sh.user_ns.pop("lab").close()
        sh.run_line_magic("unload_ext", "lumina_lab")


def line(sh: InteractiveShell, text: str) -> object:
    return sh.run_line_magic("lumina", text)


def test_status(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    info = line(shell, "status")
    out = capsys.readouterr().out
    assert "profile test" in out and "providers: 4" in out and "breakers not closed: none" in out
    assert info["providers"] == 4 and info["breakers_open"] == []  # type: ignore[index]


def test_providers_and_route(shell: InteractiveShell) -> None:
    frame = line(shell, "providers")
    assert list(frame["id"]) == [s.id for s in shell.user_ns["lab"].providers]  # type: ignore[index]
    decision = line(shell, "route Refactor this function --needs code --max-tokens 400")
    assert decision.chosen in ("sim-gpt-4.1-mini", "sim-gemini-2.5-flash", "sim-gpt-4.1")  # type: ignore[attr-defined]
    vision = line(shell, "route 'describe this picture' --needs vision,chat")
    assert "sim-gpt-4.1-mini" not in vision.ranked  # type: ignore[attr-defined]  # it has no vision


def test_ask_streams_into_the_output(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    line(shell, "ask Summarise our options in one line --max-tokens 12 --project docs")
    captured = capsys.readouterr()
    assert len(captured.out.split()) >= 3 and "tokens" in captured.err
    shell.run_cell_magic("lumina", "ask --max-tokens 12", "A prompt\nover two lines")
    captured = capsys.readouterr()
    assert captured.out.strip() and "+12 tokens" in captured.err
    line(shell, "ask hello --no-stream --max-tokens 5")
    assert "ms]" in capsys.readouterr().err
    lab = shell.user_ns["lab"]
    lab.sync()
    assert lab.store.count(type="provider.call.finished") == 3


def test_memory_search_and_policy_check(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    lab = shell.user_ns["lab"]
    lab.memory.collection("notes").add(["The provider outage opened the breaker.", "Budgets stop runaway agents."])
    res = line(shell, "memory search provider outage -c notes -k 1 --mode keyword")
    assert len(res) == 1 and "outage" in res[0].text  # type: ignore[arg-type,index]
    filtered = line(shell, """memory search outage -c notes --where '{"missing": 1}'""")
    assert len(filtered) == 0  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="no memory collection 'nope'"):
        line(shell, "memory search x -c nope")
    with pytest.raises(UsageError, match="no policy version is published"):
        line(shell, 'policy check User::"ann" read Doc::"d1"')
    lab.policy.publish('@id("readers") permit(principal, action == Action::"read", resource);')
    decision = line(shell, 'policy check User::"ann" read Doc::"d1"')
    assert decision.allowed and "readers" in capsys.readouterr().out  # type: ignore[attr-defined]
    assert not line(shell, 'policy check User::"ann" write Doc::"d1"').allowed  # type: ignore[attr-defined]


def test_dashboard(shell: InteractiveShell) -> None:
    pytest.importorskip("panel")
    dash = line(shell, "dashboard --components overview,providers --theme dark")
    assert dash.components == ["overview", "providers"] and dash.theme == "dark"  # type: ignore[attr-defined]
    dash.close()  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="unknown dashboard component"):
        line(shell, "dashboard --components nope")


def test_usage_errors_and_help(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="invalid choice: 'nope'"):
        line(shell, "nope")
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        line(shell, "route hello --bogus 1")
    with pytest.raises(UsageError, match="only %%lumina ask takes a cell"):
        shell.run_cell_magic("lumina", "status", "body")
    with pytest.raises(UsageError, match="needs a prompt"):
        line(shell, "ask")
    line(shell, "route --help")
    assert "%lumina route" in capsys.readouterr().out
    line(shell, "help")
    assert "%%lumina ask" in capsys.readouterr().out
    assert "subcommand" in shell.find_line_magic("lumina").__doc__.lower()


def test_use_another_lab(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    other = Lab(profile="test", routing={"strategy": "fastest"})
    shell.user_ns["other"] = other
    try:
        line(shell, "use other")
        assert line(shell, "route hi").strategy == "fastest"  # type: ignore[attr-defined]
        with pytest.raises(UsageError, match="not a variable holding a Lab"):
            line(shell, "use nothing_here")
    finally:
        other.close()
