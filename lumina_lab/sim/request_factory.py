"""The routing lab's request maker: ``i -> ChatRequest`` over plain-Python snapshots of a workload's columns.

A class rather than a closure so that a compiled build (``mypyc.ini``) makes it a native call; it is one
call per replayed request.  Made by :meth:`~lumina_lab.sim.workloads.Workload.request_factory`.
"""

from __future__ import annotations

from typing import Any

from ..providers.messages import ChatRequest, Message

__all__ = ["RequestFactory"]


class RequestFactory:
    """``factory(i)`` is request ``i`` of a workload, equal to ``Workload.request(i)``.

    Args:
        input_tokens, max_tokens, tenant, task: one value per request (``task`` indexes ``needs``
            and ``names``).
        needs, names: per task, its capability needs and its name.
        prefix: request ids are ``prefix + str(i)``.
    """

    def __init__(
        self,
        input_tokens: list[int],
        max_tokens: list[int],
        tenant: list[str],
        task: list[int],
        needs: list[Any],
        names: list[str],
        prefix: str,
    ) -> None:
        self.input_tokens = input_tokens
        self.max_tokens = max_tokens
        self.tenant = tenant
        self.task = task
        self.needs = needs
        self.names = names
        self.prefix = prefix
        self.prompt = [Message("user", "(simulated prompt)")]  # one placeholder, shared by every request

    def __call__(self, i: int) -> ChatRequest:
        # positional, in ChatRequest's order (messages, needs, min_context, language, max_tokens, temperature,
        # principal, project, task, model, timeout_s, metadata, id, input_tokens): keywords cost more
        t = self.tenant[i]
        k = self.task[i]
        return ChatRequest(
            self.prompt,
            self.needs[k],
            0,
            None,
            self.max_tokens[i],
            None,
            t,
            t,
            self.names[k],
            None,
            None,
            {},
            self.prefix + str(i),
            self.input_tokens[i],
        )
