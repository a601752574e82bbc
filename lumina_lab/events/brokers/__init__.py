"""Broker-backed event buses: the same :class:`~lumina_lab.events.EventBus` across processes and machines.

``events.bus = "nats"`` (JetStream) or ``"rabbitmq"`` (a topic exchange) with ``events.bus_url`` makes
:class:`~lumina_lab.Lab` publish through a broker; ``"memory"`` (the default) keeps the in-process bus.

>>> from lumina_lab.events.brokers import open_bus          # doctest: +SKIP
>>> bus = open_bus("nats", "nats://127.0.0.1:4222")          # doctest: +SKIP

Nothing here imports a client library until a broker bus is built (``import lumina_lab`` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import ConfigError

if TYPE_CHECKING:
    from ..bus import InProcessBus
    from .base import BrokerBus
    from .nats import NatsBus
    from .rabbitmq import RabbitMQBus

__all__ = ["BUS_KINDS", "DEFAULT_URLS", "BrokerBus", "NatsBus", "RabbitMQBus", "open_bus"]

#: what ``events.bus`` accepts
BUS_KINDS = ("memory", "nats", "rabbitmq")
#: the URL used when ``events.bus_url`` is unset
DEFAULT_URLS = {"nats": "nats://127.0.0.1:4222", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/"}

_LAZY = {"BrokerBus": "base", "NatsBus": "nats", "RabbitMQBus": "rabbitmq"}


def open_bus(kind: str = "memory", url: str | None = None, **options: Any) -> InProcessBus:
    """Build the bus named by ``kind`` (``memory``, ``nats`` or ``rabbitmq``).

    Broker buses connect lazily; call ``bus.connect_sync()`` (or ``await bus.connect()``) to fail fast.
    ``options`` go to the bus (``queue_size``, ``overflow``, ``retries``, ``namespace``, ...).

    Raises:
        ConfigError: unknown ``kind``, or its client package is not installed.
    """
    if kind == "memory":
        from ..bus import InProcessBus

        for key in ("namespace", "durable_names", "registry", "connect_timeout_s"):
            options.pop(key, None)
        return InProcessBus(**options)
    if kind == "nats":
        from .nats import NatsBus

        return NatsBus(url, **options)
    if kind == "rabbitmq":
        from .rabbitmq import RabbitMQBus

        return RabbitMQBus(url, **options)
    raise ConfigError(
        f"events.bus = {kind!r} is not a bus",
        key="events.bus",
        value=kind,
        allowed=", ".join(BUS_KINDS),
        hint="set events.bus (LUMINA_EVENTS__BUS) to 'memory', 'nats' or 'rabbitmq'",
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lumina_lab.events.brokers' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
