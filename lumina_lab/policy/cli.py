"""``lumina policy``: validate policies, test them against expected decisions, diff two versions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["policy"]


def _friendly(fn: Any) -> Any:
    """A mistake (:class:`~lumina_lab.errors.LuminaError`) prints one message and exits with status 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..errors import LuminaError

        try:
            return fn(*args, **kwargs)
        except LuminaError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)

    return wrapper


@click.group()
def policy() -> None:
    """Cedar policies: validate, test against expected decisions, diff versions."""


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


@policy.command("validate")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Schema file (default: policies.cedarschema in each folder).")
@click.option("--entities/--no-entities", default=False, show_default=True, help="Also check entities.json against the schema.")
@_friendly
def validate(path: Path, schema_file: Path | None, entities: bool) -> None:
    """Parse the policies of PATH (a folder, or a folder of folders, or a .cedar file) and validate them against
    their schema.  Problems name the policy, its line and column; any problem exits with status 2."""
    from ..errors import LuminaError, ValidationError
    from .entities import EntityStore
    from .examples import find_examples
    from .policies import Policies
    from .schema import Schema

    console = _console()
    targets = [path] if path.is_file() else find_examples(path)
    problems: list[str] = []
    for target in targets:
        folder = target.parent if target.is_file() else target
        name = str(target)
        try:
            pols = Policies(target) if target.is_file() else Policies.from_dir(target)
            sch_path = schema_file or (folder / "policies.cedarschema")
            schema = Schema(sch_path) if sch_path.is_file() else None
            if schema is not None:
                pols.check(schema)
            if entities and schema is not None and (folder / "entities.json").is_file():
                EntityStore(folder / "entities.json").handle(schema)
        except LuminaError as exc:
            problems.append(f"{name}:\n{exc.message}")
            console.print(f"[red]✗[/] {name}")
            continue
        against = f"valid against {schema.name}" if schema is not None else "parse (no schema to validate against)"
        extra = f", {len(pols.templates)} templates, {len(pols.links)} links" if pols.templates else ""
        console.print(f"[green]✓[/] {name}: {len(pols)} policies{extra} {against}")
    if problems:
        raise ValidationError(
            f"{len(problems)} of {len(targets)} polic{'y set' if len(targets) == 1 else 'y sets'} invalid:\n" + "\n".join(problems),
            hint="fix the policies at the lines shown",
        )


@policy.command("test")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--schema/--no-schema", "use_schema", default=True, show_default=True, help="Validate entities and requests against policies.cedarschema.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@_friendly
def test(path: Path, use_schema: bool, fmt: str) -> None:
    """Run the ALLOW/*.json and DENY/*.json requests of PATH (a Cedar example folder, or a folder of them)
    and compare each decision with the folder it is in.  Exits 1 on any mismatch, 2 on an error."""
    from ..errors import LuminaError
    from .examples import find_examples, run_example

    console = _console()
    folders = find_examples(path)
    passed = failed = errors = 0
    out: list[dict[str, Any]] = []
    for folder in folders:
        name = str(folder.relative_to(path)) if folder != path else folder.name
        try:
            result = run_example(folder, use_schema=use_schema)
        except LuminaError as exc:
            errors += 1
            if fmt == "json":
                out.append({"example": name, "error": str(exc)})
            else:
                console.print(f"[bold]{name}[/]  [red]error[/]")
                console.print(f"  {exc}".replace("\n", "\n  "), markup=False)
            continue
        passed += result.passed
        failed += result.failed
        if fmt == "json":
            out.append({"example": name, "schema": result.schema_used, "rows": result.rows})
            continue
        console.print(f"[bold]{name}[/]{'' if result.schema_used else '  (without schema)'}")
        for row in result.rows:
            mark = "[green]✓[/]" if row["ok"] else "[red]✗[/]"
            by = f"  by {row['policies']}" if row["policies"] else ("  (default deny)" if row["decision"] == "deny" else "")
            exp = f" expected {row['expected']:<5}" if row["expected"] else ""
            err = f"  [yellow]errors: {row['errors']}[/]" if row["errors"] else ""
            console.print(f"  {mark} {row['request']:<45}{exp} got {row['decision']:<5}{by}{err}")
    if fmt == "json":
        click.echo(json.dumps({"passed": passed, "failed": failed, "errors": errors, "examples": out}, indent=2))
    else:
        color = "green" if not failed and not errors else "red"
        console.print(f"[{color}]{passed} passed, {failed} failed[/]" + (f", [red]{errors} error{'s' if errors > 1 else ''}[/]" if errors else "") + f" in {len(folders)} example{'s' if len(folders) != 1 else ''}")
    if failed:
        sys.exit(1)
    if errors:
        sys.exit(2)


def _version_source(path: Path) -> tuple[Any, Path | None]:
    from .policies import Policies

    if path.is_dir():
        return Policies.from_dir(path), path
    return Policies(path), None


@policy.command("diff")
@click.argument("old", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--requests", "requests_path", required=True, type=click.Path(exists=True, path_type=Path), help="Requests: JSON, JSONL, CSV/Parquet, or an ALLOW/DENY folder.")
@click.option("--entities", "entities_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Entities (default: entities.json of NEW, else OLD).")
@click.option("--schema/--no-schema", "use_schema", default=True, show_default=True, help="Use each folder's policies.cedarschema.")
@click.option("--limit", "-n", type=int, default=50, show_default=True, help="Changed requests shown.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_friendly
def diff(old: Path, new: Path, requests_path: Path, entities_path: Path | None, use_schema: bool, limit: int, fmt: str) -> None:
    """Which requests change decision between policy versions OLD and NEW (folders or .cedar files), and why."""
    from .entities import EntityStore
    from .requests import RequestSet
    from .schema import Schema
    from .simulator import Simulator

    old_p, old_dir = _version_source(old)
    new_p, new_dir = _version_source(new)
    if entities_path is None:
        for d in (new_dir, old_dir):
            if d is not None and (d / "entities.json").is_file():
                entities_path = d / "entities.json"
                break
    store = EntityStore(entities_path) if entities_path else EntityStore()
    schemas = []
    for d in (old_dir, new_dir):
        f = d / "policies.cedarschema" if d is not None else None
        schemas.append(Schema(f) if use_schema and f is not None and f.is_file() else None)
    if schemas[0] is not None:
        old_p.check(schemas[0])
    if schemas[1] is not None:
        new_p.check(schemas[1])
    requests = RequestSet.load(requests_path)
    sim_old = Simulator(old_p, store, schemas[0], progress=False)
    sim_new = Simulator(new_p, store, schemas[1], progress=False)
    from .simulator import PolicyDiff

    d = PolicyDiff(sim_old.run(requests), sim_new.run(requests))
    frame = d.frame.drop(columns=["context"])
    if fmt == "json":
        click.echo(json.dumps({"requests": len(requests), "changed": d.n_changed, "rows": frame.to_dict(orient="records")}, indent=2, default=str))
        return
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
        return
    console = _console()
    console.print(f"[bold]{d.n_changed}[/] of {len(requests)} requests change decision ({old} → {new})")
    for row in d.policy_changes().itertuples(index=False):
        label = f' "{row.label}"' if row.label != row.policy else ""
        console.print(f"  policy {row.policy}{label} ({row.version} version): {row.status}")
    colors = {"allow": "green", "deny": "red", "no_decision": "yellow"}
    for row in frame.head(limit).itertuples(index=False):
        console.print(
            f"  [{colors[row.old]}]{row.old}[/] → [{colors[row.new]}]{row.new}[/]  "
            f"{row.principal} {row.action} {row.resource}\n      {row.why}"
        )
    if d.n_changed > limit:
        console.print(f"[dim]... {d.n_changed - limit} more (use --limit or --format csv)[/]")
