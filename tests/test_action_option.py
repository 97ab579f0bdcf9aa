"""``env.action`` has one owner: ``EnvConfig.actions`` resolves ``auto`` once,
and the env, the trainer's action maps and the vector adapter all read it."""

from __future__ import annotations

import pytest

import attn_env
from attn_env.actions import ActionOption
from attn_env.config import EnvConfig
from training.actions import map_mode


@pytest.mark.parametrize(
    ("action", "env", "learner", "explicit"),
    [
        ("auto", "absolute", "shade", False),
        ("absolute", "absolute", "absolute", True),
        ("shade", "shade", "shade", True),
    ],
)
def test_resolve(action, env, learner, explicit):
    option = EnvConfig(action=action).actions
    assert option == ActionOption(env=env, learner=learner, explicit=explicit)


@pytest.mark.parametrize("action", ["auto", "absolute", "shade"])
def test_env_and_trainer_read_the_same_option(action):
    cfg = EnvConfig(mechanism="first_price", n_buyers=2, value_high=2.0, action=action)
    venv = attn_env.vector_env(1, config=cfg)
    top = float(venv.single_action_space.high.max())
    # the env's action box: [0, 1] shading factors, or bids up to value_high = 2
    assert top == (1.0 if cfg.actions.env == "shade" else 2.0)
    mode = map_mode(cfg.actions, "sigmoid")
    assert (mode == "absolute") == (cfg.actions.learner == "absolute")


def test_unknown_action_is_refused():
    with pytest.raises(ValueError, match=r"env\.action"):
        ActionOption.resolve("relative")
