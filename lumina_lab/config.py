"""Configuration: one :class:`Settings` object, read from (highest first)

1. keyword arguments to :func:`load_settings`,
2. environment variables ``LUMINA_*`` (nested keys with ``__``, e.g.
   ``LUMINA_EVENTS__STORE=memory``),
3. a ``lumina.toml`` file (``$LUMINA_CONFIG``, else ``./lumina.toml``, else
   ``$LUMINA_HOME/lumina.toml``),
4. the defaults of the chosen *profile* (``dev``, ``test`` or ``prod``).

Invalid configuration raises :class:`~lumina_lab.errors.ConfigError` naming
the key, the value, where it came from and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

__all__ = ["PROFILES", "EventSettings", "ObservabilitySettings", "Settings", "config_file", "load_settings"]

Profile = Literal["dev", "test", "prod"]

#: What each profile changes.  Values here fill settings the user left unset.
PROFILES: dict[str, dict[str, Any]] = {
    "dev": {"events.store": "file", "log_level": "INFO", "observability.tracing": True},
    "test": {"events.store": "memory", "log_level": "WARNING", "observability.tracing": False},
    "prod": {"events.store": "file", "log_level": "WARNING", "observability.tracing": True},
}


class EventSettings(BaseModel):
    """Settings of the event spine (bus and store)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    store: Literal["file", "memory"] | None = Field(
        default=None,
        description="Where events are kept: 'file' (Parquet segments under LUMINA_HOME/events, "
        "queried with DuckDB, shared by every process) or 'memory' (in-process DuckDB). "
        "Unset: chosen by the profile.",
    )
    queue_size: int = Field(default=10_000, ge=1, description="Per-subscriber queue bound.")
    overflow: Literal["block", "drop_oldest"] = Field(
        default="block", description="Default policy when a subscriber's queue is full."
    )
    handler_retries: int = Field(default=3, ge=0, le=20, description="Retries before dead-lettering.")
    flush_interval_s: float = Field(
        default=0.2, gt=0, le=60, description="Longest time an event waits before it is stored."
    )
    batch_size: int = Field(default=5_000, ge=1, le=1_000_000, description="Events per stored batch.")
    fsync: bool = Field(default=True, description="fsync every batch (durable across power loss).")
    bus: Literal["memory", "nats", "rabbitmq"] = Field(
        default="memory",
        description="The event bus: 'memory' (in-process), 'nats' (NATS JetStream) or 'rabbitmq'; "
        "broker buses carry events between processes and machines (pip install 'lumina-lab[brokers]').",
    )
    bus_url: str | None = Field(
        default=None,
        description="Broker URL, e.g. nats://127.0.0.1:4222 or amqp://guest:guest@127.0.0.1:5672/ "
        "(unset: that local default).",
    )
    bus_namespace: str = Field(
        default="lumina",
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="Separates labs sharing a broker: the JetStream stream (upper-cased) or RabbitMQ exchange.",
    )


class RoutingSettings(BaseModel):
    """Settings of the provider router."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["cheapest", "fastest", "weighted", "least_busy", "round_robin", "cascade", "bandit"] = Field(
        default="cheapest", description="How the router ranks providers."
    )
    timeout_s: float | None = Field(default=60.0, gt=0, description="Per-call timeout.")
    retries: int = Field(default=2, ge=1, le=10, description="Attempts per provider before falling back.")
    hedge_after_s: float | None = Field(default=None, gt=0, description="Hedge slow calls after this long.")


class MemorySettings(BaseModel):
    """Settings of the vector memory (``lab.memory``)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["duckdb", "memory", "milvus", "weaviate"] = Field(
        default="duckdb", description="Vector store: duckdb (one file under home), memory, milvus or weaviate."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend options, e.g. {uri = 'http://milvus:19530'} or {url = 'http://weaviate:8080'}.",
    )
    embedder: str = Field(default="hashing", description="Embedder spec: hashing, hashing:<dim>, minilm.")
    cache_size: int = Field(default=1024, ge=0, description="Search results kept in the LRU query cache.")
    shards: int = Field(default=1, ge=1, le=64, description="Hash-partitioned shards (duckdb: one file each).")
    encrypt: bool = Field(
        default=False,
        description="Seal item texts at rest (AES-GCM envelope encryption, duckdb backend) with the key ring: "
        "$LUMINA_MASTER_KEY, else home/keys/keyring.json (created on first use).",
    )
    sealed_metadata: list[str] = Field(
        default_factory=list, description="Metadata fields sealed as well as the text (with encrypt)."
    )


class ObservabilitySettings(BaseModel):
    """Settings of tracing, metrics and alerts (``lab.observability``; see :mod:`lumina_lab.observability`)."""

    model_config = ConfigDict(extra="forbid")

    tracing: bool | None = Field(
        default=None,
        description="Spans of notebook runs, span queries over the event log, and export when an exporter is set. "
        "Unset: on in dev and prod, off in test.",
    )
    metrics: bool | None = Field(default=None, description="Fold events into Prometheus metrics. Unset: as tracing.")
    exporter: Literal["none", "console", "otlp_http", "otlp_grpc"] = Field(
        default="none", description="Where finished spans are also sent (OTLP collector, Jaeger, Tempo, Phoenix)."
    )
    endpoint: str | None = Field(
        default=None, description="OTLP endpoint: http://host:4318 (otlp_http) or host:4317 (otlp_grpc)."
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Headers sent to the OTLP endpoint.")
    service_name: str = Field(default="lumina-lab", description="OpenTelemetry service.name.")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve Prometheus /metrics on this port when a Lab opens (0: any)."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address of the metrics endpoint.")
    alerts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Alert rules ([[observability.alerts]]: name, expr = 'error_rate > 0.2 for 10s', severity).",
    )


def _default_providers() -> list[dict[str, Any]]:
    """Simulated stand-ins for four hosted models (list prices from the shipped snapshot)."""
    return [
        {
            "kind": "simulated",
            "id": "sim-gpt-4.1-mini",
            "model": "gpt-4.1-mini",
            "ttft_s": 0.02,
            "tokens_per_s": 2000,
            "capabilities": {"chat": 0.8, "code": 0.7, "tools": 0.8, "json_mode": 1, "context_window": 1_000_000},
        },
        {
            "kind": "simulated",
            "id": "sim-gemini-2.5-flash",
            "model": "gemini-2.5-flash",
            "ttft_s": 0.015,
            "tokens_per_s": 3000,
            "capabilities": {
                "chat": 0.8,
                "code": 0.7,
                "vision": 0.8,
                "json_mode": 1,
                "reasoning": 0.6,
                "context_window": 1_000_000,
            },
        },
        {
            "kind": "simulated",
            "id": "sim-gpt-4.1",
            "model": "gpt-4.1",
            "ttft_s": 0.04,
            "tokens_per_s": 1200,
            "capabilities": {
                "chat": 1,
                "code": 0.9,
                "tools": 1,
                "json_mode": 1,
                "vision": 0.9,
                "reasoning": 0.7,
                "context_window": 1_000_000,
            },
        },
        {
            "kind": "simulated",
            "id": "sim-claude-3-7-sonnet",
            "model": "claude-3-7-sonnet-20250219",
            "ttft_s": 0.05,
            "tokens_per_s": 1000,
            "capabilities": {
                "chat": 1,
                "code": 1,
                "tools": 1,
                "vision": 0.9,
                "reasoning": 0.9,
                "context_window": 200_000,
            },
        },
    ]


class Settings(BaseSettings):
    """All Lumina Lab settings.  Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="LUMINA_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(
        default_factory=lambda: Path("~/.lumina"),
        description="Directory for every embedded store (events, vectors, spans).",
    )
    profile: Profile = Field(default="dev", description="dev, test or prod: changes defaults.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    source: str | None = Field(default=None, description="Name stamped on events from this process (default host:pid).")
    events: EventSettings = Field(default_factory=EventSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    providers: list[dict[str, Any]] = Field(
        default_factory=_default_providers,
        description="Providers to register ([[providers]] tables: kind = 'simulated' | 'openai', model, ...).",
    )
    budgets: list[dict[str, Any]] = Field(
        default_factory=list, description="Budgets ([[budgets]]: limit_usd, scope, key, period, soft_ratio)."
    )

    @model_validator(mode="after")
    def _apply_profile(self) -> Settings:
        self.home = Path(os.path.expandvars(str(self.home))).expanduser()
        for dotted, value in PROFILES[self.profile].items():
            obj: Any = self
            *parents, leaf = dotted.split(".")
            for part in parents:
                obj = getattr(obj, part)
            if getattr(obj, leaf) is None:
                setattr(obj, leaf, value)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @property
    def events_dir(self) -> Path:
        """Directory of the file event store."""
        return self.home / "events"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><code>{k}</code></td><td>{v}</td></tr>" for k, v in _flatten(self.model_dump()))
        return f"<table><caption>Lumina settings</caption>{rows}</table>"


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.extend(_flatten(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def config_file() -> Path | None:
    """The ``lumina.toml`` that applies, or ``None``.

    ``$LUMINA_CONFIG`` if set (it must exist), else ``./lumina.toml``, else
    ``$LUMINA_HOME/lumina.toml`` (``~/.lumina/lumina.toml``).
    """
    explicit = os.environ.get("LUMINA_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"LUMINA_CONFIG points to {str(path)!r}, which is not a file",
                key="LUMINA_CONFIG",
                value=explicit,
                hint="point LUMINA_CONFIG at an existing lumina.toml, or unset it",
            )
        return path
    candidates = [Path.cwd() / "lumina.toml"]
    home = os.environ.get("LUMINA_HOME")
    candidates.append(Path(home).expanduser() / "lumina.toml" if home else Path("~/.lumina/lumina.toml").expanduser())
    return next((p for p in candidates if p.is_file()), None)


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``lumina.toml``; keys may sit at top level or under ``[lumina]``."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.path = config_file()
        self.data: dict[str, Any] = {}
        if self.path is not None:
            try:
                self.data = tomllib.loads(self.path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(
                    f"{self.path} is not valid TOML: {exc}",
                    key=str(self.path),
                    hint="fix the syntax at the line and column shown",
                ) from None
            if isinstance(self.data.get("lumina"), dict):
                self.data = self.data["lumina"]

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def _env_name(loc: tuple[Any, ...]) -> str:
    return "LUMINA_" + "__".join(str(p).upper() for p in loc)


def _origin(loc: tuple[Any, ...], path: Path | None, overrides: dict[str, Any]) -> str:
    if loc and loc[0] in overrides:
        return "argument"
    upper = {k.upper() for k in os.environ}
    for n in range(len(loc), 0, -1):  # LUMINA_EVENTS__STORE, then LUMINA_EVENTS (JSON)
        env = _env_name(loc[:n])
        if env in upper:
            return f"environment variable {env}"
    if path is not None:
        return f"{path}"
    return "default"


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings` from arguments, environment, ``lumina.toml`` and profile.

    Raises:
        ConfigError: naming the key, its value, where it came from and what is allowed.

    >>> load_settings(profile="test").events.store
    'memory'
    """
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not isinstance(p, int))
        key = ".".join(str(p) for p in loc) or "(settings)"
        value = err.get("input")
        allowed = _allowed(err, loc)
        try:
            path = config_file()
        except ConfigError:
            path = None
        origin = _origin(loc, path, overrides)
        if err["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            raise ConfigError(
                f"unknown setting {key!r} (from {origin})",
                key=key,
                value=value,
                allowed=", ".join(known),
                hint=f"remove it, or use one of: {', '.join(known)}",
            ) from None
        raise ConfigError(
            f"invalid setting {key} = {value!r} (from {origin}): {err['msg']}",
            key=key,
            value=value,
            allowed=allowed,
            hint=f"set {key} to {allowed}" if allowed else f"correct {key}",
        ) from None


def _field_for(loc: tuple[Any, ...]) -> Any:
    model: Any = Settings
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        field = fields[part]
        model = field.annotation
    return field


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Settings
    for part in loc:
        model = model.model_fields[part].annotation
    return sorted(getattr(model, "model_fields", {}))


def _allowed(err: dict[str, Any], loc: tuple[Any, ...]) -> str | None:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"one of {ctx['expected']}"
    bounds = [f"{word} {ctx[k]}" for k, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if k in ctx]
    if bounds:
        return "a number " + " and ".join(bounds)
    field = _field_for(loc)
    if field is not None and field.annotation is not None:
        return f"a value of type {getattr(field.annotation, '__name__', field.annotation)}"
    return None
