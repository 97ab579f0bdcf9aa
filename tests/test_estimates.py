"""Standard errors over episodes (``attn_env.estimates``) and in ``simulate``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from attn_env.config import AgentSpec, EnvConfig, ExperimentConfig
from attn_env.estimates import Estimate, difference
from attn_env.market_log import summarize
from attn_market.cli import main
from runner.simulate import play


def _config(seed: int = 0, kind: str = "truthful", **env) -> ExperimentConfig:
    return ExperimentConfig(
        seed=seed, env=EnvConfig(**env), agents={"buyer": AgentSpec(kind=kind)}
    )


def test_mean_se_is_numpy_std_over_sqrt_e():
    x = np.random.default_rng(0).exponential(size=500)
    est = Estimate.mean(x)
    assert est.value == pytest.approx(x.mean())
    assert est.se == pytest.approx(x.std(ddof=1) / math.sqrt(x.size), rel=1e-12)


def test_ratio_se_is_the_delta_method_and_matches_replications():
    # sum(num) / sum(den) over E episodes; its spread over 400 independent
    # replications is what the one-run standard error must predict
    rng = np.random.default_rng(1)
    values, ses = [], []
    for _ in range(400):
        den = rng.uniform(0.5, 1.5, 200)
        num = 0.7 * den + rng.normal(0, 0.2, 200)
        est = Estimate.ratio(num, den)
        values.append(est.value)
        ses.append(est.se)
    assert np.std(values, ddof=1) / np.mean(ses) == pytest.approx(1.0, abs=0.1)


def test_ratio_of_nothing_is_nan():
    est = Estimate.ratio(np.zeros(3), np.zeros(3))
    assert math.isnan(est.value) and math.isnan(est.se)
    assert math.isnan(Estimate.mean([1.0]).se)  # one episode: no spread to measure


def test_difference_paired_and_welch_by_hand():
    rng = np.random.default_rng(2)
    common = rng.normal(size=1000)
    a = Estimate.mean(common + rng.normal(0, 0.1, 1000))
    b = Estimate.mean(common + 0.5 + rng.normal(0, 0.1, 1000))
    paired, welch = difference(a, b, True), difference(a, b, False)
    assert paired.diff == welch.diff == pytest.approx(a.value - b.value)
    assert paired.se == pytest.approx(
        np.std(a.influence - b.influence, ddof=1) / math.sqrt(1000)
    )
    assert welch.se == pytest.approx(math.hypot(a.se, b.se))
    assert paired.se < welch.se / 5  # the shared noise cancels
    assert paired.ci_high - paired.ci_low == pytest.approx(
        2 * 1.96234 * paired.se, rel=1e-5
    )
    assert paired.df == 999 and 999 < welch.df <= 1998
    with pytest.raises(ValueError, match="confidence must be in"):
        difference(a, b, True, confidence=1.5)
    with pytest.raises(ValueError, match="same episodes"):
        difference(a, Estimate.mean([1.0, 2.0]), True)


def test_intervals_cover_the_true_difference_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    hits = {True: 0, False: 0}
    for _ in range(1000):
        common = rng.exponential(size=40)
        a = Estimate.mean(common + rng.normal(0, 0.3, 40))
        b = Estimate.mean(common + 0.2 + rng.normal(0, 0.3, 40))
        for paired in hits:
            d = difference(a, b, paired)
            hits[paired] += d.ci_low < -0.2 < d.ci_high
    assert 930 <= hits[True] <= 970  # t interval, 39 df: exact for normal noise
    assert hits[False] >= 990  # Welch ignores the shared noise: conservative


def test_second_price_revenue_se_closed_form():
    # n = 2 truthful, U[0,1]: revenue = min(v1, v2) ~ Beta(1, 2), variance 1/18
    episodes = 20_000
    res = play(_config(mechanism="second_price"), episodes=episodes, progress=False)
    assert res["revenue_se"] == pytest.approx(math.sqrt(1 / 18 / episodes), rel=0.03)
    # the winner pays the loser's value: price per unit is the same figure
    assert res["mean_price_se"] == pytest.approx(res["revenue_se"])
    assert res["efficiency_se"] == 0.0  # the efficient buyer always wins
    # each buyer's utility: (v_i - v_j)^+, mean 1/6, variance 1/12 - 1/36 = 1/18
    for se in res["mean_utility_se"].values():
        assert se == pytest.approx(math.sqrt(1 / 18 / episodes), rel=0.03)


def test_se_shrinks_like_one_over_sqrt_episodes():
    cfg = _config(mechanism="gsp", n_buyers=4, n_slots=3)
    small = play(cfg, episodes=2_000, progress=False)
    large = play(cfg, episodes=32_000, progress=False)
    for key in ("revenue", "welfare", "mean_price", "walrasian_distance"):
        assert small[f"{key}_se"] / large[f"{key}_se"] == pytest.approx(4.0, rel=0.1)


def test_se_counts_episodes_not_rounds():
    # values held for 4 rounds: the episode's revenue is 4 min(v1, v2), so its
    # error is sqrt(16 / 18 / E), twice what 4E independent rounds would give
    episodes = 10_000
    cfg = _config(mechanism="second_price", rounds=4, redraw="episode")
    res = play(cfg, episodes=episodes, progress=False)
    assert res["revenue"] == pytest.approx(4 / 3, abs=0.03)
    assert res["revenue_se"] == pytest.approx(math.sqrt(16 / 18 / episodes), rel=0.03)
    # the price per unit: min(v1, v2) per round, one draw per episode
    assert res["mean_price_se"] == pytest.approx(math.sqrt(1 / 18 / episodes), rel=0.03)


def test_efficiency_se_matches_spread_over_seeds():
    # second price with reserve 1/2: no sale below it, efficiency 7/8 in
    # expectation; its ratio-estimator error predicts the spread over 30 seeds
    effs, ses = [], []
    for seed in range(30):
        cfg = _config(
            seed=seed, mechanism="second_price", mechanism_params={"reserve": 0.5}
        )
        res = play(cfg, episodes=500, progress=False)
        effs.append(res["efficiency"])
        ses.append(res["efficiency_se"])
    assert np.mean(effs) == pytest.approx(7 / 8, abs=3 * np.mean(ses) / np.sqrt(30))
    assert np.std(effs, ddof=1) / np.mean(ses) == pytest.approx(1.0, abs=0.3)


def test_summarize_se_by_hand():
    # 3 episodes x 2 rounds of one-buyer markets: revenue per episode is the sum
    # of the two rounds' payments
    pay = np.array([[0.2, 0.4], [0.1, 0.1], [0.5, 0.3]])
    E, T = pay.shape
    value = np.full((E, T, 1), 1.0)
    rec = {
        "value": value,
        "bid": value,
        "alloc": np.ones((E, T, 1)),
        "payment": pay[:, :, None],
        "utility": 1.0 - pay[:, :, None],
        "active": np.ones((E, T, 1)),
        "clearing_price": pay,
        "alpha": np.ones((E, T, 1)),
    }
    res = summarize(rec, ["buyer_0"], 1, "one_sided")
    per_episode = pay.sum(axis=1)
    assert res["revenue_se"] == pytest.approx(per_episode.std(ddof=1) / math.sqrt(E))
    assert res["mean_utility_se"]["buyer_0"] == pytest.approx(res["revenue_se"])
    # clearing price: a mean over every traded round, its error from the
    # per-episode price sums (two trades each)
    assert res["mean_clearing_price_se"] == pytest.approx(
        (per_episode / 2).std(ddof=1) / math.sqrt(E)
    )


def test_simulate_json_keeps_keys_and_adds_se(capsys):
    code = main(
        ["simulate", "configs/vcg.yaml", "--json", "--episodes", "50", "--seed", "3"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("efficiency", "welfare", "revenue", "budget_surplus", "mean_price"):
        assert isinstance(data[key], float) and data[f"{key}_se"] >= 0.0
    assert data["mean_utility_se"].keys() == data["mean_utility"].keys()
    assert data["exposure_share_se"].keys() == data["exposure_share"].keys()
    assert "price_std_se" not in data  # a spread, not a mean


def test_simulate_one_episode_se_is_null(capsys):
    main(["simulate", "configs/vcg.yaml", "--json", "--episodes", "1"])
    data = json.loads(capsys.readouterr().out)
    assert data["revenue"] is not None and data["revenue_se"] is None


def test_simulate_table_shows_mean_plus_minus_se(capsys):
    main(["simulate", "configs/second_price.yaml", "--episodes", "200"])
    out = capsys.readouterr().out
    assert "±" in out and "value ± se" in out


def test_interval_of_a_mean_is_the_student_t_interval():
    x = np.array([0.2, 0.5, 0.9, 0.4])
    low, high = Estimate.mean(x).interval(0.9)
    se = x.std(ddof=1) / math.sqrt(4)
    half = 2.3533634 * se  # t(3) at 0.95, from the table
    assert low == pytest.approx(x.mean() - half, rel=1e-6)
    assert high == pytest.approx(x.mean() + half, rel=1e-6)
    assert all(math.isnan(v) for v in Estimate.mean([0.3]).interval())
    with pytest.raises(ValueError, match="confidence must be in"):
        Estimate.mean(x).interval(1.0)


def test_collusion_confidence_interval_is_the_estimate_interval():
    from runner.collusion import confidence_interval

    x = np.array([0.1, 0.3, 0.35, 0.2, 0.5])
    ci = confidence_interval(x)
    assert ci["mean"] == pytest.approx(x.mean())
    assert ci["se"] == pytest.approx(x.std(ddof=1) / math.sqrt(5))
    assert ci["ci"] == pytest.approx(list(Estimate.mean(x).interval(0.95)))


def test_evaluate_table_is_metric_value_plus_minus_se(capsys):
    from attn_market.commands.training import _print, _rows

    result = play(
        _config(n_buyers=3, mechanism="second_price"), episodes=200, progress=False
    )
    result = {**result, "bne_l2": 0.0123, "bne_l2_all": 0.2, "reference": "analytic"}
    rows = dict(_rows(result))
    assert not any(m.endswith("_se") for m in rows)  # folded into their metric
    assert rows["revenue"] == f"{result['revenue']:.4f} ± {result['revenue_se']:.4f}"
    name = next(iter(result["mean_utility"]))
    u, se = result["mean_utility"][name], result["mean_utility_se"][name]
    assert f"{name}={u:.4f} ± {se:.4f}" in rows["mean_utility"]
    # the two distances are named so they cannot be confused
    assert rows["bne_l2 (bids that can matter)"] == "0.0123"
    assert rows["bne_l2_all (whole value range)"] == "0.2000"
    assert list(rows)[:3] == [
        "bne_l2 (bids that can matter)",
        "bne_l2_all (whole value range)",
        "reference",
    ]
    _print(result)
    out = capsys.readouterr().out
    assert "value ± se" in out and "revenue_se" not in out
