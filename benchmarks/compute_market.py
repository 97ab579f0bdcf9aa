"""The schedule call market: markets cleared per second, and brute force agreement.

1. Throughput. ``--markets`` compute markets of the scenario's default size
   (8 buyers x 4 job steps, 6 sellers x 3 cost tranches; jobs from corpus
   token counts and the MiniLM FLOP model, :mod:`attn_env.scenarios.compute_model`)
   with truthful schedules, cleared by ``schedule_call_market`` in one call
   (best of ``--repeat``), for each rule. Also the end-to-end rate of one
   truthful scenario period (draw jobs and sellers, clear, measure).
2. Brute force. ``--check`` random markets of 1 to 50 buyers and 1 to 50
   sellers with 1 to 3 steps each (half on a coarse price grid with integer
   quantities: ties and exact sums; half continuous), padded to 50 x 50 x 3
   with empty steps and cleared in one call. Each market's efficient volume,
   Walrasian interval and uniform price (``k = 0.5``) must equal a per-market
   sweep of every step price, ``D(p) = sum q [bid >= p]``,
   ``S(p) = sum q [ask <= p]``, ``p`` Walrasian iff ``Q*`` lies in
   ``[D^+(p), D(p)]`` and ``[S^-(p), S(p)]``.

    python benchmarks/compute_market.py                 # 200,000 markets, 10,000 checks
    python benchmarks/compute_market.py --markets 20000 --check 1000   # quick
    python benchmarks/compute_market.py \
        --simulate configs/scenarios/compute_market.yaml \
        --json docs/img/compute_market.json --plot docs/img/compute_market.png

3. PPO in the unit-demand market. ``--ppo-unit DIR`` trains the config's
   ``train:`` block on the unit-demand env (``ComputeMarketEnv(unit=True)``;
   the schedule market trains with ``attn-market train``) and prints the
   held-out table of the policy, the hill climber and truthful traders:

    python benchmarks/compute_market.py --ppo-unit /tmp/unit_run \
        --simulate configs/scenarios/compute_market.yaml
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from attn_env.mechanisms.schedules import RULES, ScheduleCallMarket
from attn_env.scenarios import compute_market as cm
from attn_env.scenarios.compute_model import draw_jobs, draw_requests, draw_sellers
from attn_env.scenarios.compute_play import MEASURES


def truthful_books(rng: np.random.Generator, n_markets: int, c: cm.ComputeMarketConfig):
    """Truthful schedules of ``n_markets`` fully booked scenario markets, and
    the scenario's ``(request pool, mean demand)``."""
    pool = draw_requests(rng, c.pool_size, docs_min=c.docs_min, docs_max=c.docs_max)
    jobs = draw_jobs(
        rng, (n_markets, c.n_buyers, c.jobs_per_buyer), pool, **cm._job_kwargs(c)
    )
    mean_demand = float(jobs.gflop.mean()) * c.n_buyers * c.jobs_per_buyer
    ap, aq = draw_sellers(
        rng, (n_markets, c.n_sellers), c.cost_steps, **cm._seller_kwargs(c, mean_demand)
    )
    return (jobs.price, jobs.gflop, ap, aq), (pool, mean_demand)


def best_rate(fn, n_markets: int, repeat: int) -> tuple[float, float]:
    """Markets per second of the best of ``repeat`` calls: by wall clock and by
    this process's CPU time (less sensitive to other jobs on shared cores)."""
    wall = cpu = np.inf
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return n_markets / wall, n_markets / cpu


def brute_force(bp, bq, ap, aq, k: float) -> tuple[float, float, float, float]:
    """``(Q*, low, high, price)`` of one market by a sweep of every step price."""
    bp, bq, ap, aq = (np.ravel(x) for x in (bp, bq, ap, aq))
    tol = 1e-9 * (bq.sum() + aq.sum())
    bp, bq = bp[bq > tol], bq[bq > tol]
    ap, aq = ap[aq > tol], aq[aq > tol]
    cands = np.unique(np.concatenate([bp, ap]))
    ge = bp[None, :] >= cands[:, None]
    gt = bp[None, :] > cands[:, None]
    le = ap[None, :] <= cands[:, None]
    lt = ap[None, :] < cands[:, None]
    d, d_plus = ge @ bq, gt @ bq
    s, s_minus = le @ aq, lt @ aq
    q = max(float(np.minimum(d, s).max(initial=0.0)), 0.0)
    if q <= tol:
        return 0.0, bp.max(initial=0.0), ap.min(initial=np.inf), np.nan
    ok = (d_plus <= q + tol) & (q <= d + tol) & (s_minus <= q + tol) & (q <= s + tol)
    low, high = cands[ok].min(), cands[ok].max()
    return q, low, high, k * high + (1 - k) * low


def random_markets(
    rng: np.random.Generator, n_markets: int, top: int = 50, steps: int = 3
):
    """Random books padded to ``top x top x steps`` (empty steps: quantity 0)."""
    n = rng.integers(1, top + 1, n_markets)
    m = rng.integers(1, top + 1, n_markets)
    s = rng.integers(1, steps + 1, n_markets)
    grid = np.arange(n_markets) < n_markets // 2  # ties and exact integer sums
    shape = (n_markets, top, steps)

    def prices():
        fine = rng.random(shape)
        coarse = rng.integers(0, 20, shape) / 20
        return np.where(grid[:, None, None], coarse, fine)

    def quantities(count):
        whole = rng.integers(0, 5, shape).astype(float)
        frac = rng.random(shape) * 4
        qty = np.where(grid[:, None, None], whole, frac)
        live = (np.arange(top)[None, :, None] < count[:, None, None]) & (
            np.arange(steps)[None, None, :] < s[:, None, None]
        )
        return np.where(live, qty, 0.0)

    return prices(), quantities(n), prices(), quantities(m)


def report(path: str, out: str | None, png: str | None, sets: list[str]) -> None:
    """Run a compute_market config; print the table, write JSON and the plot."""
    import json

    import yaml

    from attn_env.config import read_config_yaml

    data = read_config_yaml(path)
    for item in sets:
        key, _, value = item.partition("=")
        data[key] = yaml.safe_load(value)
    t0 = time.perf_counter()
    result = cm.simulate(cm.load(data, path), progress=True)
    seconds = time.perf_counter() - t0
    keys = (*MEASURES, "served_value_share")
    print("| run | " + " | ".join(keys) + " | shading (buyers / sellers) |")
    print("|---" * (len(keys) + 2) + "|")
    for name, run in result["runs"].items():
        cells = []
        for key in keys:
            cell = run.get(key)
            if cell is None or cell["mean"] is None:
                cells.append("")
            elif cell["se"] is None:
                cells.append(f"{cell['mean']:.4f}")
            else:
                cells.append(f"{cell['mean']:.4f} ± {cell['se']:.4f}")
        sh = result["shading"][name]
        cells.append(f"{sh['buyers']:.3f} / {sh['sellers']:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(json.dumps(result["flop_model"]))
    print(
        f"{seconds:.0f} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if out:
        Path(out).write_text(json.dumps(result, allow_nan=False) + "\n")
    if png:
        cm.plot(result, png)


def ppo_unit(path: str, out: str) -> None:
    """Train and evaluate the shared PPO policy on the unit-demand market."""
    import json

    from attn_env.config import read_config_yaml
    from runner.scenario_commands import compute_market as cmd
    from training.scenario_ppo import load_shared_policy

    c = cm.load(read_config_yaml(path), path)
    t0 = time.perf_counter()
    record = cmd.train(c, out, progress=False, unit=True)
    print(cmd.train_summary(record))
    act = load_shared_policy(out, cmd.SCENARIO)
    result = cmd.held_out(c, act, c.populations, unit=True)
    print(json.dumps(result, indent=1))
    print(
        f"{time.perf_counter() - t0:.0f} s; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def main() -> None:
    ap_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap_.add_argument("--markets", type=int, default=200_000)
    ap_.add_argument("--repeat", type=int, default=3)
    ap_.add_argument("--check", type=int, default=10_000)
    ap_.add_argument("--seed", type=int, default=0)
    ap_.add_argument("--simulate", metavar="YAML", help="run a scenario config instead")
    ap_.add_argument(
        "--ppo-unit",
        metavar="DIR",
        help="with --simulate: train PPO on the unit-demand market into DIR",
    )
    ap_.add_argument("--json", metavar="OUT", help="with --simulate: write the result")
    ap_.add_argument("--plot", metavar="PNG", help="with --simulate: price convergence")
    ap_.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="with --simulate: override a config key (YAML value), repeatable",
    )
    args = ap_.parse_args()
    if args.simulate and args.ppo_unit:
        ppo_unit(args.simulate, args.ppo_unit)
        return
    if args.simulate:
        report(args.simulate, args.json, args.plot, args.set)
        return
    rng = np.random.default_rng(args.seed)
    c = cm.CONFIG()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    book, world = truthful_books(rng, args.markets, c)
    size = (
        f"{c.n_buyers} buyers x {c.jobs_per_buyer} steps, "
        f"{c.n_sellers} sellers x {c.cost_steps} steps"
    )
    print(f"throughput, {args.markets:,} markets of {size}, best of {args.repeat}")
    for rule in RULES:
        mk = ScheduleCallMarket(rule=rule)
        rate, cpu = best_rate(lambda mk=mk: mk.clear(*book), args.markets, args.repeat)
        print(f"  clear {rule:16s} {rate:12,.0f} markets/s (CPU time: {cpu:,.0f})")
    period = cm.validate(
        cm.CONFIG(
            populations=1,
            markets=args.markets,
            periods=1,
            report_last=1,
            learn=False,
            shade_init=0.0,
            compare_unit=False,
        )
    )

    def one_period() -> None:
        cm._run_schedule(period, np.random.default_rng(1), world, "", False)

    rate, cpu = best_rate(one_period, args.markets, args.repeat)
    print(
        f"  scenario period (draw + clear + measures) {rate:12,.0f} markets/s "
        f"(CPU time: {cpu:,.0f})"
    )

    bp, bq, ap, aq = random_markets(rng, args.check)
    t0 = time.perf_counter()
    out = ScheduleCallMarket(k=0.5).clear(bp, bq, ap, aq)
    t_mech = time.perf_counter() - t0
    t0 = time.perf_counter()
    bad = 0
    for b in range(args.check):
        q, low, high, price = brute_force(bp[b], bq[b], ap[b], aq[b], 0.5)
        same = (
            np.isclose(out.efficient_volume[b], q, rtol=1e-9, atol=0.0)
            and out.walrasian_low[b] == low
            and out.walrasian_high[b] == high
            and (
                (np.isnan(price) and np.isnan(out.clearing_price[b]))
                or out.clearing_price[b] == price
            )
        )
        if not same:
            bad += 1
            if bad <= 5:
                print(
                    f"  MISMATCH market {b}: mech ({out.efficient_volume[b]}, "
                    f"{out.walrasian_low[b]}, {out.walrasian_high[b]}, "
                    f"{out.clearing_price[b]}) brute ({q}, {low}, {high}, {price})"
                )
    t_brute = time.perf_counter() - t0
    traded = int(np.isfinite(out.clearing_price).sum())
    print(
        f"brute force: {args.check - bad:,} of {args.check:,} random markets (1..50 x "
        f"1..50 traders, 1..3 steps; {traded:,} with trade) agree on Q*, the "
        f"Walrasian interval and the price; mechanism {t_mech:.2f} s, sweep "
        f"{t_brute:.1f} s"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
