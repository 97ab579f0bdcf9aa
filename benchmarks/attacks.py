"""Damage of each attack, with and without each defence, on common random numbers.

Every row is :func:`runner.attacks.attack_damage`: the clean and the attacked
market played on one seed, the damage ``attacked - clean`` of revenue,
efficiency and the honest traders' utility (per episode) with its paired
standard error. Under a defence both markets carry it; ``clean revenue`` shows
what the defence itself costs or earns.

    python benchmarks/attacks.py [--episodes 4000] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from attn_env.config import ExperimentConfig, from_dict
from runner.attacks import attack_damage


def _config(env: dict[str, Any], agents: dict | None = None) -> ExperimentConfig:
    return from_dict(ExperimentConfig, {"seed": 0, "env": env, "agents": agents or {}})


SHILL_MARKET = _config(
    {"mechanism": "second_price", "n_buyers": 3, "rounds": 5, "redraw": "episode"}
)
GSP_MARKET = _config(
    {
        "mechanism": "gsp",
        "n_buyers": 4,
        "n_slots": 2,
        "rounds": 5,
        "redraw": "episode",
    }
)
RING_MARKET = _config({"mechanism": "second_price", "n_buyers": 4})
FAKE_MARKET = _config({"mechanism": "gsp", "n_buyers": 4, "n_slots": 2})
WASH_MARKET = _config({"mechanism": "k_double", "n_buyers": 5})
CDA_MARKET = _config(
    {"mechanism": "cda", "n_buyers": 5, "rounds": 5, "redraw": "episode"},
    {"buyer": {"kind": "zip"}, "seller": {"kind": "zip"}},
)

CASES: list[tuple[str, ExperimentConfig, Any, list[Any]]] = [
    (
        "shill, second price n=3+1, values held 5 rounds",
        SHILL_MARKET,
        "shill",
        ["none", "reserve", "random_reserve"],
    ),
    (
        "shill (sees published feedback only), second price n=3+1",
        SHILL_MARKET,
        {"name": "shill", "sees": "published"},
        [
            {"name": "feedback", "feedback": "none"},
            {"name": "feedback", "feedback": "winning_bid"},
            {"name": "feedback", "feedback": "min_bid_to_win"},
        ],
    ),
    (
        "shill under the 2nd-highest bid, GSP n=4+1, K=2",
        GSP_MARKET,
        {"name": "shill", "rank": 2},
        ["none", "reserve", "random_reserve"],
    ),
    (
        "ring of 2 (leader truthful, member abstains), second price n=4",
        RING_MARKET,
        "ring",
        ["none", "reserve", "random_reserve"],
    ),
    (
        "fake traffic on ad 0 (r x2), GSP n=4, K=2",
        FAKE_MARKET,
        {"name": "fake_traffic", "ads": [0], "boost": 2.0},
        ["none", "reserve"],
    ),
    (
        "fake traffic on alpha (x1.3), GSP n=4, K=2",
        FAKE_MARKET,
        {"name": "fake_traffic", "target": "alpha", "boost": 1.3},
        ["none"],
    ),
    (
        "wash pair at 0.9, k-double n=5",
        WASH_MARKET,
        "wash",
        ["none", "trade_reduction", "reserve"],
    ),
    (
        "wash pair at 0.9, CDA n=5 ZIP traders, 5 rounds",
        CDA_MARKET,
        "wash",
        ["none", "reserve"],
    ),
]


def rows(episodes: int) -> list[dict[str, Any]]:
    """One row per (case, defence)."""
    out = []
    for label, config, attack, defences in CASES:
        for defence in defences:
            t0 = time.perf_counter()
            r = attack_damage(config, attack, episodes=episodes, defence=defence)
            r["case"] = label
            r["seconds"] = round(time.perf_counter() - t0, 1)
            out.append(r)
    return out


def _pm(d: dict[str, float]) -> str:
    return f"{d['diff']:+.4f} ± {d['se']:.4f}" if math.isfinite(d["se"]) else "n/a"


def _defence(d: Any) -> str:
    if isinstance(d, dict):
        rest = ", ".join(f"{k}={v}" for k, v in d.items() if k != "name")
        return f"{d['name']} ({rest})" if rest else d["name"]
    return str(d)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=4000)
    ap.add_argument("--json", action="store_true", help="print JSON rows")
    args = ap.parse_args(argv)
    out = rows(args.episodes)
    if args.json:
        print(json.dumps(out, indent=2))
        return out
    print(
        "| attack | defence | clean revenue | Δ revenue | Δ efficiency "
        "| Δ honest utility | Δ clearing price | attacker net | CRN |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for r in out:
        dmg = r["damage"]
        print(
            f"| {r['case']} | {_defence(r['defence'])} | "
            f"{r['clean']['revenue']:.4f} | {_pm(dmg['revenue'])} | "
            f"{_pm(dmg['efficiency'])} | {_pm(dmg['honest_utility'])} | "
            f"{_pm(dmg['mean_clearing_price'])} | "
            f"{r['attacked']['attacker_net']:+.4f} | {r['crn']:.2f} |"
        )
    return out


if __name__ == "__main__":
    main()
