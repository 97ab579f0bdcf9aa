"""One PPO policy shared by every agent of a scenario's PettingZoo env.

The scenarios that learn through their own parallel env (``answer_slots``,
``feed``, ``compute_market``) train the same way: SuperSuit turns the env into
an SB3 ``VecEnv`` (one sub-env per agent, :func:`training.supersuit_vec.sb3_vec_env`),
one stable-baselines3 PPO policy acts for all of them (parameter sharing; the
observation tells agents apart), and the learning curve is measured on
validation episodes that training never plays. The scenario supplies the env
and the validation score; this module owns the loop, the run folder and the
policy file, so each scenario's trainer is a few lines.

A run folder (:class:`training.run.RunFolder`: locked, only its own files):

    DIR/config.yaml        the resolved scenario config
    DIR/policy.zip         the SB3 model (written to a temporary name, renamed)
    DIR/<scenario>.json    the learning curve and what was kept
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from attn_env.checks import check_device
from attn_env.errors import UserError
from attn_env.fileio import check_user_file, read_user_json
from attn_env.scenarios.train_config import ScenarioTrainConfig
from training.run import RunFolder

__all__ = [
    "POLICY",
    "Policy",
    "kept_point",
    "learn_with_curve",
    "load_shared_policy",
    "one_torch_thread",
    "out_of_time",
    "ppo_model",
    "progress_bar",
    "run_record",
    "save_policy",
    "train_shared_ppo",
]

POLICY = "policy.zip"
MAX_POLICY_BYTES = 256 * 2**20
"Largest policy file a run may hold (a 64x64 MLP is about 0.1 MB)."

Policy = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"Observations ``(m, obs_dim)`` -> deterministic actions ``(m, act_dim)``."


def policy_of(model: Any) -> Policy:
    """The deterministic policy of an SB3 model (actions clipped to its space)."""

    def act(obs: NDArray[np.float32]) -> NDArray[np.float32]:
        a, _ = model.predict(np.asarray(obs, dtype=np.float32), deterministic=True)
        return np.asarray(a, dtype=np.float32)

    return act


def save_policy(run: RunFolder, model: Any) -> None:
    """Write ``model`` as ``policy.zip``: a temporary name, then one rename."""
    staging = run.path_of(f".{POLICY}.{run.token}.zip", "policy")
    model.save(staging)
    os.replace(staging, run.path_of(POLICY, "policy"))


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one CPU thread while training, restored afterwards: a 64x64 MLP
    gains nothing from more, and torch's spinning threads made PPO about 10x
    slower on 2 busy cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def out_of_time(max_minutes: float | None, t0: float) -> bool:
    """Whether ``max_minutes`` (if set) have passed since ``t0``."""
    return max_minutes is not None and time.perf_counter() - t0 >= 60 * max_minutes


def progress_bar(total: int | None, enabled: bool, what: str):
    """A tqdm bar over agent-steps (``None`` when disabled)."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="step", desc=f"train {what}", leave=False)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; others checked as given."""
    import torch

    device = check_device(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Curve:
    """The learning curve on validation episodes, and the best policy seen on it."""

    def __init__(self, validate: Callable[[Policy], dict[str, float]]) -> None:
        self.validate = validate
        self.points: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()
        self._best: tuple[float, Any, int] | None = None

    def point(self, model: Any, done: int) -> dict[str, Any]:
        """Validate ``model`` after ``done`` agent-steps; keep it if it is the best."""
        scores = self.validate(policy_of(model))
        p = {"timesteps": done, "seconds": time.perf_counter() - self.t0, **scores}
        self.points.append(p)
        if self._best is None or p["score"] > self._best[0]:
            self._best = (p["score"], copy.deepcopy(model.policy.state_dict()), done)
        return p

    def keep(self, model: Any, done: int, rule: str) -> int:
        """Load the policy ``rule`` (best / last) names into ``model``; its steps."""
        if rule == "best" and self._best is not None:
            model.policy.load_state_dict(self._best[1])
            return self._best[2]
        return done


def ppo_model(venv: Any, tc: Any, n_steps: int, device: str) -> Any:
    """SB3 PPO on ``venv`` with a ``train`` block's settings (``batch_size``,
    ``n_epochs``, ``learning_rate``, ``gamma``, ``ent_coef``, ``net_arch``,
    ``seed``): the scenarios' trainers share it."""
    from stable_baselines3 import PPO

    return PPO(
        "MlpPolicy",
        venv,
        n_steps=n_steps,
        batch_size=tc.batch_size,
        n_epochs=tc.n_epochs,
        learning_rate=tc.learning_rate,
        gamma=tc.gamma,
        ent_coef=tc.ent_coef,
        policy_kwargs={"net_arch": list(tc.net_arch)},
        seed=tc.seed,
        device=device,
        verbose=0,
    )


def new_model(env: Any, tc: ScenarioTrainConfig, device: str) -> Any:
    """The shared PPO of ``tc`` on ``tc.num_envs`` copies of parallel env ``env``."""
    from stable_baselines3.common.vec_env import VecMonitor

    from training.supersuit_vec import sb3_vec_env

    venv = VecMonitor(sb3_vec_env(env, num_vec_envs=tc.num_envs))
    venv.seed(tc.seed)
    return ppo_model(venv, tc, tc.n_steps, device)


def kept_point(record: dict[str, Any]) -> dict[str, Any]:
    """The learning-curve point of the policy a run kept (``train.keep``)."""
    kept = record["kept"]["timesteps"]
    return next(p for p in record["curve"] if p["timesteps"] == kept)


def train_shared_ppo(
    scenario: str,
    config: Any,
    tc: ScenarioTrainConfig,
    env: Any,
    validate: Callable[[Policy], dict[str, float]],
    out: str | Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one shared PPO policy on parallel env ``env``; write run folder ``out``.

    Args:
        scenario: the scenario's name (the record's file and ``scenario`` field).
        config: the resolved scenario config (a dataclass), saved as ``config.yaml``.
        tc: its ``train`` block.
        env: a fresh PettingZoo parallel env of the training market (its agents
            share one observation and one action space).
        validate: the policy's scores on validation episodes; must hold
            ``score`` (higher is better), may hold more (all go into the curve).
        out: a missing or empty folder.
        progress: show a progress bar.

    Returns:
        The record written to ``DIR/<scenario>.json``.
    """
    import dataclasses

    import torch

    from training.sb3 import set_run_logger

    device = resolve_device(tc.device)
    with RunFolder.fresh(out) as run, one_torch_thread():
        run.write_text(
            "config.yaml", yaml.safe_dump(dataclasses.asdict(config)), "config"
        )
        torch.manual_seed(tc.seed)
        model = new_model(env, tc, device)
        set_run_logger(model, None)
        curve = Curve(validate)
        curve.point(model, 0)
        bar = progress_bar(None if tc.max_minutes else tc.timesteps, progress, scenario)
        done = learn_with_curve(
            model, curve, tc, bar, lambda p: {"score": f"{p['score']:.4g}"}
        )
        kept = curve.keep(model, done, tc.keep)
        save_policy(run, model)
        record = run_record(scenario, done, curve, device, tc.keep, kept)
        run.write_text(f"{scenario}.json", json.dumps(record, indent=1), "record")
    return record


def learn_with_curve(
    model: Any,
    curve: Any,
    tc: Any,
    bar: Any,
    postfix: Callable[[dict[str, Any]], dict[str, str]],
) -> int:
    """Train ``model`` in chunks of ``tc.eval_every`` agent-steps, a point of
    ``curve`` after each, until ``tc.timesteps`` or ``tc.max_minutes``; the bar
    (if any) shows ``postfix`` of each point. Returns the steps done."""
    done = 0
    while done < tc.timesteps and not out_of_time(tc.max_minutes, curve.t0):
        chunk = min(tc.eval_every, tc.timesteps - done)
        model.learn(chunk, reset_num_timesteps=False, progress_bar=False)
        done = int(model.num_timesteps)
        p = curve.point(model, done)
        if bar is not None:
            bar.update(done - bar.n)
            bar.set_postfix(**postfix(p))
    if bar is not None:
        bar.close()
    return done


def run_record(
    scenario: str, done: int, curve: Any, device: str, rule: str, kept: int
) -> dict[str, Any]:
    """The JSON record of a shared-policy run: steps, time, what was kept, curve."""
    return {
        "scenario": scenario,
        "timesteps": done,
        "seconds": time.perf_counter() - curve.t0,
        "device": device,
        "kept": {"rule": rule, "timesteps": kept},
        "curve": curve.points,
    }


def load_shared_policy(
    run_dir: str | Path, scenario: str, device: str = "cpu"
) -> Policy:
    """The policy of a ``scenario`` run folder :func:`train_shared_ppo` wrote."""
    from stable_baselines3 import PPO

    root = Path(run_dir)
    record_path = root / f"{scenario}.json"
    record = read_user_json(record_path, f"{scenario} run record", inside=root)
    if not isinstance(record, dict) or record.get("scenario") != scenario:
        raise UserError(f"{record_path}: not a {scenario} run record")
    path = check_user_file(
        root / POLICY, f"{scenario} policy", MAX_POLICY_BYTES, inside=root
    )
    try:
        model = PPO.load(path, device=device)
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise UserError(f"{path}: cannot load the policy ({err})") from None
    return policy_of(model)
