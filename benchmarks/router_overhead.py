"""CPU time per routed request: our router vs LiteLLM's ``Router`` with ``mock_response``.

Both route over the same number of deployments that answer instantly (our
zero-latency :class:`SimulatedProvider`; LiteLLM's ``mock_response``), so the
figure is what the routing layer itself costs.  CPU time (``time.process_time``)
is used because the machine is shared.  Prints one JSON line:

* ``lumina_us_per_request`` / ``litellm_us_per_request`` — sequential, whole call
  (request object, routing, provider call, response, accounting);
* ``*_concurrent_us_per_request`` — the same with ``asyncio.gather`` batches;
* ``*_direct_us`` — the provider alone without a router (our simulated provider;
  ``litellm.acompletion`` with ``mock_response``), and ``*_router_added_us`` the difference;
* ``ratio`` = litellm / lumina (sequential, whole call).

Usage: python benchmarks/router_overhead.py [--requests 20000] [--deployments 4]
(LiteLLM comes with ``pip install -e '.[bench]'``; without it its figures are null.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import warnings

from lumina_lab.providers import ChatRequest, ProviderRegistry, Router, SimulatedProvider

MESSAGES = [{"role": "user", "content": "Summarise the routing overhead benchmark in one sentence."}]
MODELS = ["gpt-4.1-mini", "gpt-4.1", "gpt-4o-mini", "gemini-2.5-flash", "claude-3-haiku-20240307", "gpt-4o"]


def cpu_us_per_call(make_coro, n: int, *, concurrent: bool, batch: int = 200) -> float:
    async def run() -> float:
        for _ in range(min(200, n)):  # warm up
            await make_coro()
        t0 = time.process_time()
        if concurrent:
            for i in range(0, n, batch):
                await asyncio.gather(*(make_coro() for _ in range(min(batch, n - i))))
        else:
            for _ in range(n):
                await make_coro()
        return (time.process_time() - t0) / n * 1e6

    return asyncio.run(run())


def lumina(n: int, deployments: int) -> dict[str, float]:
    providers = [SimulatedProvider(MODELS[i % len(MODELS)], id=f"d{i}", output_tokens=16) for i in range(deployments)]
    router = Router(ProviderRegistry(providers), "least_busy")
    text = MESSAGES[0]["content"]

    def routed():
        return router.ainvoke(ChatRequest(text, max_tokens=16))

    direct_provider = providers[0]

    def direct():
        return direct_provider.ainvoke(ChatRequest(text, max_tokens=16))

    seq = cpu_us_per_call(routed, n, concurrent=False)
    conc = cpu_us_per_call(routed, n, concurrent=True)
    base = cpu_us_per_call(direct, n, concurrent=False)
    return {"seq": seq, "conc": conc, "direct": base}


def litellm_figures(n: int, deployments: int) -> dict[str, float] | None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
        from litellm import Router as LiteRouter
    except ImportError:
        return None
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    logging.getLogger("LiteLLM Router").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    model_list = [
        {
            "model_name": "bench",
            "litellm_params": {
                "model": f"openai/{MODELS[i % len(MODELS)]}",
                "api_key": "sk-bench",
                "mock_response": "The router answered.",
            },
        }
        for i in range(deployments)
    ]
    router = LiteRouter(model_list=model_list, routing_strategy="least-busy")

    def routed():
        return router.acompletion(model="bench", messages=MESSAGES, mock_response="The router answered.")

    def direct():
        return litellm.acompletion(
            model="openai/gpt-4.1-mini", messages=MESSAGES, api_key="sk-bench", mock_response="The router answered."
        )

    seq = cpu_us_per_call(routed, n, concurrent=False)
    conc = cpu_us_per_call(routed, n, concurrent=True)
    base = cpu_us_per_call(direct, n, concurrent=False)
    return {"seq": seq, "conc": conc, "direct": base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--litellm-requests", type=int, default=2_000, help="LiteLLM is ~100x slower: fewer calls")
    ap.add_argument("--deployments", type=int, default=4)
    args = ap.parse_args()
    ours = lumina(args.requests, args.deployments)
    theirs = litellm_figures(args.litellm_requests, args.deployments)
    out = {
        "benchmark": "router_overhead",
        "deployments": args.deployments,
        "requests": args.requests,
        "lumina_us_per_request": round(ours["seq"], 2),
        "lumina_concurrent_us_per_request": round(ours["conc"], 2),
        "lumina_direct_us": round(ours["direct"], 2),
        "lumina_router_added_us": round(ours["seq"] - ours["direct"], 2),
        "litellm_requests": args.litellm_requests if theirs else 0,
        "litellm_us_per_request": round(theirs["seq"], 1) if theirs else None,
        "litellm_concurrent_us_per_request": round(theirs["conc"], 1) if theirs else None,
        "litellm_direct_us": round(theirs["direct"], 1) if theirs else None,
        "litellm_router_added_us": round(theirs["seq"] - theirs["direct"], 1) if theirs else None,
        "ratio": round(theirs["seq"] / ours["seq"], 1) if theirs else None,
        "ratio_router_added": (
            round((theirs["seq"] - theirs["direct"]) / max(ours["seq"] - ours["direct"], 1e-9), 1) if theirs else None
        ),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
