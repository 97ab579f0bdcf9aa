"""Loading experiment configs: typed sections, and errors that name the bad key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from attn_env.config import (
    AgentSpec,
    ConfigError,
    EnvConfig,
    ExperimentConfig,
    TrainConfig,
    from_dict,
    load_config,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_contract_example_loads_into_typed_sections(tmp_path):
    path = _write(
        tmp_path,
        """
seed: 3
env: {mechanism: cda, n_buyers: 10, n_sellers: 10, valuation: uniform, rounds: 1}
agents:
  buyer: {kind: zi_c}
  seller: {kind: zi_c}
  seller_3: {kind: truthful}
episodes: 2000
train: {algo: ppo, total_timesteps: 200000, share: role}
""",
    )
    cfg = load_config(path)
    assert isinstance(cfg.env, EnvConfig) and isinstance(cfg.train, TrainConfig)
    assert (cfg.seed, cfg.episodes, cfg.env.n_sellers) == (3, 2000, 10)
    assert cfg.train.total_timesteps == 200_000
    assert cfg.agents["buyer"] == AgentSpec(kind="zi_c")
    # by name beats by role; an unnamed role defaults to truthful
    assert cfg.agent_spec("seller_3").kind == "truthful"
    assert cfg.agent_spec("seller_0").kind == "zi_c"
    assert cfg.agent_spec("buyer_9").kind == "zi_c"
    assert ExperimentConfig().agent_spec("buyer_0") == AgentSpec()


def test_empty_file_gives_defaults_and_says_so(tmp_path):
    with pytest.warns(UserWarning, match="sets nothing"):
        assert load_config(_write(tmp_path, "")) == ExperimentConfig()


def test_round_trip_through_to_dict():
    cfg = ExperimentConfig(
        seed=5,
        env=EnvConfig(mechanism="gsp", n_buyers=4, n_slots=3, budget=2.0),
        agents={"buyer": AgentSpec(kind="shading", params={"shade": 0.7})},
    )
    assert from_dict(ExperimentConfig, cfg.to_dict()) == cfg


def test_numbers_are_coerced_only_where_safe(tmp_path):
    cfg = load_config(_write(tmp_path, "env: {value_high: 2, budget: 3}\n"))
    assert cfg.env.value_high == 2.0 and isinstance(cfg.env.value_high, float)
    assert cfg.env.budget == 3.0
    assert load_config(_write(tmp_path, "env: {budget: null}\n")).env.budget is None


@pytest.mark.parametrize(
    "text, names",
    [
        ("env: {mechanism: cda, n_buyer: 3}\n", ["n_buyer", "n_buyers"]),
        ("sede: 1\n", ["sede", "seed"]),
        ("agents: {buyer: {kind: zi_c, param: {}}}\n", ["param", "params"]),
        ("train: {algo: ppo, total_steps: 10}\n", ["total_steps", "total_timesteps"]),
    ],
)
def test_unknown_key_is_named_with_the_known_ones(tmp_path, text, names):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    msg = str(err.value)
    assert "unknown key" in msg
    for name in names:
        assert name in msg


@pytest.mark.parametrize(
    "text, where",
    [
        ("env: {n_buyers: three}\n", "exp.yaml.env.n_buyers"),
        ("env: {n_buyers: 2.5}\n", "exp.yaml.env.n_buyers"),
        ("env: {n_buyers: true}\n", "exp.yaml.env.n_buyers"),
        ("seed: [1]\n", "exp.yaml.seed"),
        ("env: {budget: lots}\n", "exp.yaml.env.budget"),
        ("env: {mechanism_params: [1, 2]}\n", "exp.yaml.env.mechanism_params"),
        ("agents: {buyer: truthful}\n", "exp.yaml.agents.buyer"),
        ("train: {net_arch: [64, wide]}\n", "exp.yaml.train.net_arch[1]"),
        ("env: 3\n", "exp.yaml.env"),
    ],
)
def test_wrong_type_names_the_key_path(tmp_path, text, where):
    with pytest.raises(ConfigError, match="^" + re.escape(where)):
        load_config(_write(tmp_path, text))


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(_write(tmp_path, "- seed\n- env\n"))


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml.*does not exist"):
        load_config(missing)


def test_config_error_is_a_value_error():
    # the CLI reports ValueErrors as a one-line message and exit code 2
    assert issubclass(ConfigError, ValueError)


def test_sections_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        EnvConfig().n_buyers = 3  # type: ignore[misc]


# --- mechanism_params against what the mechanism declares ---------------------


@pytest.fixture
def fee_mechanism():
    """A user's mechanism declaring a float ``fee``, an int ``rounds_kept`` and a
    flag ``strict`` (``Mechanism.params``), registered for the test only."""
    from typing import ClassVar

    from attn_env import mechanisms
    from attn_env.mechanisms.position import FirstPrice

    class FeeFirstPrice(FirstPrice):
        name = "fee_first_price"
        params: ClassVar[dict] = {
            **FirstPrice.params,
            "fee": 0.1,
            "rounds_kept": 3,
            "strict": False,
        }

    mechanisms.register("fee_first_price", FeeFirstPrice)
    yield FeeFirstPrice
    mechanisms._REGISTRY.pop("fee_first_price", None)


def test_mechanism_parameters_are_read_from_the_class(fee_mechanism):
    from attn_env.config import mechanism_parameters

    assert mechanism_parameters("fee_first_price") == {
        "reserve": 0.0,
        "seed": None,
        "n_slots": 1,
        "fee": 0.1,
        "rounds_kept": 3,
        "strict": False,
    }
    assert list(mechanism_parameters("k_double")) == ["reserve", "seed", "k"]
    assert list(mechanism_parameters("cda")) == ["reserve", "seed"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"fees": 0.2}, "unknown parameter(s) 'fees'"),
        ({"fee": "high"}, "mechanism_params.fee"),
        ({"fee": True}, "true/false is not a number"),
        ({"fee": 10**400}, "mechanism_params.fee"),
        ({"rounds_kept": 2.5}, "mechanism_params.rounds_kept must be an integer"),
        ({"strict": 1}, "mechanism_params.strict must be true or false"),
        ({"reserve": 1e13}, "mechanism_params.reserve"),
        ({"reserve": -0.1}, "mechanism_params.reserve"),
        ({"n_slots": 0}, "mechanism_params.n_slots"),
        ({"seed": -1}, "mechanism_params.seed"),
    ],
)
def test_mechanism_params_are_checked_at_load(tmp_path, fee_mechanism, params, named):
    import yaml

    text = yaml.safe_dump(
        {"env": {"mechanism": "fee_first_price", "mechanism_params": params}}
    )
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert named in str(err.value)


def test_accepted_mechanism_params_reach_the_mechanism(tmp_path, fee_mechanism):
    from attn_env.mechanisms import make

    text = (
        "env: {mechanism: fee_first_price, "
        "mechanism_params: {fee: 2e-1, rounds_kept: 5, strict: true, reserve: 0.3}}\n"
    )
    cfg = load_config(_write(tmp_path, text))
    m = make(cfg.env.mechanism, **cfg.env.mechanism_params)
    assert (m.fee, m.rounds_kept, m.strict, m.reserve) == (0.2, 5, True, 0.3)
