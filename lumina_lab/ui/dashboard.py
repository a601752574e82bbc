"""The dashboard: choose components, a light or dark theme, and save the layout by name.

Inline in a notebook it is a sidebar and the chosen components; served (``lumina serve``) it is a
``FastListTemplate`` with the same sidebar and a light/dark toggle in the header. Layouts are small JSON
files in ``LUMINA_HOME/dashboards/`` (``{"components": [...], "theme": "dark"}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import panel as pn
import param
from panel.theme import DarkTheme, DefaultTheme, Native
from panel.viewable import Viewer

from ..errors import ConfigError, ValidationError
from ._panel import THEMES, check_theme
from .base import bus_of, lab_of
from .metrics import LiveMetrics

__all__ = ["COMPONENTS", "DEFAULT_COMPONENTS", "Dashboard", "components_from_query", "layouts_dir", "read_layout"]

#: component name -> title shown in the chooser
COMPONENTS = {
    "overview": "Live overview",
    "providers": "Providers",
    "events": "Events and traces",
    "memory": "Memory explorer",
    "policy": "Policy simulator",
    "routing": "Routing lab",
}
DEFAULT_COMPONENTS = ("overview", "providers", "events")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def layouts_dir(home: str | Path | None = None) -> Path:
    """Where saved layouts live: ``LUMINA_HOME/dashboards``."""
    if home is None:
        from ..config import load_settings

        home = load_settings().home
    return Path(home) / "dashboards"


def read_layout(name: str, home: str | Path | None = None) -> dict[str, Any]:
    """The saved layout ``name`` (``{"components": [...], "theme": ...}``), checked."""
    if not _NAME.match(name):
        raise ValidationError(
            f"layout name {name!r} is not allowed", input=name, hint="use letters, digits, '.', '_' or '-' (at most 64)"
        )
    path = layouts_dir(home) / f"{name}.json"
    if not path.is_file():
        have = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        raise ValidationError(
            f"no saved dashboard layout {name!r}",
            input=name,
            hint=f"saved layouts: {have or 'none'}; save one from the dashboard's sidebar",
        )
    try:
        data = json.loads(path.read_text())
        return {"components": _check_components(data["components"]), "theme": check_theme(data.get("theme", "default"))}
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"dashboard layout {path} is not valid: {exc}", key=name, hint="delete or fix the file"
        ) from None


def _check_components(names: Sequence[str]) -> list[str]:
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise ConfigError(
            f"unknown dashboard component(s) {unknown}",
            key="components",
            value=unknown,
            allowed=", ".join(COMPONENTS),
            hint=f"choose from {list(COMPONENTS)}",
        )
    return list(dict.fromkeys(names))


def components_from_query(value: str | bytes | None) -> list[str] | None:
    """The views a page asks for with ``?components=overview,providers`` (None when it does not ask).

    Raises a :class:`ConfigError` naming the allowed components for an unknown one.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    names = [n.strip() for n in value.strip("'\"").split(",") if n.strip()]
    return _check_components(names) if names else None


class Dashboard(Viewer):
    """Selectable components over one lab, with themes and saved layouts.

    Args:
        lab: a :class:`~lumina_lab.lab.Lab` (providers, budgets, memory, policy, store).
        bus: the bus the live components subscribe to (default: ``lab.bus``; ``lumina serve`` passes a bus
            fed by the event log of every process).
        components: names from :data:`COMPONENTS`, in order.
        theme: ``"default"`` (light) or ``"dark"``.
        layout: the name of a saved layout to start from (its components and theme).
        routing: what the routing lab view shows (a ``RoutingLabView``, or ``SimResult`` objects); by default it
            replays the lab's recorded traffic against its simulated providers when *Run* is pressed.
        title: the header of the served page.
    """

    components = param.List(default=list(DEFAULT_COMPONENTS), item_type=str)
    theme = param.Selector(default="default", objects=list(THEMES))
    title = param.String(default="Lumina Lab")

    def __init__(
        self,
        lab: Any = None,
        *,
        bus: Any = None,
        components: Sequence[str] | None = None,
        theme: str | None = None,
        layout: str | None = None,
        routing: Any = None,
        home: str | Path | None = None,
        **params: Any,
    ) -> None:
        self.lab = lab_of(lab)
        self.home = Path(home) if home is not None else (Path(self.lab.settings.home) if self.lab is not None else None)
        saved = self.load_layout(layout) if layout is not None else {}
        chosen = _check_components(
            components if components is not None else saved.get("components", DEFAULT_COMPONENTS)
        )
        theme = check_theme(theme if theme is not None else saved.get("theme", "default"))
        super().__init__(components=chosen, theme=theme, **params)
        self.bus = bus_of(lab, bus)
        self._query_note: Any = None
        self._routing = routing
        self._metrics: LiveMetrics | None = None
        self._metric_subs: list[Any] = []
        self._built: dict[str, Any] = {}
        self.chooser = pn.widgets.MultiChoice(
            label="Components", options=list(COMPONENTS), value=list(chosen), width=240
        )
        self.theme_choice = pn.widgets.RadioButtonGroup(
            label="Theme", options=list(THEMES), value=theme, color="primary", variant="outline"
        )
        self.layout_name = pn.widgets.TextInput(label="Save layout as", value=layout or "default", width=200)
        self.save_button = pn.widgets.Button(label="Save layout", color="primary", width=200)
        self.saved_note = pn.pane.HTML("", margin=(0, 10))
        self.chooser.param.watch(lambda e: setattr(self, "components", list(e.new)), "value")
        self.theme_choice.param.watch(lambda e: setattr(self, "theme", e.new), "value")
        self.save_button.on_click(lambda _e: self._save_clicked())
        self.sidebar = pn.Column(
            "### Dashboard",
            self.chooser,
            "Theme",
            self.theme_choice,
            self.layout_name,
            self.save_button,
            self.saved_note,
            width=250,
        )
        self.main = pn.Column(sizing_mode="stretch_width")
        self._render()

    # ------------------------------------------------------------------ components
    @property
    def metrics(self) -> LiveMetrics:
        """One :class:`LiveMetrics` shared by the overview and the provider table (subscribed once)."""
        if self._metrics is None:
            self._metrics = LiveMetrics.of(self.lab)
            self._metric_subs = self._metrics.subscribe(self.bus)
        return self._metrics

    def _factories(self) -> dict[str, Callable[[], Any]]:
        from .events import EventBrowser
        from .overview import Overview
        from .providers import ProviderTable

        def memory() -> Any:
            from .memory import MemoryExplorer

            return MemoryExplorer(self.lab, bus=self.bus)

        def policy() -> Any:
            from .policy import PolicySimulatorView

            return PolicySimulatorView(self.lab, bus=self.bus)

        def routing() -> Any:
            from .routing import RoutingLabView

            r = self._routing
            if isinstance(r, RoutingLabView):
                return r
            return RoutingLabView(r, replay=self.lab if r is None else None)

        return {
            "overview": lambda: Overview(self.lab, bus=self.bus, metrics=self.metrics),
            "providers": lambda: ProviderTable(self.lab, bus=self.bus, metrics=self.metrics),
            "events": lambda: EventBrowser(self.lab, bus=self.bus),
            "memory": memory,
            "policy": policy,
            "routing": routing,
        }

    def component(self, name: str) -> Any:
        """The component ``name`` (built on first use)."""
        _check_components([name])
        c = self._built.get(name)
        if c is None:
            needs_lab = name in ("memory", "policy")
            if needs_lab and self.lab is None:
                raise ValidationError(f"the {name} component needs a Lab", hint="Dashboard(lab, ...)")
            c = self._built[name] = self._factories()[name]()
        return c

    @param.depends("components", "theme", watch=True)
    def _render(self) -> None:
        if list(self.chooser.value) != list(self.components):
            self.chooser.value = list(self.components)
        if self.theme_choice.value != self.theme:
            self.theme_choice.value = self.theme
        objs = []
        for name in self.components:
            try:
                objs.append(self.component(name))
            except Exception as exc:  # one component that cannot be built must not take the dashboard down
                objs.append(pn.pane.Alert(f"{COMPONENTS[name]}: {exc}", alert_type="warning"))
        self.main.objects = objs

    def refresh(self) -> None:
        """Re-render every built live component now (they also refresh by themselves while shown)."""
        for c in self._built.values():
            fn = getattr(c, "refresh", None)
            if fn is not None:
                fn()

    # ------------------------------------------------------------------ layouts
    def _dir(self) -> Path:
        return layouts_dir(self.home)

    def layout(self) -> dict[str, Any]:
        """The current layout: components and theme."""
        return {"components": list(self.components), "theme": self.theme}

    def save_layout(self, name: str) -> Path:
        """Save the current layout as ``name``; return the file."""
        if not _NAME.match(name):
            raise ValidationError(
                f"layout name {name!r} is not allowed",
                input=name,
                hint="use letters, digits, '.', '_' or '-' (at most 64)",
            )
        path = self._dir() / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.layout(), indent=2) + "\n")
        tmp.replace(path)
        return path

    def load_layout(self, name: str) -> dict[str, Any]:
        """A saved layout by name."""
        return read_layout(name, self.home)

    def saved_layouts(self) -> list[str]:
        d = self._dir()
        return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []

    def _save_clicked(self) -> None:
        try:
            path = self.save_layout(self.layout_name.value.strip())
            self.saved_note.object = f"<span style='font-size:12px'>saved {path.name}</span>"
        except Exception as exc:
            self.saved_note.object = f"<span style='color:#cf222e;font-size:12px'>{exc}</span>"

    # ------------------------------------------------------------------ rendering
    @classmethod
    def for_page(cls, lab: Any = None, *, components: Sequence[str] | None = None, **kwargs: Any) -> Dashboard:
        """The dashboard of one served page: ``?components=...`` in its URL overrides ``components``
        (an unknown name shows a warning above the default components)."""
        note = None
        args = pn.state.session_args if pn.state.curdoc is not None else {}
        try:
            asked = components_from_query((args.get("components") or [None])[0])
        except ConfigError as exc:
            asked, note = None, pn.pane.Alert(f"?components=: {exc}", alert_type="warning")
        if asked:
            components = asked
            if len(asked) == 1 and "title" in kwargs:
                kwargs["title"] = f"{kwargs['title']} · {COMPONENTS[asked[0]]}"
        dash = cls(lab, components=components, **kwargs)
        dash._query_note = note
        return dash

    def _design(self) -> Any:
        return Native(theme=DarkTheme if self.theme == "dark" else DefaultTheme)

    def __panel__(self) -> Any:
        return pn.Row(self.sidebar, self.main, sizing_mode="stretch_width", design=self._design())

    def template(self) -> Any:
        """The served page: a Bootstrap template (no external fonts or CDN) with the sidebar and the components.

        The theme comes from ``?theme=dark`` in the URL when given; switching it in the sidebar reloads the
        page with that query. ``?components=memory`` (comma-separated) shows only those views: one view per
        page, as the JupyterLab sidebar opens them.
        """
        doc = pn.state.curdoc
        served = doc is not None and doc.session_context is not None
        if served:
            pn.state.on_session_destroyed(lambda _ctx: self.close())
            asked = (pn.state.session_args.get("theme") or [b""])[0].decode(errors="replace").strip("'\"")
            if asked in THEMES and asked != self.theme:
                self.theme = asked
            self._served = True
            if self._query_note is not None:
                self.main.insert(0, self._query_note)
        return pn.template.BootstrapTemplate(
            title=self.title,
            sidebar=[self.sidebar],
            main=[self.main],
            theme=self.theme,
            header_background="#161b22" if self.theme == "dark" else "#0969da",
            sidebar_width=280,
        )

    @param.depends("theme", watch=True)
    def _theme_changed(self) -> None:
        if getattr(self, "_served", False) and pn.state.location is not None:
            pn.state.location.reload = True  # a template's theme is fixed when the page is built
            pn.state.location.update_query(theme=self.theme)

    def servable(self, title: str | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        """Mark the served template as the app (for ``panel serve file.py``)."""
        return self.template().servable(title=title, **kwargs)

    def close(self) -> None:
        """Close every built component and the shared subscriptions."""
        for c in self._built.values():
            fn = getattr(c, "close", None)
            if fn is not None:
                fn()
        for sub in self._metric_subs:
            try:
                sub.unsubscribe()
            except Exception:  # the bus is closed already
                pass
        self._metric_subs = []

    def __repr__(self) -> str:
        return f"Dashboard({self.components}, theme={self.theme!r})"
