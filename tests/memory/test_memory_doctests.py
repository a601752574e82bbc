"""The examples in the memory modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "lumina_lab.memory",
    "lumina_lab.memory.filters",
    "lumina_lab.memory.cache",
    "lumina_lab.memory.collection",
    "lumina_lab.memory.sharding",
    "lumina_lab.memory.pipeline",
    "lumina_lab.memory.sentence_vectors",
    "lumina_lab.memory.stores",
    "lumina_lab.memory.stores.memory",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
