"""The policy simulator: edit a Cedar policy, run a request grid, a decision heatmap, the diff against another
version, and the explanation of any request on click; policy events arrive by subscription."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, deque
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn

from ..errors import LuminaError, ValidationError
from .base import LiveView, bus_of, card, esc, lab_of

__all__ = ["PolicySimulatorView"]

_CODE = {"deny": 0.0, "no_decision": 0.5, "allow": 1.0}
_ACTION = re.compile(r'Action::"([^"\\]+)"')
_NONE = "(none)"


def starter_policy(providers: list[str]) -> str:
    """The editor's starting text when nothing is published yet: a team-wide permit and one forbid, over the
    lab's providers (the first stays open to interns), so *Run grid* shows both colours at once."""
    keep = json.dumps(providers[0])
    return (
        "// Nothing is published yet: edit this starter, run the grid, and publish it when it says what you mean.\n"
        '@id("team-uses-providers")\n'
        'permit(principal, action == Action::"use_provider", resource);\n\n'
        '@id("interns-stay-on-one-model")\n'
        'forbid(principal == User::"intern", action == Action::"use_provider", resource)\n'
        f"unless {{ resource == Provider::{keep} }};\n"
    )


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _uid(entity: dict[str, Any]) -> str:
    uid = entity["uid"]
    return f"{uid['type']}::{json.dumps(uid['id'])}"


class PolicySimulatorView(LiveView):
    """Edit a policy, run a request grid through it, and see who may do what.

    The heatmap shows principal x resource for one action (green allow, red deny, grey no decision); click a
    cell, or a row of the decision table, for the explanation (what every policy made of that request).
    *Compare with* runs the same grid through another version and lists the requests that change and why.
    *Publish* makes the edited text a new live version. ``policy.*`` events (decisions at enforcement points,
    denials, new versions) arrive by subscription.

    Args:
        lab: a :class:`~lumina_lab.lab.Lab` (its ``lab.policy``) — or pass ``policy=`` (a :class:`PolicyLab`).
        bus: where ``policy.*`` events are read from (default: the policy lab's bus).
        principals / actions / resources: the grid (default: derived from the entities and the policy text).
        context: the context of every request.
        text: the policy text to start from (default: the live version's).
    """

    def __init__(
        self,
        lab: Any = None,
        *,
        policy: Any = None,
        bus: Any = None,
        principals: list[str] | None = None,
        actions: list[str] | None = None,
        resources: list[str] | None = None,
        context: dict[str, Any] | None = None,
        text: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        lab = lab_of(lab)
        self.policy = policy if policy is not None else (lab.policy if lab is not None else None)
        if self.policy is None:
            raise LuminaError(
                "the policy simulator needs a Lab or a PolicyLab", hint="PolicySimulatorView(lab) or policy="
            )
        source_bus = bus if bus is not None else (lab.bus if lab is not None else self.policy.bus)
        self._feed: deque[dict[str, Any]] = deque(maxlen=50)
        self._lock = threading.Lock()
        self._received = 0
        self._shown = -1
        self._versions_seen = -1
        self.counts: Counter[str] = Counter()
        if source_bus is not None:
            self._listen(bus_of(None, source_bus), "policy.*", self._take, batch=256)
        live = self.policy.live
        providers = [s.id for s in lab.providers] if lab is not None else []
        starter = text is None and live is None and bool(providers)  # nothing published yet: a starting point
        start = text if text is not None else (live.text if live is not None else "")
        if starter:
            start = starter_policy(providers)
        p_default, r_default = self._entity_defaults()
        if starter:
            p_default = p_default or ['User::"ann"', 'User::"intern"']
            r_default = r_default or [f"Provider::{json.dumps(p)}" for p in providers]
        self.editor = pn.widgets.CodeEditor(value=start, language="text", height=200, sizing_mode="stretch_width")
        self.principals = pn.widgets.TextAreaInput(
            label="Principals (one per line)", value="\n".join(principals or p_default), height=120, width=220
        )
        self.actions = pn.widgets.TextAreaInput(
            label="Actions", value="\n".join(actions or self._actions_of(start)), height=120, width=160
        )
        self.resources = pn.widgets.TextAreaInput(
            label="Resources", value="\n".join(resources or r_default), height=120, width=220
        )
        self.context = pn.widgets.TextInput(label="Context (JSON)", value=json.dumps(context or {}), width=220)
        self.compare = pn.widgets.Select(label="Compare with", options=[_NONE], value=_NONE, width=160)
        self.action = pn.widgets.Select(label="Heatmap action", options=[], width=180)
        self.run_button = pn.widgets.Button(label="Run grid", color="primary", width=100, align="end")
        self.publish_button = pn.widgets.Button(label="Publish as new version", color="warning", width=220)
        self.status = pn.pane.HTML("", sizing_mode="stretch_width")
        self.heatmap = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width", height=340, backend="bokeh")
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            selectable=1,
            height=260,
            sizing_mode="stretch_width",
            layout="fit_data_stretch",
            hidden_columns=["context"],
        )
        self.diff_summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self.diff_table = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            height=200,
            sizing_mode="stretch_width",
            layout="fit_data_stretch",
            hidden_columns=["context"],
        )
        self.explanation = pn.pane.HTML(
            "<span style='opacity:.6'>click a cell or a row</span>", sizing_mode="stretch_width"
        )
        self.feed = pn.pane.HTML("<span style='opacity:.6'>no policy events yet</span>", sizing_mode="stretch_width")
        self.run_button.on_click(lambda _e: self.run())
        self.publish_button.on_click(lambda _e: self.publish())
        self.action.param.watch(lambda _e: self._draw_heatmap(), "value")
        self.table.param.watch(self._row_selected, "selection")
        self.simulator = self.policy.simulator  # one simulator: its parsed versions are cached
        self.simulator.progress = False
        self.matrix: Any = None
        self.diff: Any = None
        self._tap: Any = None
        self._refresh_versions()
        self._layout = card(
            "Policy simulator",
            "#### Policy (Cedar)",
            self.editor,
            "#### Request grid",
            pn.FlexBox(
                self.principals,
                self.actions,
                self.resources,
                pn.Column(self.context, pn.Row(self.compare, self.run_button), self.publish_button),
            ),
            self.status,
            pn.Row(
                pn.Column(self.action, self.heatmap, sizing_mode="stretch_width"),
                pn.Column("#### Explanation", self.explanation, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            self.table,
            pn.Column(
                "#### Difference from the compared version",
                self.diff_summary,
                self.diff_table,
                sizing_mode="stretch_width",
            ),
            pn.Column("#### Live policy events", self.feed, sizing_mode="stretch_width"),
        )

    # ------------------------------------------------------------------ defaults
    def _entity_defaults(self) -> tuple[list[str], list[str]]:
        try:
            ents = self.policy.entities.entities()
        except Exception:  # an attribute provider that cannot list everything
            return [], []
        by_type: dict[str, list[str]] = {}
        for e in ents:
            by_type.setdefault(e["uid"]["type"], []).append(_uid(e))
        principal_types = [t for t in by_type if t.split("::")[-1] in ("User", "Principal", "Agent", "Team")]
        principals = [u for t in principal_types for u in by_type[t]][:20]
        resources = [
            u for t, us in by_type.items() if t not in principal_types and t.split("::")[-1] != "Action" for u in us
        ][:20]
        return principals, resources

    @staticmethod
    def _actions_of(text: str) -> list[str]:
        return list(dict.fromkeys(_ACTION.findall(text)))[:12]

    # ------------------------------------------------------------------ bus thread
    def _take(self, events: list[Any]) -> None:
        with self._lock:
            for ev in events:
                self._received += 1
                self.counts[ev.type] += 1
                if ev.type == "policy.version.published":
                    what = f"version {ev.version} published ({ev.policies} policies) {ev.message}"
                elif ev.type in ("policy.decided", "policy.denied"):
                    verdict = "denied" if ev.type == "policy.denied" else ev.decision
                    what = f"{verdict}: {ev.principal} {ev.action} {ev.resource} at {ev.point}"
                else:
                    what = f"shadow diff: {ev.principal} {ev.action} {ev.resource}: live {ev.live}, candidate {ev.candidate}"
                self._feed.appendleft({"time": ev.ts.strftime("%H:%M:%S"), "what": what})

    # ------------------------------------------------------------------ document thread
    def refresh(self) -> None:
        if len(self.policy.store) != self._versions_seen:
            self._refresh_versions()
        if self._received == self._shown:
            return
        self._shown = self._received
        with self._lock:
            rows = list(self._feed)[:10]
        counts = " · ".join(f"{esc(t)} {n:,}" for t, n in sorted(self.counts.items()))
        body = "".join(f"<tr><td>{esc(r['time'])}</td><td>{esc(r['what'])}</td></tr>" for r in rows)
        self.feed.object = f"<div style='font-size:12px'>{counts}<table>{body}</table></div>"

    def _refresh_versions(self) -> None:
        store = self.policy.store
        self._versions_seen = len(store)
        live = store.live
        options = [_NONE] + [
            f"v{v.number}" + (" (live)" if live is not None and v.number == live.number else "") for v in store
        ]
        value = self.compare.value if self.compare.value in options else _NONE
        self.compare.options = options
        self.compare.value = value

    def requests(self) -> Any:
        """The request grid of the inputs (a :class:`~lumina_lab.policy.RequestSet`)."""
        from ..policy import RequestSet

        principals, actions, resources = (
            _lines(self.principals.value),
            _lines(self.actions.value),
            _lines(self.resources.value),
        )
        if not (principals and actions and resources):
            raise ValidationError(
                "the grid needs at least one principal, one action and one resource",
                hint='e.g. User::"alice" / read / Doc::"d1", one per line',
            )
        try:
            context = json.loads(self.context.value or "{}")
        except ValueError as exc:
            raise ValidationError(f"the context is not JSON: {exc}", input=self.context.value) from None
        return RequestSet.grid(principals, actions, resources, [context])

    def run(self) -> Any:
        """Run the grid through the edited policy (and the compared version); show and return the matrix."""
        try:
            rs = self.requests()
            sim = self.simulator
            text = self.editor.value
            self.matrix = sim.run(rs, policies=text)
            compare = self.compare.value
            self.diff = sim.diff(int(compare.split()[0][1:]), text, rs) if compare != _NONE else None
        except LuminaError as exc:
            self.status.object = f"<pre style='color:#cf222e;white-space:pre-wrap'>{esc(exc)}</pre>"
            return None
        c = self.matrix.counts
        self.status.object = (
            f"<b>{len(self.matrix):,} requests</b>: <span style='color:#1a7f37'>{c['allow']:,} allow</span> · "
            f"<span style='color:#cf222e'>{c['deny']:,} deny</span> · {c['no_decision']:,} no decision"
        )
        frame = self.matrix.frame.copy()
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.CategoricalDtype):
                frame[col] = frame[col].astype(str)
        self.table.value = frame
        actions = list(dict.fromkeys(frame["action"]))
        self.action.options = actions
        if self.action.value not in actions:
            self.action.value = actions[0]
        else:
            self._draw_heatmap()
        self._draw_diff()
        return self.matrix

    def publish(self) -> Any:
        """Publish the edited text as a new (live) version."""
        try:
            version = self.policy.publish(self.editor.value, message="published from the policy simulator")
        except LuminaError as exc:
            self.status.object = f"<pre style='color:#cf222e;white-space:pre-wrap'>{esc(exc)}</pre>"
            return None
        self._refresh_versions()
        self.status.object = f"published version {version.number} (now live)"
        return version

    def _draw_heatmap(self) -> None:
        if self.matrix is None or not self.action.value:
            return
        f = self.table.value
        f = f[f["action"] == self.action.value]
        data = pd.DataFrame(
            {  # object columns: HoloViews reshapes them (Arrow-backed strings cannot be)
                "resource": f["resource"].astype(object),
                "principal": f["principal"].astype(object),
                "code": f["decision"].map(_CODE).fillna(0.5).astype(float),
                "decision": f["decision"].astype(object),
                "determining": f["determining"].astype(object),
            }
        )
        heat = hv.HeatMap(data, ["resource", "principal"], ["code", "decision", "determining"]).opts(
            cmap=["#cf222e", "#8c959f", "#1a7f37"],
            clim=(0, 1),
            colorbar=False,
            tools=["hover", "tap"],
            responsive=True,
            height=320,
            xrotation=30,
            line_color="white",
            line_width=2,
            title=f"{self.action.value}: principal x resource",
            xlabel="",
            ylabel="",
        )
        self._tap = hv.streams.Tap(source=heat)
        self._tap.param.watch(self._cell_tapped, ["x", "y"])
        self.heatmap.object = heat

    def _draw_diff(self) -> None:
        if self.diff is None:
            self.diff_summary.object = "<span style='opacity:.6'>choose a version in “Compare with”</span>"
            self.diff_table.value = pd.DataFrame()
            return
        d = self.diff
        changes = d.policy_changes()
        ch = ", ".join(f"{esc(r.label)} ({esc(r.status)})" for r in changes.itertuples()) or "no policy changed"
        self.diff_summary.object = (
            f"<b>{d.n_changed:,} of {len(d.changed):,}</b> requests change decision · policies: {ch}"
        )
        frame = d.frame.copy()
        self.diff_table.value = frame

    def _cell_tapped(self, event: Any) -> None:
        tap = self._tap
        if tap is None or tap.x is None or tap.y is None:
            return
        self.explain(str(tap.y), self.action.value, str(tap.x))

    def _row_selected(self, event: Any) -> None:
        if event.new:
            row = self.table.value.iloc[event.new[0]]
            self.explain(row["principal"], row["action"], row["resource"], row.get("context") or None)

    def explain(self, principal: str, action: str, resource: str, context: dict[str, Any] | None = None) -> Any:
        """Explain one request under the edited policy; show and return the :class:`Explanation`."""
        try:
            if context is None:
                context = json.loads(self.context.value or "{}")
            exp = self.simulator.explain(principal, action, resource, context, policies=self.editor.value)
        except (LuminaError, ValueError) as exc:
            self.explanation.object = f"<pre style='color:#cf222e;white-space:pre-wrap'>{esc(exc)}</pre>"
            return None
        self.explanation.object = f"<pre style='white-space:pre-wrap;font-size:12px'>{esc(exp)}</pre>"
        return exp

    def __repr__(self) -> str:
        return f"PolicySimulatorView({self.policy!r})"
