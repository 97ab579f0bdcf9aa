"""Does averaging the weights over the end of a run bring PPO closer to v / 2?

First price n = 2 (``configs/fpsb_n2.yaml``): each seed trains the config as
``attn-market train`` does, while an SB3 callback keeps running means of every
policy parameter after each update in the last 50, 25 and 10 % of the
agent-steps (stochastic weight averaging, Polyak averaging). Then the last
weights and each mean are scored by ``bne_l2`` against ``v / 2`` on 1,000
quantile midpoints (the deterministic bid function, as ``evaluate`` plays it).
Run folders go to ``--out``, the config's own (last) weights in them.

    python benchmarks/weight_averaging.py --out /tmp/swa --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TAILS = (0.5, 0.25, 0.1)
"Fractions of the run, at its end, whose updates are averaged."


class _Averages:
    """Running means of a model's parameters over the updates in each tail."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.means: dict[float, dict[str, Any] | None] = dict.fromkeys(TAILS)
        self.counts = dict.fromkeys(TAILS, 0)

    def add(self, state: dict[str, Any], done: int) -> None:
        for tail in TAILS:
            if done < (1.0 - tail) * self.total:
                continue
            self.counts[tail] += 1
            n, mean = self.counts[tail], self.means[tail]
            if mean is None:
                self.means[tail] = {
                    k: v.detach().double().clone() for k, v in state.items()
                }
                continue
            for k, v in state.items():
                mean[k] += (v.double() - mean[k]) / n


def _trainer(config, out: Path, averages: _Averages):
    """The SB3 trainer whose learn calls also feed ``averages`` after each
    update (at the next rollout's start) and once more at the end."""
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    from training.sb3 import Trainer

    class AveragingTrainer(Trainer):
        def open_log(self, total: int, start: int, enabled: bool) -> Any:
            log = super().open_log(total, start, enabled)
            run = self

            class _Log:
                def callback(self, learner):
                    class _Avg(BaseCallback):
                        def _on_rollout_start(self) -> None:
                            averages.add(self.model.policy.state_dict(), run.timesteps)

                        def _on_step(self) -> bool:
                            return True

                    return CallbackList([log.callback(learner), _Avg()])

                def update(self, done: int, added: int) -> None:
                    log.update(done, added)

                def close(self) -> None:
                    log.close()

            self._bar = _Log()
            return self._bar

    return AveragingTrainer(config, out, progress=False)


def _bne_l2(config, run: Path, state: dict[str, Any] | None) -> float:
    """``bne_l2`` to ``v / 2`` of the run's policy with ``state``'s weights."""
    from runner.evaluate import strategies_for
    from training.policy import load_policy

    trained = load_policy(run, device="cpu")
    if state is not None:
        for rp in trained.by_role.values():
            own = rp.policy.state_dict()
            rp.policy.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    v = (np.arange(1000) + 0.5) / 1000
    bids = np.asarray(
        strategies_for(config, trained, np.random.default_rng(0))[1][0](v)
    )
    return float(np.sqrt(np.mean((bids.reshape(-1) - v / 2) ** 2)))


def run_seed(seed: int, out: Path) -> dict[str, Any]:
    from attn_env.config import load_config

    config = dataclasses.replace(
        load_config(ROOT / "configs" / "fpsb_n2.yaml"), seed=seed
    )
    averages = _Averages(config.train.total_timesteps)
    run = out / f"seed{seed}"
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    trainer = _trainer(config, run, averages)
    trainer.run()
    (lr,) = trainer.learners
    averages.add(lr.model.policy.state_dict(), trainer.timesteps)  # the last update
    row = {"seed": seed, "last": round(_bne_l2(config, run, None), 4)}
    for tail in TAILS:
        row[f"mean_last_{tail:g}"] = round(
            _bne_l2(config, run, averages.means[tail]), 4
        )
        row[f"updates_{tail:g}"] = averages.counts[tail]
    row["train_s"] = round(time.perf_counter() - t0, 1)
    row["load"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="a fresh folder for the runs")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        parser.error(f"--out {out} is not a folder")
    if out.is_dir() and any(out.iterdir()):
        parser.error(f"--out {out} is not empty; name a fresh folder")
    for seed in (int(s) for s in args.seeds.split(",")):
        print(json.dumps(run_seed(seed, out)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
