"""The compiled build of the routing hot path (lumina_lab.compiled): it builds, it is compiled, the provider and
routing-lab tests pass on it, and it replays to exactly the interpreted results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lumina_lab.compiled import HOT_PATH, build, is_compiled

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("CI") != "true":  # in CI a missing mypy fails the build below instead of skipping it
    pytest.importorskip("mypy", reason="the compiled build needs mypy (mypyc)")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPLAY = """
import hashlib, json, sys
from lumina_lab.compiled import is_compiled
from lumina_lab.providers import Budget, RetryPolicy, SimulatedProvider
from lumina_lab.sim import RoutingLab, Outage
from lumina_lab.sim.workloads import poisson
fleet = [SimulatedProvider(m, id=f"p{i}", ttft_s=0.2 + 0.1 * i, tokens_per_s=60 + 20 * i, error_rate=0.05,
                           timeout_rate=0.01, hang_s=40.0, capabilities={"code": 0.5 + 0.1 * i},
                           limits={"max_concurrency": 8})
         for i, m in enumerate(["gpt-4.1-mini", "gpt-4.1-nano", "gemini-2.5-flash", "gpt-4o-mini"])]
out = {"compiled": is_compiled()}
wl = poisson(40, n=3000, seed=5)
for name, kw in [("least_busy", {}), ("cheapest", {"hedge_after_s": 1.0}), ("cascade", {}), ("bandit", {})]:
    lab = RoutingLab(fleet, breaker={"min_calls": 5, "open_s": 20.0}, retry=RetryPolicy(attempts=2),
                     budgets=[Budget(2.0, scope="project", period="day")], timeout_s=20.0, **kw)
    for stream in (False, 0.3):
        r = lab.run(wl, name, seed=2, stream=stream, outages=[Outage("p1", 10.0, 40.0)])
        out[f"{name}/{stream}"] = hashlib.sha256(r.frame.to_csv(index=False).encode()).hexdigest()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled_root() -> Path:
    return build()


def _run(code_or_args: list[str], root: Path | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    # not from the checkout: there ``lumina_lab`` would be the source package, whatever PYTHONPATH says
    return subprocess.run([sys.executable, *code_or_args], env=env, capture_output=True, text=True, cwd=root or ROOT)


def test_the_build_compiles_every_hot_module_and_is_reused(compiled_root: Path) -> None:
    assert is_compiled(compiled_root) and not is_compiled()  # the checkout itself stays source
    assert (compiled_root / "BUILT").read_text().split() == list(HOT_PATH)
    assert build(compiled_root.parent) == compiled_root  # same sources: same folder, no rebuild
    probe = _run(["-c", "import lumina_lab.providers.router as r; print(r.__file__)"], compiled_root)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(compiled_root)) and not probe.stdout.strip().endswith(".py")


def test_the_build_knows_the_checkout_it_was_built_from(compiled_root: Path) -> None:
    """Notebooks, the shipped data and ../shared are found beside the checkout, not the cache folder."""
    from lumina_lab.data import checkout

    assert checkout() == ROOT
    probe = _run(["-c", "from lumina_lab.data import checkout, dataset_path; print(checkout(), dataset_path('pricing.json'))"], compiled_root)
    assert probe.returncode == 0, probe.stderr
    where, pricing = probe.stdout.split()
    assert Path(where) == ROOT and Path(pricing).resolve() == (ROOT / "datasets" / "pricing.json").resolve()


def test_the_compiled_build_replays_to_exactly_the_interpreted_results(compiled_root: Path, tmp_path: Path) -> None:
    script = tmp_path / "replay.py"
    script.write_text(REPLAY)
    runs = {}
    for label, root in (("interpreted", None), ("compiled", compiled_root)):
        proc = _run([str(script)], root)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["interpreted"].pop("compiled") is False and runs["compiled"].pop("compiled") is True
    assert runs["compiled"] == runs["interpreted"]  # every row of eight replays, byte for byte
    assert len(set(runs["compiled"].values())) == len(runs["compiled"])  # and the eight differ from each other


def test_provider_and_routing_lab_tests_pass_on_the_compiled_build(compiled_root: Path) -> None:
    proc = _run(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(ROOT / "tests/providers"),
            str(ROOT / "tests/sim"),
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
        ],
        compiled_root,
    )
    tail = "\n".join(proc.stdout.splitlines()[-15:])
    assert proc.returncode == 0, tail
    assert "failed" not in tail and " passed" in tail


def test_a_source_change_makes_a_new_build_folder(tmp_path: Path) -> None:
    from lumina_lab import compiled

    before = compiled._digest(compiled._package())
    copy = tmp_path / "lumina_lab"
    shutil.copytree(compiled._package(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    unedited = compiled._digest(copy)
    assert unedited == compiled._digest(copy) != before  # another checkout has its own build (see checkout())
    (copy / "providers" / "router.py").write_text((copy / "providers" / "router.py").read_text() + "\n# edited\n")
    assert compiled._digest(copy) != unedited
