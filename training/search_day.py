"""Train every advertiser of a search day at once: one PPO policy, shared.

Parameter sharing with per-advertiser features: all N advertisers act through
one stable-baselines3 PPO policy; what tells them apart is in the observation
(value per conversion, target CPA / value, budget state; see
:mod:`attn_env.scenarios.search_state`). SB3 sees ``parallel_days * N``
sub-envs (sub-env ``e * N + i`` is advertiser i of day e), stepped by
:class:`~attn_env.scenarios.search_env.SearchDayVectorEnv`.

The policy's action ``a`` in ``[-1, 1]`` is the multiplier
``lambda = lambda_max ** a`` (log scale: 1 at ``a = 0``).

A run folder (:class:`training.run.RunFolder`: locked, only its own files):

    DIR/config.yaml        the resolved scenario config
    DIR/policy.zip         the SB3 model (written to a temporary name, renamed)
    DIR/search_day.json    the learning curve and the final evaluation
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray
from stable_baselines3.common.vec_env import VecEnv

from attn_env.errors import UserError
from attn_env.fileio import check_user_file, read_user_json
from attn_env.scenarios.search_config import SearchDayConfig
from attn_env.scenarios.search_day import play_days, summarise
from attn_env.scenarios.search_env import SearchDayVectorEnv
from attn_env.scenarios.search_market import SearchMarket, build_market
from attn_env.scenarios.search_state import OBS_SIZE
from training.run import RunFolder
from training.sb3 import set_run_logger
from training.scenario_ppo import (
    learn_with_curve,
    one_torch_thread,
    ppo_model,
    progress_bar,
    resolve_device,
    run_record,
    save_policy,
)

__all__ = ["SearchDaySB3Env", "load_search_policy", "train_search_day"]

POLICY = "policy.zip"
RECORD = "search_day.json"
MAX_POLICY_BYTES = 256 * 2**20
"Largest policy file a run may hold (a 64x64 MLP is about 0.1 MB)."
HELD_OUT = 1_000_000
"First traffic seed of held-out test days (``evaluate``; training days: the env's)."
VALIDATION = 2_000_000
"First traffic seed of the validation days the learning curve is measured on."


def multipliers(actions: NDArray, lambda_max: float) -> NDArray[np.float64]:
    """``lambda_max ** clip(a, -1, 1)``: the policy's action as a bid multiplier."""
    a = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
    return lambda_max**a


class SearchDaySB3Env(VecEnv):
    """SB3's view of ``E`` days of ``N`` advertisers: ``E * N`` sub-envs."""

    render_mode = None

    def __init__(self, venv: SearchDayVectorEnv, seed: int | None = None) -> None:
        from gymnasium.spaces import Box

        self.venv = venv
        self.n = venv.n_agents
        self._seed = seed
        self._returns = np.zeros(venv.num_envs * self.n)
        super().__init__(
            venv.num_envs * self.n,
            Box(-np.inf, np.inf, (OBS_SIZE,), np.float32),
            Box(-1.0, 1.0, (1,), np.float32),
        )

    def reset(self) -> NDArray[np.float32]:
        obs = self.venv.reset(seed=self._seed)
        self._seed = None
        self._returns[:] = 0.0
        return obs.reshape(-1, OBS_SIZE)

    def step_async(self, actions: NDArray) -> None:
        self._actions = actions

    def step_wait(self):
        lam = multipliers(self._actions, self.venv.config.lambda_max)
        obs, rew, done, info = self.venv.step(lam.reshape(self.venv.num_envs, self.n))
        rew = rew.reshape(-1)
        self._returns += rew
        dones = np.repeat(done, self.n)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if done.all():
            final = info["final_obs"].reshape(-1, OBS_SIZE)
            periods = self.venv.config.traffic.periods
            for i in range(self.num_envs):
                infos[i]["terminal_observation"] = final[i]
                infos[i]["episode"] = {"r": float(self._returns[i]), "l": periods}
            self._returns[:] = 0.0
        return obs.reshape(-1, OBS_SIZE), rew.astype(np.float32), dones, infos

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seed = seed
        return [seed] * self.num_envs

    def close(self) -> None:
        pass

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        raise AttributeError(f"search-day sub-envs have no method {method_name!r}")

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


def policy_bidder(model: Any, lambda_max: float):
    """The model as a bidder of kind ``policy`` (deterministic actions)."""

    def act(obs: NDArray[np.float32]) -> NDArray[np.float64]:
        a, _ = model.predict(obs, deterministic=True)
        return multipliers(a.reshape(-1), lambda_max)

    return act


def held_out(config: SearchDayConfig, kind: str, days: int) -> SearchDayConfig:
    """The config's market on ``days`` held-out days with every advertiser ``kind``."""
    return dataclasses.replace(config, days=days, bidders={kind: 1.0}, seating="fixed")


def evaluate_policy(
    config: SearchDayConfig, market: SearchMarket, bidder: Any, days: int
) -> dict[str, Any]:
    """Summary of ``days`` validation days with every advertiser bidding ``bidder``
    (``bidder`` None: every advertiser PID)."""
    cfg = held_out(config, "pid" if bidder is None else "policy", days)
    first = VALIDATION - cfg.seed
    return summarise(cfg, play_days(cfg, market, bidder, first_day=first))


def new_model(
    config: SearchDayConfig,
    market: SearchMarket,
    device: str,
    env_seed: int | None = None,
) -> Any:
    """The shared PPO policy of the config's ``train`` settings, on
    ``parallel_days`` days of ``market`` (first reset with ``env_seed``)."""
    tc = config.train
    venv = SearchDaySB3Env(
        SearchDayVectorEnv(tc.parallel_days, market=market), seed=env_seed
    )
    return ppo_model(venv, tc, config.traffic.periods, device)


class Curve:
    """The learning curve on validation days, and the best policy seen on it."""

    def __init__(self, config: SearchDayConfig, market: SearchMarket) -> None:
        self.config = config
        self.market = market
        self.days = config.train.eval_days
        self.pid_score = evaluate_policy(config, market, None, self.days)["score"]
        self.points: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self._best: tuple[float, Any, int] | None = None

    def point(self, model: Any, done: int) -> dict[str, Any]:
        """Evaluate ``model`` (an SB3 PPO) after ``done`` advertiser-periods."""
        bidder = policy_bidder(model, self.config.lambda_max)
        ev = evaluate_policy(self.config, self.market, bidder, self.days)
        p = {
            "timesteps": done,
            "seconds": time.perf_counter() - self.t0,
            "score": ev["score"],
            "score_se": ev["score_se"],
            "pid_score": self.pid_score,
        }
        self.points.append(p)
        if self._best is None or p["score"] > self._best[0]:
            self._best = (p["score"], copy.deepcopy(model.policy.state_dict()), done)
        return p

    def keep(self, model: Any, done: int) -> int:
        """Load the policy ``train.keep`` names into ``model``; its timesteps."""
        if self.config.train.keep == "best" and self._best is not None:
            model.policy.load_state_dict(self._best[1])
            return self._best[2]
        return done


def train_search_day(
    config: SearchDayConfig, out: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Train the shared policy; write the run folder; return its record."""
    import torch

    tc = config.train
    device = resolve_device(tc.device)
    market = build_market(config)
    with RunFolder.fresh(out) as run, one_torch_thread():
        run.write_text(
            "config.yaml", yaml.safe_dump(dataclasses.asdict(config)), "config"
        )
        torch.manual_seed(tc.seed)
        model = new_model(config, market, device, env_seed=tc.seed)
        set_run_logger(model, None)
        curve = Curve(config, market)
        bar = progress_bar(
            None if tc.max_minutes else tc.timesteps, progress, "search_day"
        )
        done = learn_with_curve(
            model,
            curve,
            tc,
            bar,
            lambda p: {"score": f"{p['score']:.2f}", "pid": f"{p['pid_score']:.2f}"},
        )
        kept = curve.keep(model, done)
        save_policy(run, model)
        record = run_record("search_day", done, curve, device, tc.keep, kept)
        run.write_text(RECORD, json.dumps(record, indent=1), "record")
    return record


def load_search_policy(run_dir: str | Path, lambda_max: float, device: str = "cpu"):
    """The bidder of a trained run folder (``policy.zip`` and ``search_day.json``)."""
    from stable_baselines3 import PPO

    root = Path(run_dir)
    record = read_user_json(root / RECORD, "search-day run record", inside=root)
    if not isinstance(record, dict) or record.get("scenario") != "search_day":
        raise UserError(f"{root / RECORD}: not a search_day run record")
    path = check_user_file(
        root / POLICY, "search-day policy", MAX_POLICY_BYTES, inside=root
    )
    try:
        model = PPO.load(path, device=device)
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise UserError(f"{path}: cannot load the policy ({err})") from None
    return policy_bidder(model, lambda_max)
