"""``examples/rllib_ppo.py`` (RLlib's PettingZoo pipeline) runs and learns.

RLlib multi-agent PPO through ``ParallelPettingZooEnv`` on first price with two
buyers, a local in-process Ray, a small budget: the deterministic policy's bid
function must end clearly closer to the BNE ``b(v) = v/2`` than it started,
after exactly the PPO iterations that reach the budget. About 40 s on 2 busy
cores.
"""

from __future__ import annotations

import pytest

from tests.test_examples import check_counts_and_clock, timed, whole_rollouts

pytestmark = pytest.mark.integration

pytest.importorskip("ray.rllib")


def test_rllib_ppo_example_learns():
    from tests.test_examples import load_example

    example = load_example("rllib_ppo")
    steps, every = 30_000, 10_000
    result, wall = timed(example.main, steps, seed=0, eval_every=every)
    # one PPO iteration samples train_batch_size_per_learner env steps, 2 buyers each
    rollout = example.PPO_KWARGS["train_batch_size_per_learner"] * 2
    check_counts_and_clock(result, whole_rollouts(steps, rollout), wall)
    # RLlib's default init: mean shading ~0.17, far from the BNE's 1/2
    assert result["bne_l2_start"] > 0.15, result
    assert result["bne_l2_end"] < result["bne_l2_start"] - 0.04, result
    assert result["bne_l2_end"] < 0.15, result
