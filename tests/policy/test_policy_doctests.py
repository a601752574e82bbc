"""The examples in the policy package's docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["__init__", "attributes", "engine", "enforce", "entities", "policies", "requests", "simulator", "store", "uids"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module("lumina_lab.policy" + ("" if name == "__init__" else f".{name}"))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_importing_the_policy_package_loads_neither_cedarpy_nor_numpy() -> None:
    import subprocess
    import sys

    code = "import sys, lumina_lab.policy, lumina_lab.cli; print('cedarpy' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
