"""Notebook templates the sidebar, the launcher and the palette create notebooks from.

Each template is a short, runnable notebook (prose, then code) on the public ``lumina_lab`` API; the tests
execute every one of them in a real kernel.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["filename", "listing", "names", "notebook"]

_T: dict[str, dict[str, Any]] = {
    "quickstart": {
        "title": "Lumina quickstart",
        "description": "Publish events, route a request, query the shared event store.",
        "cells": [
            ("md", "# Lumina quickstart\n\nEverything here is published on the bus and stored in the shared event "
                   "store under `LUMINA_HOME`: the **Lumina** sidebar shows it live, whichever kernel wrote it."),
            ("code", "from lumina_lab import Lab\nfrom lumina_lab.events import Event, event\n\n\n"
                     "@event(\"notebook.note.added\")\nclass NoteAdded(Event):\n    text: str\n\n\nlab = Lab()\nlab"),
            ("code", "lab.publish(NoteAdded(text=\"hello from a notebook\"))\n"
                     "answer = lab.ask(\"Summarise this thread\", max_tokens=60, project=\"quickstart\")\n"
                     "answer.provider, round(answer.cost_usd, 6)"),
            ("code", "lab.query(type=\"*\", since=\"15m\").tail(5)[[\"ts\", \"type\", \"source\"]]"),
            ("code", "lab.route(\"Refactor this function\", needs={\"code\": 0.9})"),
        ],
    },
    "routing_lab": {
        "title": "Lumina routing lab",
        "description": "Replay a workload through routing strategies in simulated time, with an outage.",
        "cells": [
            ("md", "# Routing lab\n\nReplay a workload through strategies in simulated time, with the live "
                   "router's own decision steps. Raise `n` for a fuller picture."),
            ("code", "n = 5_000  # requests replayed per strategy"),
            ("code", "from lumina_lab.providers import Budget, SimulatedProvider\n"
                     "from lumina_lab.sim.engine import Outage, RoutingLab\nfrom lumina_lab.sim.workloads import poisson\n\n"
                     "lab = RoutingLab(\n"
                     "    [SimulatedProvider(\"gpt-4.1-mini\", ttft_s=0.4, tokens_per_s=90, error_rate=0.02),\n"
                     "     SimulatedProvider(\"gemini-2.5-flash\", ttft_s=0.3, tokens_per_s=150)],\n"
                     "    breaker={\"min_calls\": 5, \"open_s\": 10},\n"
                     "    budgets=[Budget(20, scope=\"project\", period=\"day\")],\n)\n"
                     "workload = poisson(50, n=n, tenants={\"search\": 2, \"agents\": 1})"),
            ("code", "lab.compare([\"cheapest\", \"least_busy\", \"round_robin\"], workload,\n"
                     "            outages=[Outage(\"gemini-2.5-flash\", 20, 40)])"),
        ],
    },
    "memory_explorer": {
        "title": "Lumina memory explorer",
        "description": "Add texts to a collection and search it by vector, keyword and hybrid search.",
        "cells": [
            ("md", "# Memory explorer\n\nCollections live in the configured vector store (a DuckDB file under "
                   "`LUMINA_HOME` by default) and are listed in the sidebar's status; every write and search is "
                   "a `memory.*` event."),
            ("code", "from lumina_lab import Lab\nfrom lumina_lab.memory import F\n\nlab = Lab()\n"
                     "docs = lab.memory.collection(\"docs\")\n"
                     "docs.add([\"Cedar decides who may call a provider.\", \"DuckDB keeps every vector in one file.\",\n"
                     "          \"Breakers open when a provider keeps failing.\"],\n"
                     "         metadata=[{\"area\": \"policy\"}, {\"area\": \"memory\"}, {\"area\": \"routing\"}],\n"
                     "         ids=[\"cedar\", \"duckdb\", \"breaker\"])\nlab.memory.collections()"),
            ("code", "docs.search(\"which database stores vectors?\", k=2)"),
            ("code", "docs.search(\"cedar policy\", mode=\"hybrid\", k=2, where=F.area == \"policy\")"),
        ],
    },
    "policy_simulator": {
        "title": "Lumina policy simulator",
        "description": "Publish a Cedar policy version and run a grid of requests through it.",
        "cells": [
            ("md", "# Policy simulator\n\nPolicy versions are kept in `LUMINA_HOME/policies` (the sidebar lists "
                   "them, live one first); the simulator decides a grid of requests without enforcing anything."),
            ("code", "from lumina_lab import Lab\nfrom lumina_lab.policy import DictEntities, RequestSet\n\nlab = Lab()\n"
                     "lab.policy.entities.add(DictEntities(\"User\", {\"ann\": {\"team\": \"search\"}, "
                     "\"bob\": {\"team\": \"ads\"}}))\n"
                     "lab.policy.entities.add(DictEntities(\"Provider\", {\"gpt-4.1\": {\"tier\": \"premium\"}, "
                     "\"gpt-4.1-mini\": {\"tier\": \"standard\"}}))\n"
                     "version = lab.policy.publish(\n"
                     "    '@id(\"standard-for-all\") permit(principal, action == Action::\"call\", resource) '\n"
                     "    'when { resource.tier == \"standard\" };\\n'\n"
                     "    '@id(\"premium-for-search\") permit(principal, action == Action::\"call\", resource) '\n"
                     "    'when { principal.team == \"search\" };',\n"
                     "    message=\"providers by team\",\n)\nversion"),
            ("code", "requests = RequestSet.grid(['User::\"ann\"', 'User::\"bob\"'], [\"call\"],\n"
                     "                          ['Provider::\"gpt-4.1\"', 'Provider::\"gpt-4.1-mini\"'])\n"
                     "lab.policy.simulate(requests)"),
        ],
    },
}


def names() -> list[str]:
    return list(_T)


def listing() -> list[dict[str, str]]:
    """``[{name, title, description}]`` for the frontend."""
    return [{"name": k, "title": v["title"], "description": v["description"]} for k, v in _T.items()]


def filename(name: str) -> str:
    return f"{_T[name]['title']}.ipynb"


def notebook(name: str) -> dict[str, Any]:
    """The template as an nbformat-4 notebook dict (raises ``KeyError`` for an unknown name)."""
    spec = _T[name]
    cells = []
    for i, (kind, source) in enumerate(spec["cells"]):
        cell_id = f"{name.replace('_', '-')}-{i}"
        if kind == "md":
            cells.append({"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source})
        else:
            cells.append({"cell_type": "code", "id": cell_id, "metadata": {}, "source": source, "outputs": [],
                          "execution_count": None})
    return copy.deepcopy(
        {
            "cells": cells,
            "metadata": {
                "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
                "lumina": {"template": name},
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )
