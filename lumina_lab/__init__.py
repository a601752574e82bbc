"""Lumina Lab: a notebook-first workbench for LLM agent infrastructure.

``import lumina_lab`` is fast: submodules (and heavy libraries such as
duckdb, pyarrow, pandas, panel) load on first use.

>>> import lumina_lab
>>> lab = lumina_lab.Lab(profile="test")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .config import Settings, load_settings
    from .errors import (
        BudgetExceeded,
        BusError,
        ConfigError,
        LuminaError,
        PolicyDenied,
        ProviderError,
        SchemaError,
        StoreError,
        ValidationError,
    )
    from .events import Event, InProcessBus, event, open_store, trace_scope, upcaster
    from .lab import Lab
    from .policy import PolicyEngine

__all__ = [
    "BudgetExceeded",
    "BusError",
    "ConfigError",
    "Event",
    "InProcessBus",
    "Lab",
    "LuminaError",
    "PolicyDenied",
    "PolicyEngine",
    "ProviderError",
    "SchemaError",
    "Settings",
    "StoreError",
    "ValidationError",
    "__version__",
    "event",
    "load_settings",
    "open_store",
    "trace_scope",
    "upcaster",
]

_WHERE = {
    "Lab": "lab",
    "load_ipython_extension": "magics",  # `%load_ext lumina_lab` (IPython loads only then)
    "unload_ipython_extension": "magics",
    "PolicyEngine": "policy",
    "Settings": "config",
    "load_settings": "config",
    "Event": "events",
    "InProcessBus": "events",
    "event": "events",
    "open_store": "events",
    "trace_scope": "events",
    "upcaster": "events",
    **{
        name: "errors"
        for name in (
            "LuminaError",
            "ConfigError",
            "ValidationError",
            "SchemaError",
            "ProviderError",
            "BudgetExceeded",
            "PolicyDenied",
            "StoreError",
            "BusError",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'lumina_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
