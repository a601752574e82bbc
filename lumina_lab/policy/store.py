"""The policy store: versions of policies (and their schema), validated before they are published.

>>> store = PolicyStore()
>>> v1 = store.publish('permit(principal, action, resource);', message="open")
>>> v2 = store.publish('forbid(principal, action, resource);', message="closed")
>>> store.live.number, [v.message for v in store]
(2, ['open', 'closed'])
"""

from __future__ import annotations

import difflib
import html
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError, ValidationError
from .events import PolicyVersionPublished, _wants, emit
from .policies import Policies
from .schema import Schema

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PolicyStore", "PolicyVersion"]


@dataclass(frozen=True)
class PolicyVersion:
    """One published version: policies (with links), the schema they were validated against, when and why."""

    number: int
    policies: Policies
    schema: Schema | None
    created: datetime
    message: str = ""
    author: str | None = None

    @property
    def digest(self) -> str:
        return self.policies.digest

    @property
    def text(self) -> str:
        return self.policies.text

    def __repr__(self) -> str:
        msg = f" {self.message!r}" if self.message else ""
        return f"PolicyVersion({self.number}{msg}: {len(self.policies)} policies, digest {self.digest})"


class PolicyStore:
    """Versions of a policy set, optionally persisted in a folder (one sub-folder per version).

    Args:
        path: where versions are kept (``v0001/policies.cedar``, ``policies.cedarschema``, ``linked``,
            ``meta.json``, and ``LIVE``); ``None`` keeps them in memory.
        bus: where ``policy.version.published`` events go.
    """

    def __init__(self, path: str | Path | None = None, *, bus: Any = None) -> None:
        self.path = Path(path) if path is not None else None
        self.bus = bus
        self._versions: list[PolicyVersion] = []
        self._live: int | None = None
        if self.path is not None and self.path.is_dir():
            self._load()

    # persistence -----------------------------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        for d in sorted(self.path.glob("v[0-9][0-9][0-9][0-9]*")):
            try:
                meta = json.loads((d / "meta.json").read_text())
                links = d / "linked"
                policies = Policies((d / "policies.cedar").read_text(), links if links.is_file() else None, name=f"{d.name}/policies.cedar")
                sch = d / "policies.cedarschema"
                schema = Schema(sch.read_text(), name=f"{d.name}/policies.cedarschema") if sch.is_file() else None
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(f"policy version folder {str(d)!r} is damaged: {exc}", hint="remove or repair it") from None
            self._versions.append(
                PolicyVersion(int(meta["number"]), policies, schema, datetime.fromisoformat(meta["created"]), meta.get("message", ""), meta.get("author"))
            )
        live = self.path / "LIVE"
        if live.is_file():
            self._live = int(live.read_text().strip())

    def _save(self, v: PolicyVersion) -> str | None:
        if self.path is None:
            return None
        d = self.path / f"v{v.number:04d}"
        tmp = self.path / f".v{v.number:04d}.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "policies.cedar").write_text(v.policies.text)
        if v.schema is not None:
            (tmp / "policies.cedarschema").write_text(v.schema.text)
        if v.policies.links:
            (tmp / "linked").write_text(json.dumps([link.to_json() for link in v.policies.links], indent=2))
        meta = {"number": v.number, "created": v.created.isoformat(), "message": v.message, "author": v.author, "digest": v.digest}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, d)
        self._write_live()
        return str(d)

    def _write_live(self) -> None:
        if self.path is not None:
            (self.path / "LIVE").write_text(str(self.live.number) if self.live else "")

    # publishing ------------------------------------------------------------------------------
    def publish(
        self,
        policies: Policies | str | Path,
        schema: Schema | str | Path | None = None,
        links: Any = None,
        *,
        message: str = "",
        author: str | None = None,
        validate: bool = True,
    ) -> PolicyVersion:
        """Validate and publish a new version (it becomes live); return it.

        ``policies`` may be a folder (``policies.cedar``, ``policies.cedarschema``, ``linked``). Without a
        schema, the live version's schema is kept.  Publishing what is already live returns the live version.

        Raises:
            ValidationError: a policy does not parse or violates the schema (naming policy, line and column).
        """
        if isinstance(policies, Path) or (isinstance(policies, str) and policies.strip() and "\n" not in policies and Path(policies).is_dir()):
            folder = Path(policies)
            pol = Policies.from_dir(folder)
            if schema is None and (folder / "policies.cedarschema").is_file():
                schema = folder / "policies.cedarschema"
        else:
            pol = policies if isinstance(policies, Policies) else Policies(policies)
        if links is not None:
            pol = pol.with_links(links)
        sch = schema if isinstance(schema, Schema) or schema is None else Schema(schema)
        if sch is None and self.live is not None:
            sch = self.live.schema
        if validate and sch is not None:
            pol.check(sch)
        live = self.live
        if live is not None and live.digest == pol.digest and (live.schema.text if live.schema else None) == (sch.text if sch else None):
            return live
        number = (self._versions[-1].number + 1) if self._versions else 1
        v = PolicyVersion(number, pol, sch, datetime.now(UTC), message, author)
        self._versions.append(v)
        self._live = number
        where = self._save(v)
        if _wants(self.bus, PolicyVersionPublished):
            emit(
                self.bus,
                PolicyVersionPublished(
                    version=number, digest=v.digest, policies=len(pol), templates=len(pol.templates), links=len(pol.links),
                    message=message, path=where,
                ),
            )
        return v

    def promote(self, number: int) -> PolicyVersion:
        """Make an earlier (or later) version live again (a rollback); return it."""
        v = self.get(number)
        self._live = v.number
        self._write_live()
        return v

    # reading ---------------------------------------------------------------------------------
    @property
    def live(self) -> PolicyVersion | None:
        """The live version (the latest published, unless another was promoted)."""
        if self._live is None:
            return self._versions[-1] if self._versions else None
        return self.get(self._live)

    def get(self, number: int) -> PolicyVersion:
        """Version ``number`` (negative: from the end, ``-1`` is the latest)."""
        if number < 0:
            if -number > len(self._versions):
                raise ValidationError(f"there are only {len(self._versions)} policy versions", input=number)
            return self._versions[number]
        for v in self._versions:
            if v.number == number:
                return v
        raise ValidationError(
            f"no policy version {number}", input=number, hint=f"versions: {[v.number for v in self._versions] or 'none yet'}"
        )

    __getitem__ = get

    def __len__(self) -> int:
        return len(self._versions)

    def __iter__(self) -> Iterator[PolicyVersion]:
        return iter(self._versions)

    def history(self) -> pd.DataFrame:
        """One row per version: number, created, digest, policies, templates, links, message, live."""
        import pandas as pd

        live = self.live.number if self.live else None
        rows = [
            {
                "version": v.number, "created": v.created, "digest": v.digest, "policies": len(v.policies),
                "templates": len(v.policies.templates), "links": len(v.policies.links), "message": v.message,
                "author": v.author, "live": v.number == live,
            }
            for v in self._versions
        ]
        cols = ["version", "created", "digest", "policies", "templates", "links", "message", "author", "live"]
        return pd.DataFrame(rows, columns=cols)

    def diff_text(self, old: int, new: int) -> str:
        """Unified diff of two versions' policy texts (and links)."""
        a, b = self.get(old), self.get(new)

        def lines(v: PolicyVersion) -> list[str]:
            out = v.policies.text.splitlines(keepends=True)
            if v.policies.links:
                out += ["\n", "// links\n"] + [json.dumps(link.to_json()) + "\n" for link in v.policies.links]
            return out

        return "".join(difflib.unified_diff(lines(a), lines(b), f"v{a.number}", f"v{b.number}"))

    def __repr__(self) -> str:
        where = f" at {str(self.path)!r}" if self.path else ""
        live = f", live v{self.live.number}" if self.live else ""
        return f"PolicyStore({len(self)} versions{live}{where})"

    def _repr_html_(self) -> str:
        live = self.live.number if self.live else None
        rows = "".join(
            f"<tr><td>{'<b>' if v.number == live else ''}v{v.number}{'</b> (live)' if v.number == live else ''}</td>"
            f"<td>{v.created:%Y-%m-%d %H:%M:%S}</td><td><code>{v.digest}</code></td><td>{len(v.policies)}</td>"
            f"<td>{html.escape(v.message)}</td></tr>"
            for v in self._versions
        )
        return f"<b>Policy store</b><table><tr><th>version</th><th>created</th><th>digest</th><th>policies</th><th>message</th></tr>{rows}</table>"
