"""A set of Cedar policies (and templates with their links), parsed once.

>>> p = Policies('@id("owners") permit(principal, action, resource) when { resource.owner == principal };')
>>> [(info.id, info.label) for info in p]
[('policy0', 'owners')]
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from .source import Statement, line_col, split_policies, syntax_errors
from .uids import parse_uid

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["Link", "Policies", "PolicyInfo", "PolicyIssue", "load_links"]


@dataclass(frozen=True)
class Link:
    """A template link: ``template`` (positional id or ``@id``) filled with ``values`` as policy ``id``."""

    template: str
    id: str
    values: Mapping[str, str]

    def to_cedarpy(self) -> dict[str, Any]:
        return {"template_id": self.template, "new_id": self.id, "values": dict(self.values)}

    def to_json(self) -> dict[str, Any]:
        """Cedar's ``linked`` file format."""
        return {"template_id": self.template, "link_id": self.id, "args": dict(self.values)}


def load_links(source: str | Path | Iterable[Any] | None) -> list[Link]:
    """Template links from Cedar's ``linked`` format (a file, JSON text, or a list of dicts/:class:`Link`)."""
    if source is None:
        return []
    name = "links"
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("[")):
        name = str(source)
        source = Path(source).read_text()
    if isinstance(source, str):
        try:
            source = json.loads(source)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{name}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", input=name
            ) from None
    links: list[Link] = []
    for i, item in enumerate(source):  # type: ignore[union-attr]
        if isinstance(item, Link):
            links.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ValidationError(f"{name}[{i}] is not an object", input=item)
        template = item.get("template_id", item.get("template"))
        new_id = item.get("link_id", item.get("new_id", item.get("id")))
        values = item.get("args", item.get("values"))
        if not isinstance(template, str) or not isinstance(new_id, str) or not isinstance(values, Mapping):
            raise ValidationError(
                f"{name}[{i}] needs template_id, link_id and args, got {sorted(item)}",
                input=item,
                hint='{"template_id": "my-template", "link_id": "AliceView", "args": {"?principal": "User::\\"alice\\""}}',
            )
        slots = {}
        for slot, uid in values.items():
            key = slot if slot.startswith("?") else f"?{slot}"
            if key not in ("?principal", "?resource"):
                raise ValidationError(f"{name}[{i}]: unknown slot {slot!r}", hint="slots are ?principal and ?resource")
            t, eid = parse_uid(uid, what=f"{name}[{i}] {key}")
            from .uids import format_uid

            slots[key] = format_uid(t, eid)
        links.append(Link(template, new_id, slots))
    return links


@dataclass(frozen=True)
class PolicyInfo:
    """One policy that can decide: a static policy or a template link."""

    id: str
    effect: str
    annotation: str | None
    kind: str  # "static" or "link"
    template: str | None
    statement: Statement

    @property
    def label(self) -> str:
        """The ``@id`` annotation when there is one, else the policy id."""
        return self.annotation or self.id


@dataclass(frozen=True)
class PolicyIssue:
    """A validation error of one policy against a schema."""

    policy_id: str
    annotation: str | None
    source: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        ann = f' (@id "{self.annotation}")' if self.annotation else ""
        return f"{self.source}:{self.line}:{self.column} policy {self.policy_id}{ann}: {self.message}"


@dataclass
class _Segment:
    start: int
    name: str


class Policies:
    """Cedar policies and templates (text), template links, parsed once.

    Args:
        text: Cedar policy text (or a path to a ``.cedar`` file).
        links: template links (Cedar's ``linked`` format, a path to it, or :class:`Link` objects).
        name: how errors name the text (default: the file name, else ``policies``).

    Raises:
        ValidationError: a policy does not parse (naming its id, ``@id``, line and column), or a
            link names an unknown template or fills the wrong slots.
    """

    def __init__(
        self,
        text: str | Path = "",
        links: str | Path | Iterable[Any] | None = None,
        *,
        name: str | None = None,
        _segments: Sequence[tuple[int, str]] | None = None,
    ) -> None:
        if isinstance(text, Path) or (isinstance(text, str) and text.endswith(".cedar") and "\n" not in text):
            path = Path(text)
            if not path.is_file():
                raise ValidationError(f"policy file {str(path)!r} does not exist", input=str(path))
            name = name or path.name
            text = path.read_text()
        if not isinstance(text, str):
            raise ValidationError(f"policies are Cedar text, not {type(text).__name__}", input=text)
        self.text = text
        self.name = name or "policies"
        self._segments = [_Segment(s, n) for s, n in (_segments or [(0, self.name)])]
        self.links: list[Link] = load_links(links)
        self.handle  # noqa: B018  parse now: errors belong to whoever loads the policies

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_dir(cls, path: str | Path, *, links: bool = True) -> Policies:
        """``policies.cedar`` (or every ``*.cedar`` file, in name order) and ``linked`` of a folder."""
        path = Path(path)
        if not path.is_dir():
            looks_like_cedar = any(w in str(path) for w in ("permit", "forbid", "(", ";"))
            raise ValidationError(
                f"{str(path)!r} is not a folder",
                input=str(path),
                hint="to use policy text, publish it: lab.policy.publish('permit(...);')"
                if looks_like_cedar
                else "pass a folder holding policies.cedar (or *.cedar files)",
            )
        files = [path / "policies.cedar"] if (path / "policies.cedar").is_file() else sorted(path.glob("*.cedar"))
        if not files:
            raise ValidationError(
                f"no Cedar policies in {str(path)!r}", input=str(path), hint="put them in policies.cedar"
            )
        linked = path / "linked" if links and (path / "linked").is_file() else None
        return cls.from_files(files, links=linked)

    @classmethod
    def from_files(cls, files: Sequence[str | Path], *, links: Any = None) -> Policies:
        """Policies from one or more ``.cedar`` files (errors name the file and its line)."""
        parts: list[str] = []
        segments: list[tuple[int, str]] = []
        offset = 0
        for f in files:
            p = Path(f)
            if not p.is_file():
                raise ValidationError(f"policy file {str(p)!r} does not exist", input=str(p))
            text = p.read_text()
            if text and not text.endswith("\n"):
                text += "\n"
            segments.append((offset, p.name))
            parts.append(text)
            offset += len(text)
        return cls("".join(parts), links, name=Path(files[0]).name if len(files) == 1 else "policies", _segments=segments)

    def with_links(self, links: Any) -> Policies:
        """A copy with ``links`` added to the existing ones."""
        segs = [(s.start, s.name) for s in self._segments]
        return Policies(self.text, [*self.links, *load_links(links)], name=self.name, _segments=segs)

    # locations ----------------------------------------------------------------------------
    def where(self, offset: int) -> tuple[str, int, int]:
        """``(file name, line, column)`` of an offset in :attr:`text`."""
        seg = self._segments[0]
        for s in self._segments:
            if s.start <= offset:
                seg = s
        line, col = line_col(self.text[seg.start :], offset - seg.start)
        return seg.name, line, col

    # parsing ------------------------------------------------------------------------------
    @cached_property
    def statements(self) -> list[Statement]:
        """Every statement (policy or template) of the text, in order."""
        return split_policies(self.text)

    @cached_property
    def handle(self) -> Any:
        """The parsed ``cedarpy.PolicySet`` (templates linked)."""
        import cedarpy

        try:
            handle = cedarpy.PolicySet.from_str(self.text)
        except ValueError:
            errors = syntax_errors(self.text, cedarpy.PolicySet.from_str, source=self.name)
            for e in errors:  # re-anchor lines to the file each statement came from
                if len(self._segments) > 1:
                    lines = self.text.splitlines()
                    offset = sum(len(x) + 1 for x in lines[: e.line - 1]) + e.column - 1
                    name, line, col = self.where(offset)
                    object.__setattr__(e, "source", name)
                    object.__setattr__(e, "line", line)
                    object.__setattr__(e, "column", col)
            n = len(errors)
            raise ValidationError(
                f"{n} polic{'y does' if n == 1 else 'ies do'} not parse:\n" + "\n".join(str(e) for e in errors),
                input=self.name,
                hint="fix the policy at the line and column shown (Cedar syntax: https://docs.cedarpolicy.com/)",
            ) from None
        if self.links:
            try:
                handle = handle.with_linked_batch([link.to_cedarpy() for link in self.links])
            except (ValueError, KeyError) as exc:
                templates = [
                    f"{s.policy_id}" + (f' (@id "{s.annotations["id"]}")' if "id" in s.annotations else "")
                    for s in self.statements
                    if s.is_template
                ]
                raise ValidationError(
                    f"template links of {self.name} cannot be applied: {exc}",
                    input=[link.to_json() for link in self.links],
                    hint=f"templates here: {', '.join(templates) or 'none'}; link ids must be new and fill "
                    "exactly the template's slots",
                ) from None
        return handle

    @cached_property
    def pst(self) -> Any:
        """The policies as ``cedarpy.pst`` nodes (for analysis and subsets)."""
        return self.handle.to_pst()

    @cached_property
    def _by_statement(self) -> dict[str, Statement]:
        return {s.policy_id: s for s in self.statements}

    @cached_property
    def infos(self) -> list[PolicyInfo]:
        """Every policy that can decide: static policies, then template links."""
        pst = self.pst
        out: list[PolicyInfo] = []
        for pid, t in pst.static_policies.items():
            st = self._by_statement[pid]
            out.append(PolicyInfo(pid, t.effect, t.annotations.get("id"), "static", None, st))
        for link in pst.template_links:
            t = pst.templates[link.template_id]
            st = self._by_statement[link.template_id]
            out.append(PolicyInfo(link.new_id, t.effect, t.annotations.get("id"), "link", link.template_id, st))
        out.sort(key=lambda i: (i.kind != "static", i.statement.index if i.kind == "static" else 0))
        return out

    @cached_property
    def _info_by_id(self) -> dict[str, PolicyInfo]:
        return {i.id: i for i in self.infos}

    def info(self, policy_id: str) -> PolicyInfo:
        """The :class:`PolicyInfo` of a policy id (positional id or link id)."""
        try:
            return self._info_by_id[policy_id]
        except KeyError:
            raise ValidationError(
                f"no policy {policy_id!r} in {self.name}", input=policy_id, hint=f"ids: {sorted(self._info_by_id)}"
            ) from None

    def label(self, policy_id: str) -> str:
        """``@id`` annotation of a policy, else its id."""
        info = self._info_by_id.get(policy_id)
        return info.label if info else policy_id

    @cached_property
    def templates(self) -> list[Statement]:
        """The templates (statements with ``?principal`` / ``?resource``)."""
        return [s for s in self.statements if s.is_template]

    @cached_property
    def digest(self) -> str:
        """A content hash of the text and the links (names versions)."""
        h = hashlib.sha256(self.text.encode())
        h.update(json.dumps([link.to_json() for link in self.links], sort_keys=True).encode())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.infos)

    def __iter__(self) -> Iterator[PolicyInfo]:
        return iter(self.infos)

    # subsets ------------------------------------------------------------------------------
    def subset(self, ids: Iterable[str]) -> Any:
        """A ``cedarpy.PolicySet`` holding only the policies ``ids`` (same ids, same annotations)."""
        import cedarpy

        return cedarpy.PolicySet.from_pst(subset_pst(self.pst, ids))

    # validation ---------------------------------------------------------------------------
    def validate(self, schema: Schema | str | Path | dict[str, Any]) -> list[PolicyIssue]:
        """Validate against ``schema``; the problems found (empty: valid), each with id, line and column."""
        import cedarpy

        from .schema import Schema

        schema = schema if isinstance(schema, Schema) else Schema(schema)
        result = cedarpy.validate_policies(self.text, schema.handle)
        issues: list[PolicyIssue] = []
        for err in result.errors:
            pid = err.policy_id
            st = self._by_statement.get(pid)
            offset = st.start if st else 0
            message = re.sub(rf"^for policy `{re.escape(pid)}`, ", "", err.error) if pid else err.error
            if st is not None:
                for snippet in re.findall(r"`([^`]+)`", message):
                    pos = st.text.find(snippet)
                    if pos >= 0:
                        offset = st.start + pos
                        break
            name, line, col = self.where(offset)
            ann = st.annotations.get("id") if st else None
            issues.append(PolicyIssue(pid or "?", ann, name, line, col, message))
        if self.links:  # links: check the policies they create by validating their text
            for link in self.links:
                info = self._info_by_id.get(link.id)
                if info is None:
                    continue
                linked_text = str(self.subset([link.id]))
                linked = cedarpy.validate_policies(re.sub(r"\?(principal|resource)", _slot(link), linked_text), schema.handle)
                for err in linked.errors:
                    name, line, col = self.where(info.statement.start)
                    msg = re.sub(r"^for policy `[^`]*`, ", "", err.error)
                    issues.append(PolicyIssue(link.id, info.annotation, name, line, col, f"(linked from {info.template}) {msg}"))
        return issues

    def check(self, schema: Schema | str | Path | dict[str, Any]) -> Policies:
        """Validate against ``schema``; raise :class:`ValidationError` listing every problem; return self."""
        issues = self.validate(schema)
        if issues:
            n = len(issues)
            raise ValidationError(
                f"{n} schema violation{'s' if n > 1 else ''} in {self.name}:\n" + "\n".join(f"  {i}" for i in issues),
                input=self.name,
                hint="make the policies match the schema (or fix the schema); attribute and action names must be declared",
            )
        return self

    # display ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        n_t = len(self.templates)
        extra = f", {n_t} template{'s' if n_t != 1 else ''}, {len(self.links)} link{'s' if len(self.links) != 1 else ''}" if n_t else ""
        return f"Policies({self.name!r}: {len(self.infos)} polic{'y' if len(self.infos) == 1 else 'ies'}{extra}, digest {self.digest})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(i.id)}</code></td><td>{html.escape(i.annotation or '')}</td>"
            f"<td>{i.effect}</td><td>{i.kind}{' of ' + html.escape(i.template) if i.template else ''}</td>"
            f"<td>{self.where(i.statement.start)[1]}</td></tr>"
            for i in self.infos
        )
        return (
            f"<b>{html.escape(self.name)}</b> · digest <code>{self.digest}</code>"
            f"<table><tr><th>id</th><th>@id</th><th>effect</th><th>kind</th><th>line</th></tr>{rows}</table>"
        )


def _slot(link: Link) -> Any:
    def sub(m: re.Match[str]) -> str:
        return link.values.get(f"?{m.group(1)}", m.group(0))

    return sub


def subset_pst(pst_set: Any, ids: Iterable[str]) -> Any:
    """A ``cedarpy.pst.PolicySet`` of the static policies and links named by ``ids``."""
    from cedarpy import pst

    wanted = set(ids)
    statics = {k: v for k, v in pst_set.static_policies.items() if k in wanted}
    links = tuple(link for link in pst_set.template_links if link.new_id in wanted)
    templates = {link.template_id: pst_set.templates[link.template_id] for link in links}
    return pst.PolicySet(templates=templates, static_policies=statics, template_links=links)
