"""Learning to bid: stable-baselines3 training, self-play, checkpoints and evaluation.

- ``attn-market train CONFIG --out DIR`` trains the agents with ``kind: learn``
  (``training.sb3``, or RLlib PPO with ``train.backend: rllib``:
  ``training.rllib``; both on the skeleton ``training.skeleton.TrainingRun``)
  and writes a run folder (``training.run``, its typed manifest
  ``training.manifest``, weights via ``training.checkpoint``).
- ``load_policy(DIR)`` returns a deterministic bidder, ``act(obs [N, obs_dim]) ->
  [N, 1]`` (``training.policy``).
- ``attn-market evaluate CONFIG --policy DIR`` measures it against the analytic
  equilibria (``runner.evaluate``, ``attn_env.equilibria``).

Importing this package is cheap: torch and stable-baselines3 load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_policy", "train"]


def load_policy(path: Any, device: str = "auto"):
    """Load a trained run folder: ``load_policy(DIR).act(obs_batch) -> bids``.

    See ``training.policy.load_policy``.
    """
    from training.policy import load_policy as _load

    return _load(path, device=device)


def train(
    config: Any,
    out: Any,
    resume: bool = False,
    progress: bool = True,
    address: str | None = None,
    num_env_runners: int | None = None,
):
    """Train the learning agents of an ``ExperimentConfig`` into run folder ``out``.

    The one place the backend is chosen: ``training.sb3.train``, or with
    ``train.backend: rllib`` ``training.rllib.train`` (which alone takes a Ray
    ``address`` and ``num_env_runners``).
    """
    if getattr(config.train, "backend", "sb3") == "rllib":
        from training.rllib import train as _train_rllib

        return _train_rllib(
            config,
            out,
            resume=resume,
            progress=progress,
            address=address,
            num_env_runners=num_env_runners,
        )
    if address is not None or num_env_runners is not None:
        from attn_env.errors import UserError

        raise UserError(
            "--address and --num-env-runners need train.backend: rllib "
            f"(this config trains with {config.train.backend})"
        )
    from training.sb3 import train as _train

    return _train(config, out, resume=resume, progress=progress)
