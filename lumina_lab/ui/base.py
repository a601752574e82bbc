"""The base of the live components: bus subscriptions in, a periodic re-render out.

Threads: a bus handler runs on the bus's thread; it only writes into a bounded, lock-guarded buffer
(a projection such as :class:`~lumina_lab.ui.metrics.LiveMetrics`, or a ``deque(maxlen=...)``).
:meth:`LiveView.refresh` runs on the document's thread — a Panel periodic callback when the component
is shown (served: the session's document; notebook: the kernel's event loop) — and moves the buffered
data into the widgets. So Bokeh models are only touched where Bokeh expects it.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any

import holoviews as hv
import panel as pn
import param
from panel.viewable import Viewer

from ..errors import ValidationError

__all__ = ["LiveView", "bus_of", "esc", "lab_of"]

log = logging.getLogger(__name__)

if "bokeh" not in hv.Store.renderers:
    import holoviews.plotting.bokeh  # register the Bokeh backend without notebook output
if hv.Store.current_backend != "bokeh":
    hv.Store.set_current_backend("bokeh")


def esc(value: Any) -> str:
    """HTML-escape any value (everything user- or data-provided goes through this before HTML panes)."""
    return html.escape(str(value), quote=True)


def lab_of(source: Any) -> Any:
    """The :class:`~lumina_lab.lab.Lab` given, or None for a bare bus."""
    return source if source is not None and hasattr(source, "settings") and hasattr(source, "bus") else None


def bus_of(source: Any, bus: Any = None) -> Any:
    """The bus to subscribe to: ``bus`` if given, else ``source.bus`` (a Lab), else ``source`` itself."""
    if bus is not None:
        return bus
    if source is None:
        raise ValidationError("a live component needs a Lab or a bus", hint="pass lab or bus=lab.bus")
    if hasattr(source, "subscribe"):
        return source
    if hasattr(source, "bus"):
        return source.bus
    raise ValidationError(f"{source!r} is neither a Lab nor an event bus", input=source, hint="pass lab or bus=")


class LiveView(Viewer):
    """A component fed by the bus and re-rendered every ``refresh_ms`` while it is shown.

    Subclasses build ``self._layout`` and implement :meth:`refresh`; they subscribe with :meth:`_listen`.
    """

    refresh_ms = param.Integer(default=500, bounds=(50, None), doc="Re-render period while shown (ms).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._subs: list[Any] = []
        self._callbacks: list[Any] = []
        self._closed = False
        self._layout: Any = None

    # ------------------------------------------------------------------ data in
    def _listen(
        self,
        bus: Any,
        pattern: str,
        handler: Callable[[Any], Any],
        *,
        batch: int | None = 256,
        maxsize: int = 10_000,
    ) -> Any:
        """Subscribe ``handler`` to ``pattern`` with a bounded ``drop_oldest`` queue (live views want the latest)."""
        sub = bus.subscribe(pattern, handler, batch=batch, maxsize=maxsize, overflow="drop_oldest", retries=0)
        self._subs.append(sub)
        return sub

    # ------------------------------------------------------------------ data out
    def refresh(self) -> None:
        """Move buffered data into the widgets (runs on the document's thread)."""

    def _tick(self) -> None:
        if self._closed:
            return
        try:
            self.refresh()
        except Exception:  # a broken refresh must not kill the periodic callback
            log.exception("%s refresh failed", type(self).__name__)

    def start(self) -> None:
        """Start re-rendering every ``refresh_ms`` (done when the component is first shown)."""
        if self._callbacks or self._closed:
            return
        self._callbacks.append(pn.state.add_periodic_callback(self._tick, period=self.refresh_ms))
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            pn.state.on_session_destroyed(lambda _ctx: self.close())

    def close(self) -> None:
        """Stop re-rendering and unsubscribe from the bus."""
        self._closed = True
        for cb in self._callbacks:
            try:
                cb.stop()
            except Exception:  # already stopped with its session
                pass
        self._callbacks.clear()
        for sub in self._subs:
            try:
                sub.unsubscribe()
            except Exception:  # the bus is closed already
                pass
        self._subs.clear()

    def __panel__(self) -> Any:
        self.refresh()
        self.start()
        return self._layout

    def ipywidget(self) -> Any:
        """This component as an ipywidget (JupyterLab, Voila, VS Code; needs ``jupyter_bokeh``)."""
        return pn.ipywidget(self)


def card(title: str, *objects: Any, **kwargs: Any) -> Any:
    """A titled, non-collapsible card (the look every component shares)."""
    return pn.Card(*objects, title=title, collapsible=False, sizing_mode="stretch_width", **kwargs)
