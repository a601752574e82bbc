"""Decisions per second: the policy simulator vs plain ``cedarpy.is_authorized_batch``, same requests.

A realistic document-management policy set: roles, departments (entities),
clearance vs classification, ownership, team membership through the entity
hierarchy, an admins group, a shared folder, context conditions (MFA, office
hours, network) and three forbid rules; 2,000 users in 40 teams, 5,000
documents in 20 folders, all checked against a Cedar schema.  One million
requests, each with its own context dict, drawn like real traffic (mostly
users reading their department's documents, some their own, some anything).

Both evaluate the same list of request dicts with the same parsed policies,
entities and schema (cedarpy in slices of 50,000, only its calls timed); the
script checks that every decision is identical and
prints one JSON line: ``decisions_per_s`` (simulator), ``cedarpy_batch_decisions_per_s``
and ``identical`` (target for the simulator: >= 200,000/s); the same rates per CPU second of this
process are given too (``*_per_cpu_s``), which stay comparable on a machine shared with other work.

Usage: python benchmarks/policy_simulation.py [--requests 1000000] [--seed 7] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

SCHEMA = """
entity Group, Team, Folder, Department;
entity User in [Team, Group] = {
  role: String,
  department: Department,
  clearance: Long,
};
entity Document in [Folder] = {
  owner: User,
  department: Department,
  classification: Long,
  team: Team,
};
action read, comment, write, delete, share, export appliesTo {
  principal: [User],
  resource: [Document],
  context: { mfa: Bool, hour: Long, network: String },
};
"""

POLICIES = """
@id("admins-all")
permit (principal in Group::"admins", action, resource);

@id("department-read")
permit (principal, action in [Action::"read", Action::"comment"], resource)
when { principal.department == resource.department && principal.clearance >= resource.classification };

@id("public-read")
permit (principal, action == Action::"read", resource) when { resource.classification == 0 };

@id("team-read")
permit (principal, action in [Action::"read", Action::"comment"], resource) when { principal in resource.team };

@id("shared-folder")
permit (principal, action == Action::"read", resource in Folder::"shared");

@id("editors-write")
permit (principal, action == Action::"write", resource)
when {
  ["editor", "manager"].contains(principal.role) &&
  principal.department == resource.department &&
  principal.clearance >= resource.classification &&
  context.mfa
};

@id("owner-manage")
permit (principal, action in [Action::"write", Action::"delete", Action::"share"], resource)
when { resource.owner == principal };

@id("manager-export")
permit (principal, action == Action::"export", resource)
when { principal.role == "manager" && principal.department == resource.department && context.network == "corp" };

@id("secret-needs-mfa")
forbid (principal, action, resource) when { resource.classification >= 3 && !context.mfa };

@id("contractor-office-hours")
forbid (principal, action, resource)
when { principal.role == "contractor" && (context.hour < 8 || context.hour >= 18) };

@id("no-export-from-public-networks")
forbid (principal, action == Action::"export", resource) when { context.network == "public" };
"""

ROLES = [("viewer", 40), ("editor", 30), ("manager", 10), ("contractor", 15), ("admin", 5)]
ACTIONS = [("read", 50), ("comment", 10), ("write", 20), ("delete", 5), ("share", 5), ("export", 10)]
NETWORKS = [("corp", 60), ("vpn", 30), ("public", 10)]


def _pick(rng: random.Random, weighted: list[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def entities(rng: random.Random, users: int = 2000, documents: int = 5000) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cedar JSON entities and an index used to draw requests."""
    depts = [f"d{i}" for i in range(8)]
    out: list[dict[str, Any]] = []
    out += [{"uid": {"type": "Department", "id": d}, "attrs": {}, "parents": []} for d in depts]
    out += [{"uid": {"type": "Team", "id": f"t{i}"}, "attrs": {}, "parents": []} for i in range(40)]
    out += [{"uid": {"type": "Folder", "id": f}, "attrs": {}, "parents": []} for f in ["shared", *[f"f{i}" for i in range(19)]]]
    out.append({"uid": {"type": "Group", "id": "admins"}, "attrs": {}, "parents": []})
    user_dept: dict[str, str] = {}
    for i in range(users):
        role = _pick(rng, ROLES)
        dept = rng.choice(depts)
        user_dept[f"u{i}"] = dept
        parents = [{"type": "Team", "id": f"t{rng.randrange(40)}"}]
        if role == "admin":
            parents.append({"type": "Group", "id": "admins"})
        out.append({
            "uid": {"type": "User", "id": f"u{i}"},
            "attrs": {"role": role, "department": {"__entity": {"type": "Department", "id": dept}}, "clearance": rng.randrange(4)},
            "parents": parents,
        })
    by_dept: dict[str, list[str]] = {d: [] for d in depts}
    by_owner: dict[str, list[str]] = {}
    for i in range(documents):
        owner = f"u{rng.randrange(users)}"
        dept = user_dept[owner] if rng.random() < 0.8 else rng.choice(depts)
        folder = "shared" if rng.random() < 0.05 else f"f{rng.randrange(19)}"
        doc = f"doc{i}"
        by_dept[dept].append(doc)
        by_owner.setdefault(owner, []).append(doc)
        out.append({
            "uid": {"type": "Document", "id": doc},
            "attrs": {
                "owner": {"__entity": {"type": "User", "id": owner}},
                "department": {"__entity": {"type": "Department", "id": dept}},
                "classification": rng.choices(range(4), [30, 40, 20, 10])[0],
                "team": {"__entity": {"type": "Team", "id": f"t{rng.randrange(40)}"}},
            },
            "parents": [{"type": "Folder", "id": folder}],
        })
    return out, {"users": users, "documents": documents, "user_dept": user_dept, "by_dept": by_dept, "by_owner": by_owner}


def requests(rng: random.Random, index: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """``n`` request dicts in the form ``cedarpy`` takes (each with its own context dict)."""
    users, docs = index["users"], index["documents"]
    actions = rng.choices([f'Action::"{a}"' for a, _ in ACTIONS], [w for _, w in ACTIONS], k=n)
    networks = rng.choices([v for v, _ in NETWORKS], [w for _, w in NETWORKS], k=n)
    hours = rng.choices(range(24), [1] * 7 + [6] * 11 + [2] * 6, k=n)
    out = []
    for i in range(n):
        u = f"u{rng.randrange(users)}"
        x = rng.random()
        if x < 0.6:
            doc = rng.choice(index["by_dept"][index["user_dept"][u]])
        elif x < 0.7 and u in index["by_owner"]:
            doc = rng.choice(index["by_owner"][u])
        else:
            doc = f"doc{rng.randrange(docs)}"
        out.append({
            "principal": f'User::"{u}"',
            "action": actions[i],
            "resource": f'Document::"{doc}"',
            "context": {"mfa": rng.random() < 0.8, "hour": hours[i], "network": networks[i]},
        })
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=None, help="processes for the simulator (default: auto)")
    ap.add_argument("--baseline-requests", type=int, default=None, help="requests for plain cedarpy (default: all)")
    args = ap.parse_args(argv)

    import cedarpy
    import pandas  # noqa: F401  (imported before timing, like cedarpy: a one-time cost, not a per-decision one)

    from lumina_lab.policy import EntityStore, Policies, Schema, Simulator

    rng = random.Random(args.seed)
    ents, index = entities(rng)
    reqs = requests(rng, index, args.requests)

    schema = Schema(SCHEMA)
    policies = Policies(POLICIES).check(schema)
    store = EntityStore(ents)
    sim = Simulator(policies, store, schema, workers=args.workers, progress=False)
    sim.evaluator  # parse policies, entities and schema before timing (cedarpy gets parsed handles too)  # noqa: B018

    t0, c0 = time.perf_counter(), time.process_time()
    matrix = sim.run(reqs)
    sim_s, sim_cpu = time.perf_counter() - t0, time.process_time() - c0
    ours = matrix.evaluation.decision

    m = args.baseline_requests or len(reqs)
    ps, es, sh = policies.handle, store.handle(schema), schema.handle
    code = {"Allow": 1, "Deny": 0, "NoDecision": 2}
    base_s = base_cpu = 0.0
    mismatches = 0
    for start in range(0, m, 50_000):  # in slices, so a million results need not be held at once
        chunk = reqs[start : min(m, start + 50_000)]
        t0, c0 = time.perf_counter(), time.process_time()
        base = cedarpy.is_authorized_batch(chunk, ps, es, sh)
        base_s += time.perf_counter() - t0
        base_cpu += time.process_time() - c0
        mismatches += sum(1 for i, r in enumerate(base, start) if code[r.decision.value] != ours[i])
    allowed = int((ours == 1).sum())
    result = {
        "benchmark": "policy_simulation",
        "requests": len(reqs),
        "policies": len(policies),
        "entities": len(ents),
        "decisions_per_s": round(len(reqs) / sim_s),
        "cedarpy_batch_decisions_per_s": round(m / base_s),
        "speedup": round((len(reqs) / sim_s) / (m / base_s), 1),
        "identical": mismatches == 0,
        "compared": m,
        "mismatches": mismatches,
        "allowed_share": round(allowed / len(reqs), 4),
        "cedar_evaluations": matrix.evaluation.stats["evaluations"],
        "simulator_s": round(sim_s, 3),
        "cedarpy_s": round(base_s, 3),
        "decisions_per_cpu_s": round(len(reqs) / sim_cpu),
        "cedarpy_batch_decisions_per_cpu_s": round(m / base_cpu),
        "target_decisions_per_s": 200_000,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    out = main()
    sys.exit(0 if out["identical"] else 1)
