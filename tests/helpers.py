"""Small helpers shared by several test files."""

from __future__ import annotations

import numpy as np
from gymnasium.utils.env_checker import data_equivalence


def nan_equal(a, b, exact=False):
    """gymnasium's ``data_equivalence``, but two NaN floats are equal.

    The env's infos use NaN for numbers that are undefined (a round where
    nothing traded); the checkers' seed tests compare infos with ``==``.
    """
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(nan_equal(a[k], b[k], exact) for k in a)
    return data_equivalence(a, b, exact)


def tiny_first_price_run(solve: dict):
    """A two-buyer first-price config whose shared PPO learner trains in a
    second (512 steps, a net of 8 units), with ``solve`` options: for tests
    that need a trained run, not a good one."""
    from attn_env.config import ExperimentConfig, from_dict, validate_experiment

    c = from_dict(
        ExperimentConfig,
        {
            "env": {"mechanism": "first_price", "n_buyers": 2, "action": "shade"},
            "agents": {"buyer": {"kind": "learn"}},
            "episodes": 200,
            "train": {
                "total_timesteps": 512,
                "num_envs": 8,
                "n_steps": 32,
                "batch_size": 128,
                "net_arch": [8],
                "checkpoint_every": 512,
                "device": "cpu",
                "algo_params": {"n_epochs": 1},
            },
            "solve": solve,
        },
    )
    validate_experiment(c)
    return c
