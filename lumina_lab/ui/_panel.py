"""Loading Panel lazily, with one clear error when it is missing."""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import ConfigError

__all__ = ["PIP_LINE", "THEMES", "extension", "require_panel"]

PIP_LINE = "pip install 'lumina-lab[ui]'   (or: pip install panel holoviews hvplot jupyter_bokeh)"
THEMES = ("default", "dark")
_EXTENSIONS = ("tabulator", "codeeditor")


def require_panel() -> Any:
    """Import and return :mod:`panel` (and check holoviews), or raise a :class:`ConfigError` with the pip line."""
    missing = [m for m in ("panel", "holoviews", "bokeh") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"the dashboards need {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
            key="ui",
            hint=PIP_LINE,
        )
    import panel as pn

    return pn


def check_theme(theme: str) -> str:
    """``theme`` if it is one of :data:`THEMES`."""
    if theme not in THEMES:
        raise ConfigError(
            f"theme={theme!r} is not a theme",
            key="theme",
            value=theme,
            allowed=", ".join(THEMES),
            hint=f"use one of {THEMES}",
        )
    return theme


def extension(theme: str | None = None, **kwargs: Any) -> Any:
    """Load Panel (and HoloViews' Bokeh backend) in a notebook, with the widgets the components use.

    Call it once per notebook, before the first component is shown. ``theme`` is ``"default"`` (light) or
    ``"dark"``.
    """
    pn = require_panel()
    import holoviews as hv

    if theme is not None:
        kwargs["theme"] = check_theme(theme)
    pn.extension(*_EXTENSIONS, **kwargs)
    if "bokeh" not in hv.Store.renderers:
        import holoviews.plotting.bokeh  # registers the renderer without notebook output
    hv.renderer("bokeh").theme = "dark_minimal" if theme == "dark" else None
    return pn
