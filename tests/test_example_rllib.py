"""``examples/rllib_ppo.py`` (RLlib's PettingZoo pipeline) runs and learns.

RLlib multi-agent PPO through ``ParallelPettingZooEnv`` on first price with two
buyers, a local in-process Ray, a small budget: the deterministic policy's bid
function must end clearly closer to the BNE ``b(v) = v/2`` than it started.
About 40 s on 2 busy cores.
"""

from __future__ import annotations

import pytest

from tests.test_examples import load_example

pytest.importorskip("ray.rllib")


def test_rllib_ppo_example_learns():
    steps = 30_000
    result = load_example("rllib_ppo").main(steps, seed=0, eval_every=10_000)
    for key in ("bne_l2_start", "bne_l2_end", "agent_steps", "seconds", "curve"):
        assert key in result, key
    assert result["agent_steps"] >= steps
    assert result["seconds"] > 0
    curve = result["curve"]
    assert curve[0]["agent_steps"] == 0
    assert [c["agent_steps"] for c in curve] == sorted(c["agent_steps"] for c in curve)
    # RLlib's default init: mean shading ~0.17, far from the BNE's 1/2
    assert result["bne_l2_start"] > 0.15, result
    assert result["bne_l2_end"] < result["bne_l2_start"] - 0.04, result
    assert result["bne_l2_end"] < 0.15, result
