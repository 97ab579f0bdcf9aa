"""The scripts of ``examples/`` run and learn (issue 10, item 4).

Each example's ``main(total_steps, seed)`` trains on first price with two
buyers under a small budget; the deterministic policy's bid function must end
closer to the BNE ``b(v) = v/2`` than it started (``bne_l2`` down). The
examples sit outside the packages, so they are imported by path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(name: str):
    """Import ``examples/<name>.py`` as module ``examples_<name>``."""
    mod_name = f"examples_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _check(result: dict, steps: int) -> None:
    for key in ("bne_l2_start", "bne_l2_end", "agent_steps", "seconds"):
        assert key in result, key
    assert result["agent_steps"] >= steps
    assert result["seconds"] > 0
    # the untrained policy shades to ~0 (bids ~0): bne_l2 ~ sqrt(E[(v/2)^2])
    assert result["bne_l2_start"] > 0.2
    assert result["bne_l2_end"] < result["bne_l2_start"] - 0.03, result


def test_supersuit_sb3_example_learns():
    pytest.importorskip("supersuit")
    steps = 30_720
    _check(load_example("supersuit_sb3").main(steps, seed=0), steps)


def test_cleanrl_ppo_example_learns():
    steps = 60_000
    result = load_example("cleanrl_ppo").main(steps, seed=0)
    _check(result, steps)
    assert result["bne_l2_end"] < 0.15, result


def test_examples_checkpoints_and_early_stop():
    """``eval_every``/``target`` (the benchmark's protocol): a curve, then a stop."""
    result = load_example("cleanrl_ppo").main(
        400_000, seed=0, eval_every=20_000, target=0.2
    )
    curve = result["curve"]
    assert curve[0]["agent_steps"] == 0
    assert [c["agent_steps"] for c in curve] == sorted(c["agent_steps"] for c in curve)
    assert curve[-1]["bne_l2"] <= 0.2
    assert result["agent_steps"] < 400_000
