"""Uniform-source position models (``slot_weights``), docs/design.md#known-answers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import attn_env
from attn_env import mechanisms
from attn_env.checks import ConfigError
from attn_env.config import load_config
from attn_env.valuations import UniformSource, draw_values
from attn_env.valuations.positions import PositionModel
from runner.simulate import play

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


# --- the curves, by hand -----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, [1.0, 1.0, 1.0, 1.0]),
        ([0.5, 0.5, 0.25, 0.1], [0.5, 0.5, 0.25, 0.1]),
        # 1/log2(2), 1/log2(3), 1/log2(4), 1/log2(5)
        ("dcg", [1.0, 0.6309297535714575, 0.5, 0.43067655807339306]),
        ({"curve": "dcg"}, [1.0, 0.6309297535714575, 0.5, 0.43067655807339306]),
        ({"curve": "geometric", "gamma": 0.5}, [1.0, 0.5, 0.25, 0.125]),
        ({"curve": "geometric", "gamma": 1}, [1.0, 1.0, 1.0, 1.0]),
        # read slot j with prob ((1-c) q)^(j-1) = 0.4^(j-1), click it with c = 0.5
        ({"curve": "cascade", "click": 0.5, "continue": 0.8}, [0.5, 0.2, 0.08, 0.032]),
        # Craswell et al.'s pure cascade (q = 1): c (1 - c)^(j-1)
        (
            {"curve": "cascade", "click": 0.25, "continue": 1.0},
            [0.25, 0.1875, 0.140625, 0.10546875],
        ),
    ],
)
def test_curves_by_hand(spec, expected):
    np.testing.assert_allclose(
        PositionModel.parse(spec).weights(4), expected, rtol=1e-12
    )


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("ndcg", "'ndcg'"),
        ({"curve": "zipf"}, "'zipf'"),
        ({"curve": "geometric"}, "gamma"),
        ({"curve": "geometric", "gamma": 0.0}, "0.0"),
        ({"curve": "geometric", "gamma": 1.5}, "1.5"),
        ({"curve": "geometric", "gamma": float("nan")}, "nan"),
        ({"curve": "geometric", "gamma": 0.5, "click": 0.1}, "click"),
        ({"curve": "cascade", "click": 1.0, "continue": 0.9}, "1.0"),
        ({"curve": "cascade", "click": 0.3, "continue": 0.0}, "0.0"),
        ([0.5, -0.1, 0.1], "-0.1"),
        ([0.5, float("nan"), 0.1], "nan"),
        ([0.5, 0.0, 0.0], "0.0"),
        ([1.5, 0.5, 0.1], "1.5"),
        ([0.2, 0.5, 0.1], "non-increasing"),
        ([0.5, "x", 0.1], "'x'"),
        ([0.5, True, 0.1], "True"),
        ([], "empty"),
        (3, "3"),
    ],
)
def test_bad_slot_weights_name_the_value(spec, named):
    with pytest.raises(ConfigError) as err:
        PositionModel.parse(spec).weights(3)
    msg = str(err.value)
    assert "\n" not in msg
    assert named in msg
    assert "slot_weights" in msg


def test_bad_slot_weights_fail_before_any_market_is_played():
    # a bad curve, and a list of the wrong length, when the config is checked
    with pytest.raises(ValueError, match="unknown slot_weights curve 'foo'"):
        attn_env.vector_env(
            num_envs=2,
            mechanism="gsp",
            n_slots=2,
            valuation_params={"slot_weights": "foo"},
        )
    with pytest.raises(
        ConfigError, match=r"2 entries \[0.5, 0.2\], expected n_slots = 3"
    ):
        attn_env.parallel_env(
            mechanism="gsp",
            n_buyers=4,
            n_slots=3,
            valuation_params={"slot_weights": [0.5, 0.2]},
        )


# --- the default is unchanged --------------------------------------------------


def test_default_draw_is_the_old_one_bit_for_bit():
    # before slot_weights: theta from draw_values, r = alpha = ones
    d = UniformSource(dist="beta").draw(np.random.default_rng(3), 64, 4, 3)
    theta = draw_values(np.random.default_rng(3), (64, 4), "beta", 0.0, 1.0)
    assert d.theta.tobytes() == theta.tobytes()
    assert d.alpha.tobytes() == np.ones((64, 3)).tobytes()
    assert d.relevance.tobytes() == np.ones((64, 4)).tobytes()


def test_weights_change_alpha_but_not_the_random_stream():
    base = UniformSource().draw(np.random.default_rng(5), 32, 4, 3)
    src = UniformSource(slot_weights={"curve": "geometric", "gamma": 0.6})
    d = src.draw(np.random.default_rng(5), 32, 4, 3)
    np.testing.assert_array_equal(d.theta, base.theta)
    np.testing.assert_allclose(d.alpha, np.tile([1.0, 0.6, 0.36], (32, 1)))


# --- the position auction without a transformer ----------------------------------


def eos_bids(values, alpha):
    """The lowest locally envy-free equilibrium of GSP (Edelman et al. 2007, eq. 4).

    With values sorted ``v_1 > ... > v_n`` and CTRs ``a_1 > ... > a_K``
    (``a_{K+1} = 0``), the bidder in position ``j = 2..K+1`` bids
    ``b_j = v_j - (a_j / a_{j-1}) (v_j - b_{j+1})``; the first loser bids its
    value (``b_{K+1} = v_{K+1}``), the others too, and the top bidder ``v_1``.
    """
    order = np.argsort(-values, axis=1)
    v = np.take_along_axis(values, order, axis=1)
    k = alpha.size
    a = np.concatenate([alpha, [0.0]])
    b = v.copy()
    for j in range(k - 1, 0, -1):  # 0-based positions K-1 .. 1
        b[:, j] = v[:, j] - a[j] / a[j - 1] * (v[:, j] - b[:, j + 1])
    bids = np.empty_like(values)
    np.put_along_axis(bids, order, b, axis=1)
    return bids


@pytest.mark.parametrize(
    "spec",
    [
        [0.3435, 0.1696, 0.1142],
        "dcg",
        {"curve": "geometric", "gamma": 0.7},
        {"curve": "cascade", "click": 0.3, "continue": 0.9},
    ],
)
def test_gsp_at_the_envy_free_equilibrium_earns_vcg_revenue(spec):
    n, k, batch = 5, 3, 4000
    d = UniformSource(slot_weights=spec).draw(np.random.default_rng(11), batch, n, k)
    values = d.unit_value
    vcg = mechanisms.make("vcg").clear(values, weights=d.alpha)
    gsp = mechanisms.make("gsp").clear(eos_bids(values, d.alpha[0]), weights=d.alpha)
    np.testing.assert_array_equal(gsp.slot, vcg.slot)  # efficient: top value, top CTR
    np.testing.assert_allclose(gsp.pay.sum(1), vcg.pay.sum(1), rtol=1e-10, atol=1e-12)
    # truthful GSP earns more than VCG whenever CTRs decay
    truthful = mechanisms.make("gsp").clear(values, weights=d.alpha)
    assert (truthful.pay.sum(1) >= vcg.pay.sum(1) - 1e-12).all()
    assert truthful.pay.sum() > vcg.pay.sum() * 1.05


def test_shipped_position_config_plays_the_textbook_market():
    config = load_config(CONFIGS / "gsp_position.yaml")
    alpha = np.array(config.env.valuation_params["slot_weights"])
    n, k = config.env.n_buyers, alpha.size
    # E[v_(m)] of n U[0,1] values is (n + 1 - m) / (n + 1)
    ev = (n + 1 - np.arange(1, n + 1)) / (n + 1)
    welfare = alpha @ ev[:k]
    step = alpha - np.append(alpha[1:], 0.0)
    # VCG revenue: sum_j sum_{m >= j} (a_m - a_{m+1}) v_(m+1)
    vcg = sum(step[j:] @ ev[j + 1 : k + 1] for j in range(k))
    truthful = play(config, episodes=20_000, progress=False)
    assert truthful["efficiency"] == pytest.approx(1.0)
    assert truthful["welfare"] == pytest.approx(welfare, rel=0.02)
    assert truthful["revenue"] > vcg * 1.1
    config_vcg = replace(config, env=replace(config.env, mechanism="vcg"))
    assert play(config_vcg, episodes=20_000, progress=False)["revenue"] == (
        pytest.approx(vcg, rel=0.03)
    )
