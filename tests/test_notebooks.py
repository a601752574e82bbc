"""Every notebook in notebooks/ runs top to bottom under papermill (they are documentation and tests).

* Each runs once with small parameters (:data:`SMALL`, injected by papermill); a failing cell fails the test
  with the cell shown.
* A notebook whose ``parameters`` cell has ``results_path`` writes the figures it records there as JSON, and
  :data:`CHECKS` asserts on them.
* A notebook with ``# NBVAL_CHECK_OUTPUT`` cells is executed by nbval in lax mode (after papermill injected
  the parameters): those cells' outputs must equal the outputs stored in the notebook, every other cell must
  only run. Its stored outputs are those of its default parameters, so its defaults are small.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _check_live_dashboard(results: dict[str, Any], params: dict[str, Any]) -> None:
    assert results["requests"] == results["answered"] == params.get("n_requests", results["n_requests"])
    assert results["failed calls"] > 0
    assert results["breakers"][results["victim"]] == "open"
    assert [p for p, state in results["breakers"].items() if state != "closed"] == [results["victim"]]
    assert results["victim"] in results["providers that answered"]  # before the outage
    assert len(results["providers that answered"]) >= 2  # someone took over during it
    assert results["spent_usd"] > 0
    assert results["layout"] == {"components": ["overview", "providers"], "theme": "dark"}


def _check_policy_lab(results: dict[str, Any], params: dict[str, Any]) -> None:
    # every request of the Cedar example gets the decision its folder (ALLOW/ or DENY/) expects
    requests = results["requests"]
    app = Path(params.get("examples") or ROOT.parent / "shared" / "datasets" / "cedar-examples") / results["app"]
    if app.is_dir():
        assert sorted(requests) == sorted(f.relative_to(app).as_posix() for f in app.glob("*/*.json"))
    assert len(requests) == 8
    for name, r in requests.items():
        assert r["decision"] == r["expected"] == name.split("/")[0].lower(), name
    determining = {name: r["determining"] for name, r in requests.items()}
    assert determining["DENY/dave_watch_bedtime_show.json"] == "forbid-bedtime-watch-kid-profile"
    assert determining["ALLOW/charlie_watch_early_access_show.json"] == "early-access-show"
    assert determining["ALLOW/alice_rent_oscar_movie.json"] == "rent-buy-oscar-movie"
    assert determining["DENY/bob_watch_paid_movie.json"] == ""  # default deny
    assert "does not match the schema" in results["schema_error"] and "localTimeOffset" in results["schema_error"]
    # the grid, the diff of version 2 (and why), and coverage finding the policy that never decides
    assert results["grid"] == {"requests": 176, "allow": 82, "deny": 94, "no_decision": 0}
    d12 = results["diff_v1_v2"]
    assert d12["changed"] == 16 and d12["transitions"] == {"deny->allow": 12, "allow->deny": 4}
    bedtime = [c for c in d12["changes"] if c["new"] == "deny"]
    assert {c["viewer"] for c in bedtime} == {"Dave"} and all(c["when"] == "Feb 20 20:30" for c in bedtime)
    assert all('now forbidden by policy5 "forbid-bedtime-watch-kid-profile" (changed)' in c["why"] for c in bedtime)
    promo = [c for c in d12["changes"] if c["new"] == "allow"]
    assert all(c["when"] == "Mar 10 13:00" and 'policy3 "rent-buy-oscar-movie" (changed)' in c["why"] for c in promo)
    assert d12["policies"] == {
        "rent-buy-oscar-movie": "changed", "forbid-bedtime-watch-kid-profile": "changed", "premium-rent-any-movie": "new"
    }
    assert results["never_determining"] == {"v1": [], "v2": ["premium-rent-any-movie"], "v3": []}
    d23 = results["diff_v2_v3"]
    assert d23["changed"] == 4
    assert {(c["viewer"], c["action"], c["title"], c["old"], c["new"]) for c in d23["changes"]} == {
        ("Charlie", "rent", "The Gleaming", "deny", "allow")
    }
    # enforcement: a clear denial, every decision an event with its timing; shadow mode on the logged requests
    enf = results["enforcement"]
    assert enf["denial"].startswith('DENY Subscriber::"Dave" watch Show::"Buddies"')
    assert 'forbidden by policy5 "forbid-bedtime-watch-kid-profile"' in enf["denial"] and "fix: " in enf["denial"]
    assert "(policy version 3)" in enf["denial_v3"] and "forbid-bedtime-watch-kid-profile" in enf["denial_v3"]
    n_logged = results["n_logged"]
    assert enf["decisions"] == enf["timed_decisions"] == n_logged + 2
    assert enf["denied_events"] == enf["refused"] + 1 and 0 < enf["refused"] < n_logged
    shadow = results["shadow"]
    assert shadow["logged"] == shadow["compared"] == n_logged + 2
    assert 0 < shadow["different"] == shadow["events"] < n_logged
    assert results["view"] == {"requests": 20, "changed": 4}
    assert results["live_version"] == 3
    assert results["elapsed_s"] < 60


def _check_routing_lab(results: dict[str, Any], params: dict[str, Any]) -> None:
    n = params.get("n_requests", results["n_requests"])
    strategies = results["strategies"]
    assert all(s["requests"] == n for s in strategies.values())
    assert min(strategies, key=lambda s: strategies[s]["cost_usd"]) == "cheapest"
    # the Pareto front: exactly the strategies no other beats on both cost per answer and quality
    point = {s: (v["cost_per_1k_usd"], v["quality"]) for s, v in strategies.items()}
    beaten = {
        s
        for s, (c, q) in point.items()
        if any(c2 <= c and q2 >= q and (c2 < c or q2 > q) for t, (c2, q2) in point.items() if t != s)
    }
    assert set(results["pareto"]) == set(strategies) - beaten and {"cheapest", "cascade"} <= set(results["pareto"])
    assert results["share_sums"] == pytest.approx(dict.fromkeys(strategies, 1.0))
    assert results["flash_share_during_outage"] == 0
    # quality-aware routing on RouteLLM's data: disjoint train/test prompts, one router for both data sets
    assert results["train_test_overlap"] == 0 and results["contaminated_dropped"] > 0
    for name, anchor in (("gsm8k", 0.35), ("mmlu", 0.45)):  # RouteLLM's best router at 95% of GPT-4's quality
        q = results["quality"][name]
        assert q["n_test"] > 500 and q["n_train"] > 500
        random, learned = q["random"], q["ensemble"]
        assert random["apgr"] == pytest.approx(0.5)
        for router in ("knn32", "logreg", "ensemble"):
            r = q[router]
            assert 0.5 < r["apgr"] <= 1 and r["quality_at_95"] >= 0.95 * r["quality_strong"] - 1e-9, (name, router)
            assert r["cost_saving_at_95"] > random["cost_saving_at_95"], (name, router)
        assert learned["apgr"] > random["apgr"] + 0.05, name
        assert learned["cost_saving_at_95"] > random["cost_saving_at_95"] + 0.1, name
        assert learned["cost_saving_at_95"] > anchor - 0.05, name  # near or above RouteLLM's anchor
        bandit = q["bandit"]  # the online bandit's cost-weight sweep, recorded beside the learned routers
        assert 0.0 <= bandit["cost_saving_at_95"] < 1 and 0.3 < bandit["apgr"] <= 1, name
        assert bandit["quality_at_95"] >= 0.95 * bandit["quality_strong"] - 1e-9, name
    assert results["quality_section_cpu_s"] < 60  # CPU time: wall time depends on what else the machine runs


def _check_security(results: dict[str, Any], params: dict[str, Any]) -> None:
    assert results["sealed_rows"] == 3
    assert results["rotation"] == {"rewrapped": 5, "keys_after": 1}  # 3 texts + 2 sealed e-mail fields
    assert results["refused"] == ["another row", "one byte changed"]
    assert results["logins"] == {"password only": "code", "wrong password": "password", "password + code": "ok"}
    audit = results["audit"]
    assert audit["security.decrypt.failed"] == 2 and audit["security.values.rewrapped"] == 1
    for kind in ("key.created", "key.rotated", "key.retired", "token.created", "token.revoked"):
        assert audit[f"security.{kind}"] == 1, kind


#: notebook stem -> parameters that keep its run short (a notebook checked by nbval keeps its defaults small instead)
SMALL: dict[str, dict[str, Any]] = {}
#: notebook stem -> check of the JSON it records (called with the results and the parameters given)
CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
    "03_routing_lab": _check_routing_lab,
    "05_policy_lab": _check_policy_lab,
    "06_live_dashboard": _check_live_dashboard,
    "07_security": _check_security,
}


def _source(notebook: Path) -> dict[str, Any]:
    return json.loads(notebook.read_text())


def _parameters_cell(notebook: Path) -> str:
    for cell in _source(notebook)["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return "".join(cell["source"])
    return ""


def _nbval_checked(notebook: Path) -> bool:
    return any(
        "NBVAL_CHECK_OUTPUT" in "".join(c["source"]) for c in _source(notebook)["cells"] if c["cell_type"] == "code"
    )


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


def test_every_notebook_has_a_parameters_cell() -> None:
    missing = [nb.name for nb in NOTEBOOKS if not _parameters_cell(nb)]
    assert not missing, f"no cell tagged 'parameters' in {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs(notebook: Path, tmp_path: Path) -> None:
    params: dict[str, Any] = {"home": str(tmp_path / "home"), **SMALL.get(notebook.stem, {})}
    results = tmp_path / "results.json"
    records = "results_path" in _parameters_cell(notebook)
    if records:
        params["results_path"] = str(results)
    if _nbval_checked(notebook):
        _run_nbval(notebook, params, tmp_path)
    else:
        _run_papermill(notebook, params, tmp_path)
    check = CHECKS.get(notebook.stem)
    if records or check is not None:
        assert results.is_file(), f"{notebook.name} recorded no results at results_path"
        if check is not None:
            check(json.loads(results.read_text()), params)


@pytest.mark.slow
def test_05_policy_lab_fails_clearly_without_the_cedar_examples(tmp_path: Path) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    missing = tmp_path / "no-cedar-examples"
    with pytest.raises(PapermillExecutionError) as info:
        pm.execute_notebook(
            str(ROOT / "notebooks" / "05_policy_lab.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
            cwd=str(tmp_path), progress_bar=False, parameters={"examples": str(missing), "home": str(tmp_path / "home")},
        )
    assert info.value.ename == "FileNotFoundError"
    assert "the Cedar examples are missing" in info.value.evalue and str(missing) in info.value.evalue
    assert "LUMINA_CEDAR_EXAMPLES" in info.value.evalue


@pytest.mark.slow
def test_03_routing_lab_fails_clearly_without_the_routellm_data(tmp_path: Path) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    missing = tmp_path / "no-routellm"
    with pytest.raises(PapermillExecutionError) as info:
        pm.execute_notebook(
            str(ROOT / "notebooks" / "03_routing_lab.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
            cwd=str(tmp_path), progress_bar=False, parameters={"routellm": str(missing), "home": str(tmp_path / "home")},
        )
    assert info.value.ename == "ConfigError" and info.value.exec_count <= 3  # before the simulations, not after
    assert "the RouteLLM correctness data is not at" in info.value.evalue and str(missing) in info.value.evalue
    assert "LUMINA_ROUTELLM" in info.value.evalue


def _run_papermill(notebook: Path, params: dict[str, Any], tmp_path: Path) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out = tmp_path / notebook.name
    try:
        pm.execute_notebook(
            str(notebook), str(out), kernel_name="python3", cwd=str(tmp_path), progress_bar=False, parameters=params
        )
    except PapermillExecutionError as exc:
        trace = _ANSI.sub("", "\n".join(exc.traceback))
        pytest.fail(f"{notebook.name}, cell [{exc.exec_count}] failed:\n{exc.source}\n\n{trace}", pytrace=False)
    assert out.exists()


def _run_nbval(notebook: Path, params: dict[str, Any], tmp_path: Path) -> None:
    """nbval, lax mode, on a copy with the parameters injected (the stored outputs of checked cells kept)."""
    pytest.importorskip("nbval")
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    copy = tmp_path / notebook.name
    nbformat.write(parameterize_notebook(load_notebook_node(str(notebook)), params), copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMINA_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            str(copy),
            "-p",
            "no:cacheprovider",
            "-q",
            "--rootdir",
            str(tmp_path),
            "-o",
            "addopts=",
            "--color=no",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{notebook.name} under nbval:\n" + _ANSI.sub(
        "", result.stdout[-6000:] + result.stderr[-2000:]
    )


def store_checked_outputs(notebook: Path) -> None:
    """Run ``notebook`` with its defaults and keep, in the file, only the outputs of ``# NBVAL_CHECK_OUTPUT`` cells.

    After a change that moves a checked figure on purpose: ``python tests/test_notebooks.py notebooks/NAME.ipynb``.
    """
    import tempfile

    import nbformat
    import papermill as pm

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / notebook.name
        pm.execute_notebook(
            str(notebook),
            str(out),
            kernel_name="python3",
            cwd=tmp,
            progress_bar=False,
            parameters={"home": str(Path(tmp) / "home")},
        )
        done = nbformat.read(out, as_version=4)
    nb = nbformat.read(notebook, as_version=4)
    ran = [c for c in done.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]
    for cell, result in zip([c for c in nb.cells if c.cell_type == "code"], ran, strict=True):
        keep = "NBVAL_CHECK_OUTPUT" in cell.source
        cell.outputs = result.outputs if keep else []
        cell.execution_count = result.execution_count if keep else None
    nbformat.write(nb, notebook)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        store_checked_outputs(Path(arg))
