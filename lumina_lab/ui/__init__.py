"""Panel components: one object renders inline in a notebook, as an ipywidget, and in ``lumina serve``.

Every live component is fed by bus subscriptions (never by polling internals): bus handlers write into
bounded, thread-safe buffers, and a periodic callback in the document's thread re-renders what is
buffered.

>>> from lumina_lab import Lab
>>> from lumina_lab.ui import Overview, ProviderTable, extension   # doctest: +SKIP
>>> extension()                                   # once per notebook (loads Panel's JavaScript)   # doctest: +SKIP
>>> Overview(lab)                                 # live figures    # doctest: +SKIP

Importing this package does not import Panel; the first component built does (a :class:`ConfigError`
with the ``pip`` line if it is missing).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._panel import extension, require_panel
    from .dashboard import COMPONENTS, Dashboard
    from .events import EventBrowser
    from .feed import StoreFeed
    from .memory import MemoryExplorer
    from .metrics import LiveMetrics
    from .overview import Overview
    from .policy import PolicySimulatorView
    from .providers import ProviderTable
    from .routing import RoutingLabView
    from .server import serve

__all__ = [
    "COMPONENTS",
    "Dashboard",
    "EventBrowser",
    "LiveMetrics",
    "MemoryExplorer",
    "Overview",
    "PolicySimulatorView",
    "ProviderTable",
    "RoutingLabView",
    "StoreFeed",
    "extension",
    "require_panel",
    "serve",
]

#: name -> (module, needs Panel)
_WHERE = {
    "COMPONENTS": ("dashboard", True),
    "Dashboard": ("dashboard", True),
    "EventBrowser": ("events", True),
    "LiveMetrics": ("metrics", False),
    "MemoryExplorer": ("memory", True),
    "Overview": ("overview", True),
    "PolicySimulatorView": ("policy", True),
    "ProviderTable": ("providers", True),
    "RoutingLabView": ("routing", True),
    "StoreFeed": ("feed", False),
    "extension": ("_panel", False),
    "require_panel": ("_panel", False),
    "serve": ("server", False),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'lumina_lab.ui' has no attribute {name!r}")
    module, needs_panel = where
    if needs_panel:
        from ._panel import require_panel

        require_panel()
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
