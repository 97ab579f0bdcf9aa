"""``train``, ``evaluate`` and ``compare`` of the ``search_day`` scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from attn_env.errors import UserError
from runner.scenario_commands import paired

__all__ = ["RAY", "compare", "evaluate", "train", "train_summary"]

RAY = True
"``train`` takes ``address`` / ``num_env_runners`` (with ``train.backend: rllib``)."


def train(
    config: Any,
    out: str | Path,
    progress: bool = True,
    address: str | None = None,
    num_env_runners: int | None = None,
) -> dict[str, Any]:
    """Train the shared policy with ``train.backend`` (sb3, or rllib, which alone
    takes a Ray ``address`` and ``num_env_runners``)."""
    if config.train.backend == "rllib":
        from training.search_day_rllib import train_search_day_rllib

        return train_search_day_rllib(
            config, out, progress, address=address, num_env_runners=num_env_runners
        )
    if address is not None or num_env_runners is not None:
        raise UserError(
            "--address and --num-env-runners need train.backend: rllib (scenario "
            f"'search_day' trains with {config.train.backend}, in this process)"
        )
    from training.search_day import train_search_day

    return train_search_day(config, out, progress=progress)


def train_summary(record: dict[str, Any]) -> str:
    """The line ``train`` prints: steps, time, and the last validation score."""
    last = record["curve"][-1]
    return (
        f"trained {record['timesteps']:,} advertiser-periods in "
        f"{record['seconds']:.0f} s; held-out score {last['score']:.3f} "
        f"(PID {last['pid_score']:.3f})"
    )


def evaluate(config: Any, policy: str | Path, episodes: int | None) -> dict[str, Any]:
    """A trained policy against the baselines on the same held-out days.

    Every advertiser bids with the policy; then the same days are played with
    every advertiser bidding with each baseline. Paired over days.
    """
    from attn_env.scenarios.search_day import play_days, summarise
    from attn_env.scenarios.search_market import build_market
    from training.search_day import HELD_OUT, held_out, load_search_policy

    days = episodes or config.train.eval_days
    market = build_market(config)
    bidder = load_search_policy(policy, config.lambda_max)
    results: dict[str, Any] = {}
    scores: dict[str, list[float]] = {}
    for kind in ("policy", "pid", "onlinelp", "pacing", "truthful"):
        cfg = held_out(config, kind, days)
        played = play_days(cfg, market, bidder, first_day=HELD_OUT - cfg.seed)
        results[kind] = summarise(cfg, played)
        scores[kind] = [float(d.score.mean()) for d in played]
    pid = np.array(scores["pid"])
    for kind, entry in results.items():
        if kind != "pid":
            entry["gain_over_pid"] = paired(np.array(scores[kind]) / pid - 1.0)
    return {
        "scenario": "search_day",
        "policy": str(policy),
        "days": days,
        "by_bidders": results,
    }


def compare(designs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Paired differences of each design against the first, over the same days
    (every figure of :func:`attn_env.scenarios.search_day.day_measures`)."""
    from attn_env.scenarios.search_day import day_measures, play_days, summarise

    rows, per_day = [], []
    for label, config in designs:
        played = play_days(config)
        summary = summarise(config, played)
        summary["label"] = label
        rows.append(summary)
        per_day.append({k: np.array(v) for k, v in day_measures(played).items()})
    base = per_day[0]
    diffs = []
    for (label, _), days in zip(designs[1:], per_day[1:], strict=True):
        if len(days["score"]) != len(base["score"]):
            raise UserError("compare needs the same number of days in every config")
        diffs.append({"label": label, **{k: paired(days[k] - base[k]) for k in base}})
    return {"scenario": "search_day", "designs": rows, "differences": diffs}
