"""The ``attn-market train`` and ``attn-market evaluate`` commands.

Only argparse is imported here; torch and stable-baselines3 load inside the
command functions.
"""

from __future__ import annotations

import argparse
import json
import sys

from attn_env.errors import UserError
from attn_market.commands import check_output_file
from runner.results import jsonable

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``evaluate`` commands."""
    p = subparsers.add_parser(
        "train",
        help="train the agents with kind: learn (stable-baselines3 or RLlib)",
        description="Train the learning agents of CONFIG and write a run folder that "
        "`evaluate --policy` and training.load_policy read.",
    )
    p.add_argument("config", metavar="CONFIG", help="experiment YAML (see configs/)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder to write")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in DIR from its last checkpoint",
    )
    p.add_argument(
        "--timesteps",
        type=int,
        default=None,
        metavar="N",
        help="override train.total_timesteps (agent-steps in all)",
    )
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="backend rllib: train on this Ray cluster (default: RAY_ADDRESS, "
        "else a local Ray in this process)",
    )
    p.add_argument(
        "--num-env-runners",
        type=int,
        default=None,
        metavar="N",
        help="backend rllib: remote env runners (override "
        "train.algo_params.num_env_runners)",
    )
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "evaluate",
        help="measure a trained policy: BNE distance, utility loss, market metrics",
        description="Play the trained policy of DIR in CONFIG's market and compare it "
        "with the analytic equilibrium where one is known.",
    )
    e.add_argument("config", metavar="CONFIG", help="experiment YAML (see configs/)")
    e.add_argument(
        "--policy", required=True, metavar="DIR", help="run folder of `train`"
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="write the learned bid functions vs the BNE (PNG)",
    )
    e.add_argument(
        "--episodes", type=int, default=None, help="override config episodes"
    )
    e.add_argument(
        "--samples",
        type=int,
        default=4000,
        help="Monte Carlo opponent profiles for utility_loss",
    )
    e.set_defaults(func=_evaluate)


def _load(path: str, seed: int | None = None, timesteps: int | None = None):
    import dataclasses

    from attn_env.config import load_config, validate_experiment

    config = load_config(path)
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
        validate_experiment(config)
    if timesteps is not None:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, total_timesteps=timesteps)
        )
    return config


def _train(args: argparse.Namespace) -> int:
    from runner.scenarios import read_scenario, train_scenario, train_summary

    scenario = read_scenario(args.config)
    if scenario is not None:
        if args.resume:
            raise UserError(
                f"--resume does not apply to scenario {scenario[0]!r} (its run folder "
                "is written once)"
            )
        record = train_scenario(
            *scenario,
            args.out,
            args.seed,
            args.timesteps,
            progress=not args.no_progress,
            address=args.address,
            num_env_runners=args.num_env_runners,
        )
        print(f"{train_summary(scenario[0], record)}; run folder {args.out}")
        return 0
    from training import train
    from training.sb3 import main_summary

    config = _load(args.config, args.seed, args.timesteps)
    manifest = train(
        config,
        args.out,
        resume=args.resume,
        progress=not args.no_progress,
        address=args.address,
        num_env_runners=args.num_env_runners,
    )
    print(main_summary(manifest))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from runner.scenarios import evaluate_scenario, read_scenario

    scenario = read_scenario(args.config)
    if scenario is not None:
        if args.plot is not None:
            raise UserError(f"--plot does not apply to scenario {scenario[0]!r}")
        result = evaluate_scenario(*scenario, args.policy, days=args.episodes)
        if args.json:
            print(json.dumps(jsonable(result), allow_nan=False))
        else:
            from attn_market.commands.scenario_tables import print_scenario

            print_scenario(result)
        return 0

    from runner.evaluate import evaluate

    # small batches: extra threads only contend (see train.threads)
    torch.set_num_threads(1)
    config = _load(args.config)
    if args.plot is not None:
        check_output_file(args.plot, "--plot")
    result = evaluate(
        config,
        args.policy,
        episodes=args.episodes,
        plot=args.plot,
        samples=args.samples,
        progress=not args.json and sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    _print(result)
    return 0


_FIRST = (
    "bne_l2",
    "bne_l2_all",
    "reference",
    "utility_loss",
    "bne_l2_by_learner",
    "bne_l2_all_by_learner",
    "utility_loss_by_learner",
    "efficiency",
    "revenue",
    "welfare",
    "mean_price",
    "mean_utility",
    "timesteps",
)
"Rows of the evaluate table that come first, in this order."
_LABELS = {
    "bne_l2": "bne_l2 (bids that can matter)",
    "bne_l2_all": "bne_l2_all (whole value range)",
}


def _cell(value, se=None) -> str:
    """One value as the table shows it: ``mean ± se``, per learner or agent."""
    from attn_market.commands.simulate import fmt_se

    if isinstance(value, dict):
        errs = se if isinstance(se, dict) else {}
        return ", ".join(f"{k}={_cell(v, errs.get(k))}" for k, v in value.items())
    return fmt_se(value, se)


def _has_list(x) -> bool:
    if isinstance(x, dict):
        return any(_has_list(v) for v in x.values())
    return isinstance(x, list)


def _rows(result: dict) -> list[tuple[str, str]]:
    """``(metric, value ± se)`` rows: each ``X_se`` folded into ``X``'s row;
    per-episode series (lists) are for ``--json`` and plots, not the table."""
    keys = [k for k in _FIRST if k in result]
    keys += [k for k in result if k not in _FIRST]
    rows = []
    for key in keys:
        value = result[key]
        if key.endswith("_se") and key[:-3] in result:
            continue
        if _has_list(value):
            continue
        rows.append((_LABELS.get(key, key), _cell(value, result.get(f"{key}_se"))))
    return rows


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="evaluate")
    table.add_column("metric")
    table.add_column("value ± se", overflow="fold")
    for metric, cell in _rows(result):
        table.add_row(metric, cell)
    Console().print(table)
