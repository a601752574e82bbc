"""IPython magics: ``%load_ext lumina_lab``, then ``%lumina SUBCOMMAND ...`` and ``%%lumina ask``.

Subcommands (``%lumina help SUBCOMMAND`` or ``%lumina SUBCOMMAND --help`` for the options of one)::

    %lumina status                                 the lab: home, store, bus, providers, budgets, policy
    %lumina providers                              the provider table (capabilities, prices, breakers)
    %lumina route Refactor this --needs code       where a prompt would go, and why (no call)
    %lumina ask Summarise our options --max-tokens 80    answer, streamed
    %lumina memory search "provider outage" -c notes -k 5 --mode hybrid
    %lumina policy check 'User::"ann"' read 'Doc::"d1"'
    %lumina dashboard --components overview,providers --theme dark
    %lumina use my_lab                             act on the Lab in variable ``my_lab``

    %%lumina ask --max-tokens 300
    A prompt over several lines,
    streamed into the cell's output.

The magics act on the :class:`~lumina_lab.lab.Lab` named ``lab`` in the notebook (or the one chosen with
``%lumina use``); without one they make a ``Lab()`` on the configured home. Arguments are parsed with
IPython's ``magic_arguments``: a wrong option is a ``UsageError`` with the usage line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.utils.process import arg_split

from .errors import LuminaError

__all__ = ["LuminaMagics", "load_ipython_extension", "unload_ipython_extension"]

SUBCOMMANDS = ("status", "providers", "route", "ask", "memory", "policy", "dashboard", "use", "help")


def _split(line: str) -> list[str]:
    """Split like a shell, but keep quotes inside a word: ``'a phrase'`` is one argument without its quotes,
    ``User::"ann"`` stays as written (Cedar uids quote their ids)."""
    out = []
    for token in arg_split(line, posix=False):
        if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
            token = token[1:-1]
        out.append(token)
    return out


def _needs(values: list[str] | None) -> frozenset[str]:
    out: set[str] = set()
    for v in values or []:
        out.update(x.strip() for x in v.split(",") if x.strip())
    return frozenset(out)


def _json(text: str | None, what: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not JSON: {exc}") from None


@magics_class
class LuminaMagics(Magics):
    """The ``%lumina`` line magic and ``%%lumina`` cell magic."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self._lab_var: str | None = None
        self._own_lab: Any = None
        self._subcommands: dict[str, Callable[..., Any]] = {
            "status": self._status,
            "providers": self._providers,
            "route": self._route,
            "ask": self._ask,
            "memory": self._memory,
            "policy": self._policy,
            "dashboard": self._dashboard,
            "use": self._use,
            "help": self._help,
        }

    # ------------------------------------------------------------------ the lab
    @property
    def lab(self) -> Any:
        """The Lab the magics act on."""
        from .lab import Lab

        ns = self.shell.user_ns if self.shell is not None else {}
        if self._lab_var is not None:
            value = ns.get(self._lab_var)
            if not isinstance(value, Lab):
                raise UsageError(
                    f"variable {self._lab_var!r} no longer holds a Lab; choose another with %lumina use VAR"
                )
            return value
        value = ns.get("lab")
        if isinstance(value, Lab):
            return value
        if self._own_lab is None:
            self._own_lab = Lab()
            print(f"(using a new Lab() on {self._own_lab.settings.home}; choose another with %lumina use VAR)")
        return self._own_lab

    # ------------------------------------------------------------------ entry point
    @magic_arguments()
    @argument("command", choices=SUBCOMMANDS, help="what to do (`%%lumina help COMMAND` for its options)")
    @argument("args", nargs=argparse.REMAINDER, help="the subcommand's arguments")
    @line_cell_magic
    def lumina(self, line: str, cell: str | None = None) -> Any:
        """Lumina Lab from a notebook: status, providers, route, ask, memory search, policy check, dashboard."""
        args = parse_argstring(self.lumina, line)
        fn = self._subcommands[args.command]
        argv = _split(line)[1:]
        if cell is not None and args.command != "ask":
            raise UsageError(f"%%lumina {args.command} is not a cell magic; only %%lumina ask takes a cell")
        if any(a in ("-h", "--help") for a in argv):
            print(self._usage(args.command))
            return None
        try:
            return fn(argv, cell) if args.command == "ask" else fn(argv)
        except LuminaError as exc:  # one message, no stack (LuminaError renders itself in IPython)
            raise UsageError(str(exc)) from None

    def _parse(self, fn: Callable[..., Any], argv: list[str]) -> argparse.Namespace:
        return fn.parser.parse_args(argv)  # type: ignore[attr-defined]

    def _usage(self, command: str) -> str:
        fn = self._subcommands[command]
        parser = getattr(fn, "parser", None)
        return parser.format_help() if parser is not None else (fn.__doc__ or "")

    # ------------------------------------------------------------------ subcommands
    @magic_arguments()
    @argument("command", nargs="?", help="a subcommand")
    def _help(self, argv: list[str]) -> None:
        """%lumina help [COMMAND]: the subcommands, or one subcommand's options."""
        args = self._parse(self._help, argv)
        if args.command:
            if args.command not in self._subcommands:
                raise UsageError(f"no subcommand {args.command!r}; choose from {', '.join(SUBCOMMANDS)}")
            print(self._usage(args.command))
        else:
            print(__doc__)

    @magic_arguments()
    @argument("variable", help="name of a variable holding a Lab")
    def _use(self, argv: list[str]) -> None:
        """%lumina use VARIABLE: act on the Lab in that variable."""
        from .lab import Lab

        args = self._parse(self._use, argv)
        if not isinstance(self.shell.user_ns.get(args.variable), Lab):
            raise UsageError(f"{args.variable!r} is not a variable holding a Lab")
        self._lab_var = args.variable
        print(f"%lumina now acts on {args.variable}")

    @magic_arguments()
    def _status(self, argv: list[str]) -> dict[str, Any]:
        """%lumina status: the lab's home, event store, bus, providers, budgets, memory and policy."""
        self._parse(self._status, argv)
        lab = self.lab
        s = lab.settings
        stats = lab.store.stats()
        lines = [
            f"Lumina Lab — profile {s.profile}, home {s.home}",
            f"  event store: {lab.store.kind}, {stats['acked']:,} events stored, {stats['buffered']} buffered",
            f"  bus: {len(lab.bus.subscriptions)} subscribers, {lab.bus.published:,} events published",
        ]
        providers = [(st.id, st.breaker.state, st.healthy) for st in lab.providers]
        open_ = [p for p, b, _ in providers if b != "closed"]
        lines.append(f"  providers: {len(providers)} ({', '.join(p for p, _, _ in providers)})")
        lines.append(f"  breakers not closed: {', '.join(open_) if open_ else 'none'}")
        budgets = lab.budgets.status()
        lines.append(f"  budgets: {len(lab.budgets.budgets)} configured, {len(budgets)} buckets in use")
        if "memory" in lab.__dict__:
            lines.append(f"  memory: {', '.join(lab.memory.collections()) or 'no collections'}")
        if "policy" in lab.__dict__:
            live = lab.policy.live
            lines.append(f"  policy: {'live version ' + str(live.number) if live else 'nothing published'}")
        print("\n".join(lines))
        return {
            "profile": s.profile,
            "home": str(s.home),
            "events_stored": stats["acked"],
            "providers": len(providers),
            "breakers_open": open_,
        }

    @magic_arguments()
    @argument("--format", choices=["table", "json"], default="table")
    def _providers(self, argv: list[str]) -> Any:
        """%lumina providers: capabilities, prices, breaker state and statistics of each provider."""
        args = self._parse(self._providers, argv)
        frame = self.lab.providers.table()
        if args.format == "json":
            print(frame.to_json(orient="records", indent=1))
            return None
        return frame

    @magic_arguments()
    @argument("prompt", nargs="+", help="the prompt (quote it or not)")
    @argument("--needs", action="append", help="required capability: code, vision, tools, json_mode, ... (repeatable)")
    @argument("--max-tokens", type=int, default=256)
    @argument("--project", help="project charged (budgets)")
    @argument("--principal", help="who asks (budgets, policy)")
    def _route(self, argv: list[str]) -> Any:
        """%lumina route PROMPT [--needs code] [--max-tokens N]: where it would go and why (no call)."""
        args = self._parse(self._route, argv)
        return self.lab.route(
            " ".join(args.prompt),
            needs=_needs(args.needs),
            max_tokens=args.max_tokens,
            project=args.project,
            principal=args.principal,
        )

    @magic_arguments()
    @argument("prompt", nargs="*", help="the prompt (the cell's text with %%lumina ask)")
    @argument("--needs", action="append", help="required capability (repeatable)")
    @argument("--max-tokens", type=int, default=256)
    @argument("--project", help="project charged (budgets)")
    @argument("--principal", help="who asks (budgets, policy)")
    @argument("--no-stream", action="store_true", help="wait for the whole answer")
    def _ask(self, argv: list[str], cell: str | None = None) -> Any:
        """%lumina ask PROMPT / %%lumina ask + cell: route and answer, streamed into the output."""
        args = self._parse(self._ask, argv)
        prompt = (cell if cell is not None and cell.strip() else " ".join(args.prompt)).strip()
        if not prompt:
            raise UsageError("ask needs a prompt: %lumina ask PROMPT, or %%lumina ask with the prompt in the cell")
        fields = {
            "needs": _needs(args.needs),
            "max_tokens": args.max_tokens,
            "project": args.project,
            "principal": args.principal,
        }
        lab = self.lab
        if args.no_stream:
            r = lab.ask(prompt, **fields)
            print(r.text)
            print(
                f"[{r.provider} · {r.usage.input_tokens}+{r.usage.output_tokens} tokens · ${r.cost_usd:.6f} · "
                f"{r.latency_s * 1000:.0f} ms]",
                file=sys.stderr,
            )
            return None
        provider, usage, switched = None, None, []
        for chunk in lab.stream(prompt, **fields):
            if chunk.failover_from:
                switched.append(f"{chunk.failover_from} → {chunk.provider}")
            provider = chunk.provider
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.text:
                print(chunk.text, end="", flush=True)
        print()
        tokens = f" · {usage.input_tokens}+{usage.output_tokens} tokens" if usage is not None else ""
        failover = f" · failover {', '.join(switched)}" if switched else ""
        print(f"[{provider}{tokens}{failover}]", file=sys.stderr)
        return None

    @magic_arguments()
    @argument("action", choices=["search"], help="what to do with memory")
    @argument("query", nargs="+", help="the query")
    @argument("-c", "--collection", default="default")
    @argument("-k", type=int, default=5)
    @argument("--mode", choices=["vector", "keyword", "hybrid"], default="hybrid")
    @argument("--where", help='metadata filter as JSON, e.g. \'{"team": "search"}\'')
    @argument("--principal", help="search as this principal (policy-gated memories)")
    def _memory(self, argv: list[str]) -> Any:
        """%lumina memory search QUERY [-c COLLECTION] [-k 5] [--mode hybrid] [--where JSON]."""
        args = self._parse(self._memory, argv)
        memory = self.lab.memory
        if args.collection not in memory.collections():
            have = ", ".join(memory.collections()) or "none"
            raise UsageError(f"no memory collection {args.collection!r} (collections: {have}); choose one with -c NAME")
        return memory.collection(args.collection).search(
            " ".join(args.query), k=args.k, mode=args.mode, where=_json(args.where, "--where"), principal=args.principal
        )

    @magic_arguments()
    @argument("action", choices=["check"], help="what to do with policies")
    @argument("principal", help='e.g. User::"ann"')
    @argument("verb", metavar="action", help='the action, e.g. read or Action::"read"')
    @argument("resource", help='e.g. Doc::"d1"')
    @argument("--context", help="request context as JSON")
    @argument("--version", type=int, help="a published version (default: the live one)")
    def _policy(self, argv: list[str]) -> Any:
        """%lumina policy check PRINCIPAL ACTION RESOURCE [--context JSON] [--version N]: decide and explain."""
        args = self._parse(self._policy, argv)
        policy = self.lab.policy
        context = _json(args.context, "--context")
        if policy.live is None and args.version is None:
            raise UsageError("no policy version is published yet; publish one with lab.policy.publish(...)")
        explanation = policy.explain(args.principal, args.verb, args.resource, context, version=args.version)
        print(explanation)
        return explanation.decision

    @magic_arguments()
    @argument("--components", help="comma-separated: overview,providers,events,memory,policy,routing")
    @argument("--theme", choices=["default", "dark"])
    @argument("--layout", help="a saved layout name")
    @argument("--serve", action="store_true", help="also serve it to a browser tab (127.0.0.1)")
    @argument("--port", type=int, default=0, help="with --serve: the port (0: any free one)")
    def _dashboard(self, argv: list[str]) -> Any:
        """%lumina dashboard [--components a,b] [--theme dark] [--layout NAME] [--serve --port N]."""
        args = self._parse(self._dashboard, argv)
        from .ui import Dashboard, extension

        extension(theme=args.theme)
        components = [c.strip() for c in args.components.split(",") if c.strip()] if args.components else None
        if args.serve:
            from .ui.server import serve

            port = args.port or _free_port()
            server = serve(
                self.lab,
                components=components,
                theme=args.theme,
                layout=args.layout,
                port=port,
                threaded=True,
                feed=False,
                verbose=False,
            )
            print(f"serving the dashboard at http://127.0.0.1:{port}/ (stop with server.stop())")
            return server
        return Dashboard(self.lab, components=components, theme=args.theme, layout=args.layout)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


for _name in SUBCOMMANDS:  # usage lines read "%lumina NAME ..." (magic_arguments names them after the method)
    getattr(LuminaMagics, f"_{_name}").parser.prog = f"lumina {_name}"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lumina_lab``: register the ``%lumina`` magics."""
    ipython.register_magics(LuminaMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext lumina_lab``."""
    manager = ipython.magics_manager
    manager.magics["line"].pop("lumina", None)
    manager.magics["cell"].pop("lumina", None)
