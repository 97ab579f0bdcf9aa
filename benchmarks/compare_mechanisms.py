"""Which mechanism for an attention market: every sealed mechanism side by side.

Three markets, each on ``uniform`` values and on ``attention`` values (the
attention bank: MiniLM relevance x position attention), played through
``runner.compare`` (common random numbers; the first mechanism is the
baseline of the differences):

============  =======================================================
market        mechanisms
============  =======================================================
one slot      4 buyers: first_price, second_price
three slots   5 buyers, 3 slots: first_price, gsp, vcg, assignment,
              stable_matching
two-sided     5 buyers x 5 sellers: k_double (k = 1/2), mcafee,
              call_market
============  =======================================================

``--behaviour truthful`` puts truthful bidders in every seat.
``--behaviour equilibrium`` plays each mechanism at an equilibrium: truthful
where it is dominant (second price, VCG, assignment, McAfee), the analytic BNE
where ``attn_env.equilibria`` knows one (kind ``bne``), else the numerical BNE
(kind ``equilibrium``, ``attn_env.solver``); a mechanism with none is listed
with the reason and left out. Prints markdown tables; ``--json FILE`` writes
every figure, ``--plots DIR`` a revenue-vs-efficiency plot per table.

    python benchmarks/compare_mechanisms.py --behaviour truthful --episodes 20000
    python benchmarks/compare_mechanisms.py --behaviour equilibrium --episodes 20000
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from attn_env.config import AgentSpec, EnvConfig, ExperimentConfig
from attn_env.equilibria import bne_strategy, truthful
from attn_env.fileio import atomic_write_text
from runner.compare import compare, plot_compare
from runner.results import jsonable

ONE_SIDED = ("revenue", "efficiency")
TWO_SIDED = ("budget_surplus", "efficiency", "mean_price")
MARKETS: dict[
    str, tuple[dict[str, Any], list[tuple[str, dict[str, Any]]], tuple[str, ...]]
] = {
    "one slot, 4 buyers": (
        {"n_buyers": 4, "n_slots": 1},
        [("first_price", {}), ("second_price", {})],
        ONE_SIDED,
    ),
    "3 slots, 5 buyers": (
        {"n_buyers": 5, "n_slots": 3},
        [
            ("first_price", {}),
            ("gsp", {}),
            ("vcg", {}),
            ("assignment", {}),
            ("stable_matching", {}),
        ],
        ONE_SIDED,
    ),
    "5 buyers x 5 sellers": (
        {"n_buyers": 5, "n_sellers": 5},
        [("k_double", {"k": 0.5}), ("mcafee", {}), ("call_market", {})],
        TWO_SIDED,
    ),
}
"""Market -> (shared env options, [(mechanism, mechanism_params)] with the baseline
first, the figures its table shows: revenue for one-sided markets, the budget
surplus and price for two-sided ones, where buyers' payments go to sellers)."""

SOURCES = {
    "uniform": {"valuation": "uniform"},
    "attention": {
        "valuation": "attention",
        "valuation_params": {"relevance": "logistic"},
    },
}


DOMINANT = ("second_price", "vcg", "assignment", "mcafee")
"Truthful bidding (and asking) is dominant here, whatever the values' distribution."


def kind_for(env: EnvConfig, role: str, behaviour: str) -> str:
    """The agent kind of ``role`` in ``env`` for ``behaviour``."""
    if behaviour == "truthful" or env.mechanism in DOMINANT:
        return "truthful"
    star = bne_strategy(env, role)
    if star is truthful:
        return "truthful"
    return "equilibrium" if star is None else "bne"


def design(
    mechanism: str, params: dict[str, Any], env: dict[str, Any], behaviour: str
) -> ExperimentConfig:
    """One mechanism's config, its seats at ``behaviour``."""
    cfg = EnvConfig(mechanism=mechanism, mechanism_params=params, **env)
    return ExperimentConfig(
        env=cfg,
        agents={
            role: AgentSpec(kind_for(cfg, role, behaviour))
            for role in ("buyer", "seller")
        },
    )


def run_market(
    market: str, source: str, behaviour: str, episodes: int, seed: int
) -> dict[str, Any]:
    """``compare`` of one market's mechanisms; designs that cannot be built at
    ``behaviour`` are left out with their reason (``skipped``)."""
    shared, mechs, _ = MARKETS[market]
    env = {**shared, **SOURCES[source]}
    designs = [(m, design(m, p, env, behaviour)) for m, p in mechs]
    skipped: dict[str, str] = {}
    while True:
        try:
            res = compare(designs, episodes=episodes, seed=seed)
            break
        except ValueError as err:  # ConfigError included
            bad = next((n for n, _ in designs if f"design {n!r}" in str(err)), None)
            if bad is None:
                raise
            skipped[bad] = " ".join(str(err).split())
            designs = [(n, c) for n, c in designs if n != bad]
            if len(designs) < 2:
                return {"designs": [], "differences": [], "skipped": skipped}
    res["skipped"] = skipped
    for row, (_, cfg) in zip(res["designs"], designs, strict=True):
        row["kinds"] = sorted({cfg.agent_spec(a).kind for a in row["agent_kinds"]})
    return res


def _pm(x: float | None, se: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    if se is None or not math.isfinite(se):
        return f"{x:.4f}"
    return f"{x:.4f} ± {se:.4f}"


def _ci(f: dict[str, Any]) -> str:
    lo, hi = f["ci"]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "—"
    return f"{f['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]"


_LABEL = {
    "revenue": "revenue",
    "efficiency": "efficiency",
    "budget_surplus": "budget surplus",
    "mean_price": "price",
}


def markdown(res: dict[str, Any], figures: tuple[str, ...]) -> str:
    """One market's table: ``figures`` ± se, then the first two as differences
    from the baseline with 95% CIs (paired on common random numbers)."""
    rows = res["designs"]
    skipped = [f"\n{name}: not played ({why})" for name, why in res["skipped"].items()]
    if not rows:
        return (
            "\n".join(["(fewer than two mechanisms could be played)", *skipped]) + "\n"
        )
    base = rows[0]["name"]
    delta = figures[:2]
    head = [_LABEL[f] for f in figures] + [
        f"Δ {_LABEL[f]} vs {base} [95% CI]" for f in delta
    ]
    lines = [
        "| mechanism | agents | " + " | ".join(head) + " |",
        "|---" * (2 + len(head)) + "|",
    ]
    diffs = {d["design"]: d for d in res["differences"]}
    for row in rows:
        d = diffs.get(row["name"])
        cells = [_pm(row[f], row[f"{f}_se"]) for f in figures]
        if d is None:
            cells += ["baseline"] + [""] * (len(delta) - 1)
        else:
            tag = "" if d["paired"] else " (unpaired)"
            cells += [_ci(d["figures"][f]) + tag for f in delta]
        lines.append(
            f"| {row['name']} | {', '.join(row['kinds'])} | " + " | ".join(cells) + " |"
        )
    lines += skipped
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--behaviour", choices=("truthful", "equilibrium"), default="equilibrium"
    )
    parser.add_argument("--episodes", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sources", nargs="+", choices=tuple(SOURCES), default=list(SOURCES)
    )
    parser.add_argument(
        "--markets", nargs="+", choices=tuple(MARKETS), default=list(MARKETS)
    )
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    parser.add_argument("--plots", metavar="DIR", help="a PNG per table")
    args = parser.parse_args(argv)
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "behaviour": args.behaviour,
        "episodes": args.episodes,
        "seed": args.seed,
        "tables": [],
    }
    for source in args.sources:
        for market in args.markets:
            start = time.perf_counter()
            res = run_market(market, source, args.behaviour, args.episodes, args.seed)
            seconds = time.perf_counter() - start
            title = f"{market}, {source} values, {args.behaviour}"
            table = markdown(res, MARKETS[market][2])
            print(f"### {title}\n\n{table}({seconds:.1f} s)\n", flush=True)
            out["tables"].append(
                {"market": market, "source": source, "seconds": seconds, **res}
            )
            if args.plots and res["designs"]:
                slug = "_".join(f"{market} {source} {args.behaviour}".split())
                slug = "".join(c for c in slug if c.isalnum() or c == "_")
                plot_compare(res, Path(args.plots) / f"{slug}.png", title=title)
    if args.json:
        atomic_write_text(args.json, json.dumps(jsonable(out), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
