"""Every user error ends in one line and exit code 2, never a traceback.

A table of malformed configs, arguments and files goes through
``attn_market.cli.main`` in-process. Each must exit 2 with exactly one line on
stderr, ``attn-market <command>: error: ...``, that names the culprit (the bad
key, value or path). Nothing trains for real: ``Trainer.run`` is replaced by a
tripwire, so a train error must be caught before training starts.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from attn_market.cli import main

SIM: dict[str, Any] = {
    "seed": 0,
    "env": {"mechanism": "first_price", "n_buyers": 2},
    "episodes": 2,
}
TWO_SIDED: dict[str, Any] = {
    "seed": 0,
    "env": {"mechanism": "cda", "n_buyers": 2, "n_sellers": 2},
    "episodes": 2,
}
LEARN: dict[str, Any] = {
    "seed": 0,
    "env": {"mechanism": "first_price", "n_buyers": 2, "action": "shade"},
    "agents": {"buyer": {"kind": "learn"}},
    "episodes": 2,
    "train": {"total_timesteps": 64, "num_envs": 2, "n_steps": 8, "batch_size": 16},
}
DELETE = object()


def _patched(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with dotted keys of ``patch`` set (``DELETE`` removes one)."""
    out = copy.deepcopy(base)
    for dotted, value in patch.items():
        *parents, last = dotted.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return out


@dataclass
class Case:
    id: str
    argv: list[str]
    "``{cfg}`` is the config file written from ``config``/``text``; ``{tmp}`` a folder."
    culprit: str
    """A substring the error line must contain (case-insensitive): the bad key,
    value or file name, long and specific enough not to match by accident."""
    config: dict[str, Any] | None = None
    text: str | bytes | None = None
    files: dict[str, Any] = field(default_factory=dict)
    "Extra paths under ``{tmp}``: str/bytes (a file), dict/list (JSON), None (a dir)."


def _sim(id: str, patch: dict[str, Any], culprit: str, base=SIM) -> Case:
    return Case(id, ["simulate", "{cfg}"], culprit, config=_patched(base, patch))


def _train(id: str, patch: dict[str, Any], culprit: str, base=LEARN) -> Case:
    argv = ["train", "{cfg}", "--out", "{tmp}/run", "--no-progress"]
    return Case(id, argv, culprit, config=_patched(base, patch))


CASES: list[Case] = []

# --- malformed files ------------------------------------------------------------
CASES += [
    Case("yaml-syntax", ["simulate", "{cfg}"], "c.yaml", text="env: {mechanism: [\n"),
    Case("yaml-bad-indent", ["simulate", "{cfg}"], "c.yaml", text="a: 1\n b: 2\n"),
    Case("yaml-tab", ["simulate", "{cfg}"], "c.yaml", text="env:\n\tn_buyers: 2\n"),
    Case("yaml-unclosed-quote", ["simulate", "{cfg}"], "c.yaml", text='seed: "0\n'),
    Case("yaml-list", ["simulate", "{cfg}"], "31337", text="- 31337\n- 2\n"),
    Case("yaml-scalar", ["simulate", "{cfg}"], "424242", text="424242\n"),
    Case("yaml-string", ["simulate", "{cfg}"], "hello", text="hello\n"),
    Case("yaml-binary", ["simulate", "{cfg}"], "c.yaml", text=b"\xff\xfe\x00\x01"),
    Case(
        "yaml-python-tag",
        ["simulate", "{cfg}"],
        "python/name:os.system",
        text="a: !!python/name:os.system\n",
    ),
    Case(
        "yaml-anchor-undefined",
        ["simulate", "{cfg}"],
        "missing_anchor",
        text="a: *missing_anchor\n",
    ),
    Case("config-missing", ["simulate", "{tmp}/nope.yaml"], "nope.yaml"),
    Case(
        "config-is-dir",
        ["simulate", "{tmp}/confdir"],
        "confdir",
        files={"confdir": None},
    ),
    Case(
        "train-yaml-syntax",
        ["train", "{cfg}", "--out", "{tmp}/r"],
        "c.yaml",
        text="x: [",
    ),
    Case(
        "train-config-missing",
        ["train", "{tmp}/no.yaml", "--out", "{tmp}/r"],
        "no.yaml",
    ),
    Case(
        "evaluate-config-missing",
        ["evaluate", "{tmp}/no.yaml", "--policy", "{tmp}"],
        "no.yaml",
    ),
    Case(
        "evaluate-yaml-list",
        ["evaluate", "{cfg}", "--policy", "{tmp}"],
        "27182",
        text="[27182]",
    ),
    Case("build-config-missing", ["valuations", "build", "{tmp}/no.yaml"], "no.yaml"),
    Case(
        "validate-config-missing",
        ["valuations", "validate", "{tmp}/no.yaml"],
        "no.yaml",
    ),
    Case(
        "show-config-missing",
        ["valuations", "show", "--query", "q", "--config", "{tmp}/no.yaml"],
        "no.yaml",
    ),
    Case(
        "build-yaml-scalar", ["valuations", "build", "{cfg}"], "31415", text="31415\n"
    ),
]

# --- top level ------------------------------------------------------------------
CASES += [
    _sim("top-unknown", {"epsiodes": 3}, "epsiodes"),
    _sim("top-unknown-2", {"mechanism": "gsp"}, "mechanism"),
    _sim("seed-str", {"seed": "notanumber"}, "notanumber"),
    _sim("seed-float", {"seed": 2.71828}, "2.71828"),
    _sim("seed-negative", {"seed": -31337}, "-31337"),
    _sim("seed-bool", {"seed": True}, "c.yaml.seed"),
    _sim("episodes-zero", {"episodes": 0}, "episodes"),
    _sim("episodes-negative", {"episodes": -5}, "episodes"),
    _sim("episodes-str", {"episodes": "many"}, "episodes"),
    _sim("episodes-float", {"episodes": 2.5}, "episodes"),
    _sim("env-list", {"env": [1, 2]}, "c.yaml.env"),
    _sim("env-str", {"env": "double_auction"}, "double_auction"),
    _sim("train-str", {"train": "ppo"}, "c.yaml.train"),
    _sim("agents-list", {"agents": ["buyer"]}, "c.yaml.agents"),
    _sim("agents-str", {"agents": "zi_c"}, "c.yaml.agents"),
]

# --- env options ----------------------------------------------------------------
ENV_BAD: list[tuple[str, Any, str]] = [
    ("mechanism", "gsp_typo", "gsp_typo"),
    ("mechanism", 3, "mechanism"),
    ("mechanism", ["gsp"], "mechanism"),
    ("mechanism", None, "mechanism"),
    ("mechanism_params", [1], "mechanism_params"),
    ("mechanism_params", {"bogus_param": 1}, "bogus_param"),
    ("mechanism_params", {"reserve": -1}, "reserve"),
    ("mechanism_params", {"reserve": "low"}, "reserve"),
    ("n_buyers", 0, "n_buyers"),
    ("n_buyers", -1, "n_buyers"),
    ("n_buyers", 1.5, "n_buyers"),
    ("n_buyers", "two", "n_buyers"),
    ("n_buyers", True, "n_buyers"),
    ("n_buyers", None, "n_buyers"),
    ("n_sellers", -1, "n_sellers"),
    ("n_sellers", 2, "n_sellers"),
    ("n_sellers", "x", "n_sellers"),
    ("n_slots", 0, "n_slots"),
    ("n_slots", -2, "n_slots"),
    ("n_slots", 1.0, "n_slots"),
    ("valuation", "unifrom", "unifrom"),
    ("valuation", 1, "c.yaml.env.valuation"),
    ("valuation_params", "abc", "valuation_params"),
    ("valuation_params", {"alpha": [0.5, 0.3]}, "alpha"),
    ("valuation_params", {"bogus_option": 1}, "bogus_option"),
    ("valuation_params", {"dist": "beta"}, "'dist'"),
    ("value_dist", "normal", "normal"),
    ("value_dist", 3, "value_dist"),
    ("value_low", -1, "value_low"),
    ("value_low", 2.0, "value_low"),
    ("value_low", "abc", "value_low"),
    ("value_high", 0.0, "value_high"),
    ("value_high", 1e39, "value_high"),
    ("value_high", float("inf"), "value_high"),
    ("value_high", float("nan"), "value_high"),
    ("value_high", "1e400", "value_high"),
    ("value_high", "high", "value_high"),
    ("value_high", [1], "value_high"),
    ("cost_low", -0.5, "cost_low"),
    ("cost_high", -1, "cost_high"),
    ("cost_high", 1e39, "cost_high"),
    ("rounds", 0, "rounds"),
    ("rounds", -1, "rounds"),
    ("rounds", 2.5, "rounds"),
    ("redraw", "never", "redraw"),
    ("redraw", 1, "redraw"),
    ("budget", -1, "budget"),
    ("budget", "lots", "budget"),
    ("budget", float("inf"), "budget"),
    ("budget", 1e39, "budget"),
    ("history", -1, "history"),
    ("history", 1_000_000_000, "history"),
    ("history", 10_001, "history"),
    ("history", 1.5, "history"),
    ("max_bid", 0, "max_bid"),
    ("max_bid", -1, "max_bid"),
    ("max_bid", float("inf"), "max_bid"),
    ("max_bid", 1e39, "max_bid"),
    ("max_bid", "top", "max_bid"),
    ("n_bidders", 2, "n_bidders"),
    ("Mechanism", "gsp", "Mechanism"),
]
CASES += [
    _sim(f"env-{key}-{i}", {f"env.{key}": value}, culprit)
    for i, (key, value, culprit) in enumerate(ENV_BAD)
]
CASES += [
    _sim("two-sided-n_slots", {"env.n_slots": 3}, "n_slots", base=TWO_SIDED),
    _sim("two-sided-n_slots-0", {"env.n_slots": 0}, "n_slots", base=TWO_SIDED),
    _sim("two-sided-cost-order", {"env.cost_low": 1.0}, "cost_low", base=TWO_SIDED),
    _sim(
        "two-sided-seller-typo",
        {"agents": {"sellers": {"kind": "zi_c"}}},
        "sellers",
        base=TWO_SIDED,
    ),
    _sim(
        "two-sided-seller-range",
        {"agents": {"seller_2": {"kind": "zi_c"}}},
        "seller_2",
        base=TWO_SIDED,
    ),
    _sim(
        "gsp-reserve",
        {"env.mechanism": "gsp", "env.mechanism_params": {"reserve": -2}},
        "reserve",
    ),
    _sim(
        "gsp-quality-str",
        {"env.mechanism": "gsp", "env.mechanism_params": {"quality": "x"}},
        "quality",
    ),
    _sim(
        "k_double-k",
        {"env.mechanism_params": {"k": 1.0625}},
        "1.0625",
        base=TWO_SIDED | {"env": {"mechanism": "k_double", "n_buyers": 2}},
    ),
    _sim(
        "attention-bank-setting",
        {"env.valuation": "attention", "env.valuation_params": {"layerz": [1]}},
        "layerz",
    ),
    _sim(
        "attention-relevance",
        {"env.valuation": "attention", "env.valuation_params": {"relevance": "cubic"}},
        "relevance",
    ),
    _sim(
        "attention-build",
        {"env.valuation": "attention", "env.valuation_params": {"build": "maybe"}},
        "build",
    ),
]

# --- agents ---------------------------------------------------------------------
AGENTS_BAD: list[tuple[str, Any, str]] = [
    ("role-plural", {"buyers": {"kind": "zi_c"}}, "buyers"),
    ("role-typo", {"buyeer": {"kind": "zi_c"}}, "buyeer"),
    ("role-caps", {"Buyer": {"kind": "zi_c"}}, "Buyer"),
    ("name-out-of-range", {"buyer_2": {"kind": "zi_c"}}, "buyer_2"),
    ("name-bad-index", {"buyer_x": {"kind": "zi_c"}}, "buyer_x"),
    ("seller-in-one-sided-name", {"seller_0": {"kind": "zi_c"}}, "seller_0"),
    ("kind-unknown", {"buyer": {"kind": "zicee"}}, "zicee"),
    ("kind-int", {"buyer": {"kind": 31337}}, "31337"),
    ("kind-null", {"buyer": {"kind": None}}, "c.yaml.agents.buyer.kind"),
    ("spec-str", {"buyer": "zero_intel"}, "zero_intel"),
    ("spec-list", {"buyer": ["zero_intel"]}, "zero_intel"),
    ("spec-unknown-key", {"buyer": {"kindd": "zi_c"}}, "kindd"),
    (
        "spec-unknown-key-2",
        {"buyer": {"kind": "zi_c", "parameters": {}}},
        "parameters",
    ),
    ("params-list", {"buyer": {"kind": "zi_c", "params": [1]}}, "params"),
    (
        "params-unknown",
        {"buyer": {"kind": "zi_c", "params": {"bogus_param": 1}}},
        "bogus_param",
    ),
    (
        "params-shading-unknown",
        {"buyer": {"kind": "shading", "params": {"shade_factor": 0.5}}},
        "shade_factor",
    ),
    ("params-gd-unknown", {"buyer": {"kind": "gd", "params": {"memry": 3}}}, "memry"),
    (
        "params-pacing-update",
        {"buyer": {"kind": "pacing", "params": {"update": "additive"}}},
        "additive",
    ),
    (
        "params-truthful",
        {"buyer": {"kind": "truthful", "params": {"bogus_param": 1}}},
        "bogus_param",
    ),
    ("policy-no-path", {"buyer": {"kind": "policy"}}, "path: RUN_DIR"),
    (
        "policy-missing-path",
        {"buyer": {"kind": "policy", "params": {"path": "/nonexistent/run"}}},
        "/nonexistent/run",
    ),
    (
        "policy-extra",
        {"buyer": {"kind": "policy", "params": {"path": "x", "bogus_param": 1}}},
        "bogus_param",
    ),
    ("learn-in-simulate", {"buyer": {"kind": "learn"}}, "learn"),
]
CASES += [
    _sim(f"agents-{id}", {"agents": value}, culprit)
    for id, value, culprit in AGENTS_BAD
]

# --- train section (through `train`) --------------------------------------------
TRAIN_BAD: list[tuple[str, Any, str]] = [
    ("algoo", "ppo", "algoo"),
    ("algo", "rainbow", "rainbow"),
    ("algo", 1, "c.yaml.train.algo"),
    ("share", "everyone", "everyone"),
    ("squash", "softsign", "softsign"),
    ("action", "shade", "env.action"),
    ("total_timesteps", 0, "total_timesteps"),
    ("total_timesteps", -1, "total_timesteps"),
    ("total_timesteps", 1.5, "total_timesteps"),
    ("num_envs", 0, "num_envs"),
    ("n_steps", 0, "n_steps"),
    ("batch_size", 0, "batch_size"),
    ("batch_size", -1, "batch_size"),
    ("batch_size", "big", "batch_size"),
    ("checkpoint_every", 0, "checkpoint_every"),
    ("alternate_every", 0, "alternate_every"),
    ("threads", 0, "threads"),
    ("self_play_pool", -1, "self_play_pool"),
    ("gamma", 1.5, "gamma"),
    ("gamma", -0.1, "gamma"),
    ("gamma", "nan", "gamma"),
    ("learning_rate", 0, "learning_rate"),
    ("learning_rate", -1e-3, "learning_rate"),
    ("learning_rate", "fast", "learning_rate"),
    ("learning_rate", float("inf"), "learning_rate"),
    ("net_arch", [-1], "net_arch"),
    ("net_arch", [], "net_arch"),
    ("net_arch", [0], "net_arch"),
    ("net_arch", [64, -64], "net_arch"),
    ("net_arch", "64", "net_arch"),
    ("net_arch", [64.5], "net_arch"),
    ("net_arch", [10**7], "net_arch"),
    ("device", "tpu_v4", "tpu_v4"),
    ("device", "cuda:x", "cuda:x"),
    ("device", 5, "c.yaml.train.device"),
    ("device", "", "train.device"),
    ("algo_params", {"bogus_kwarg": 1}, "bogus_kwarg"),
    ("algo_params", {"n_epochs": "ten"}, "n_epochs"),
    ("algo_params", {"clip_range": "wide"}, "clip_range"),
    ("algo_params", {"ent_coef": [1]}, "ent_coef"),
    ("algo_params", {"env": "x"}, "algo_params.env"),
    ("algo_params", {"policy": "CnnPolicy"}, "algo_params.policy"),
    ("algo_params", [1], "algo_params"),
    ("algo_params", "fast", "algo_params"),
    ("algo_params", {"learning_starts": 10}, "learning_starts"),
]
CASES += [
    _train(f"train-{key}-{i}", {f"train.{key}": value}, culprit)
    for i, (key, value, culprit) in enumerate(TRAIN_BAD)
]
CASES += [
    _train(
        "train-sac-n_epochs",
        {"train.algo": "sac", "train.algo_params": {"n_epochs": 5}},
        "n_epochs",
    ),
    _train("train-no-learner", {"agents": {"buyer": {"kind": "truthful"}}}, "learn"),
    _train("train-role-typo", {"agents": {"buyers": {"kind": "learn"}}}, "buyers"),
    _train(
        "train-fixed-kind-typo",
        {"agents": {"buyer_0": {"kind": "learn"}, "buyer_1": {"kind": "zicee"}}},
        "zicee",
    ),
    _train("train-env-bad", {"env.n_buyers": 0}, "n_buyers"),
    _train("train-history-huge", {"env.history": 10**9}, "history"),
    Case(
        "train-out-under-file",
        ["train", "{cfg}", "--out", "{tmp}/plainfile/run"],
        "plainfile",
        config=LEARN,
        files={"plainfile": "x"},
    ),
    Case(
        "train-out-is-file",
        ["train", "{cfg}", "--out", "{tmp}/plainfile"],
        "plainfile",
        config=LEARN,
        files={"plainfile": "x"},
    ),
    Case(
        "train-resume-empty",
        ["train", "{cfg}", "--out", "{tmp}/empty", "--resume"],
        "empty",
        config=LEARN,
        files={"empty": None},
    ),
    Case(
        "train-timesteps-0",
        ["train", "{cfg}", "--out", "{tmp}/r", "--timesteps", "0"],
        "timesteps",
        config=LEARN,
    ),
    Case(
        "train-timesteps-neg",
        ["train", "{cfg}", "--out", "{tmp}/r", "--timesteps", "-5"],
        "timesteps",
        config=LEARN,
    ),
    Case(
        "train-seed-neg",
        ["train", "{cfg}", "--out", "{tmp}/r", "--seed", "-31337"],
        "-31337",
        config=LEARN,
    ),
]

# --- simulate arguments ---------------------------------------------------------
CASES += [
    Case(
        "sim-episodes-0",
        ["simulate", "{cfg}", "--episodes", "0"],
        "episodes",
        config=SIM,
    ),
    Case(
        "sim-episodes-neg",
        ["simulate", "{cfg}", "--episodes", "-3"],
        "episodes",
        config=SIM,
    ),
    Case(
        "sim-num-envs-0",
        ["simulate", "{cfg}", "--num-envs", "0"],
        "num_envs",
        config=SIM,
    ),
    Case(
        "sim-num-envs-neg",
        ["simulate", "{cfg}", "--num-envs", "-1"],
        "num_envs",
        config=SIM,
    ),
    Case(
        "sim-seed-neg",
        ["simulate", "{cfg}", "--seed", "-31337"],
        "-31337",
        config=SIM,
    ),
    Case(
        "sim-plot-missing-dir",
        ["simulate", "{cfg}", "--plot", "{tmp}/no/p.png"],
        "no/p.png",
        config=SIM,
    ),
    Case(
        "sim-plot-onto-dir",
        ["simulate", "{cfg}", "--plot", "{tmp}/plotdir"],
        "plotdir",
        config=SIM,
        files={"plotdir": None},
    ),
    Case(
        "sim-plot-under-file",
        ["simulate", "{cfg}", "--plot", "{tmp}/f/p.png"],
        "f/p.png",
        config=SIM,
        files={"f": "x"},
    ),
]

# --- evaluate: arguments and run folders ----------------------------------------
_EVAL = ["evaluate", "{cfg}", "--policy"]
CASES += [
    Case(
        "eval-samples-0", [*_EVAL, "{tmp}/run", "--samples", "0"], "samples", config=SIM
    ),
    Case(
        "eval-samples-neg",
        [*_EVAL, "{tmp}/run", "--samples", "-1"],
        "samples",
        config=SIM,
    ),
    Case(
        "eval-episodes-0",
        [*_EVAL, "{tmp}/run", "--episodes", "0"],
        "episodes",
        config=SIM,
    ),
    Case(
        "eval-policy-missing",
        [*_EVAL, "{tmp}/no_such_run"],
        "no_such_run",
        config=SIM,
    ),
    Case(
        "eval-policy-no-manifest",
        [*_EVAL, "{tmp}/bare_run"],
        "bare_run",
        config=SIM,
        files={"bare_run": None},
    ),
    Case(
        "eval-policy-is-file",
        [*_EVAL, "{tmp}/plainfile"],
        "plainfile",
        config=SIM,
        files={"plainfile": "x"},
    ),
    Case(
        "eval-manifest-list",
        [*_EVAL, "{tmp}/run"],
        "manifest.json",
        config=SIM,
        files={"run": None, "run/manifest.json": [1, 2]},
    ),
    Case(
        "eval-manifest-str",
        [*_EVAL, "{tmp}/run"],
        "manifest.json",
        config=SIM,
        files={"run": None, "run/manifest.json": "not json{"},
    ),
    Case(
        "eval-manifest-empty",
        [*_EVAL, "{tmp}/run"],
        "manifest.json",
        config=SIM,
        files={"run": None, "run/manifest.json": ""},
    ),
    Case(
        "eval-manifest-binary",
        [*_EVAL, "{tmp}/run"],
        "manifest.json",
        config=SIM,
        files={"run": None, "run/manifest.json": b"\xff\xfe"},
    ),
    Case(
        "eval-manifest-no-format",
        [*_EVAL, "{tmp}/run"],
        "manifest.json",
        config=SIM,
        files={"run": None, "run/manifest.json": {}},
    ),
    Case(
        "eval-manifest-is-dir",
        [*_EVAL, "{tmp}/run"],
        "manifest.json",
        config=SIM,
        files={"run": None, "run/manifest.json": None},
    ),
    Case(
        "eval-plot-missing-dir",
        [*_EVAL, "{tmp}/run", "--plot", "{tmp}/no/p.png"],
        "no/p.png",
        config=SIM,
    ),
    Case(
        "eval-plot-onto-dir",
        [*_EVAL, "{tmp}/run", "--plot", "{tmp}/plotdir"],
        "plotdir",
        config=SIM,
        files={"plotdir": None},
    ),
    Case(
        "eval-plot-under-file",
        [*_EVAL, "{tmp}/run", "--plot", "{tmp}/f/p.png"],
        "f/p.png",
        config=SIM,
        files={"f": "x"},
    ),
    Case(
        "eval-bad-env",
        [*_EVAL, "{tmp}/run"],
        "n_buyers",
        config=_patched(SIM, {"env.n_buyers": 0}),
    ),
]

# --- valuations -----------------------------------------------------------------
_ATT = {"env.valuation": "attention"}
CASES += [
    Case(
        "show-slots-500",
        ["valuations", "show", "--query", "q", "--slots", "500"],
        "slots",
    ),
    Case(
        "show-slots-0", ["valuations", "show", "--query", "q", "--slots", "0"], "slots"
    ),
    Case(
        "show-slots-neg",
        ["valuations", "show", "--query", "q", "--slots", "-1"],
        "slots",
    ),
    Case(
        "show-out-onto-dir",
        ["valuations", "show", "--query", "q", "--out", "{tmp}/heatmapdir"],
        "heatmapdir",
        files={"heatmapdir": None},
    ),
    Case(
        "show-out-under-file",
        ["valuations", "show", "--query", "q", "--out", "{tmp}/f/h.png"],
        "f/h.png",
        files={"f": "x"},
    ),
    Case(
        "show-device-tpu",
        ["valuations", "show", "--query", "q", "--device", "tpu_v4"],
        "tpu_v4",
    ),
    Case(
        "show-config-bad-setting",
        ["valuations", "show", "--query", "q", "--config", "{cfg}"],
        "layerz",
        config=_patched(SIM, {**_ATT, "env.valuation_params": {"layerz": 1}}),
    ),
    Case(
        "build-bad-setting",
        ["valuations", "build", "{cfg}"],
        "layerz",
        config=_patched(SIM, {**_ATT, "env.valuation_params": {"layerz": 1}}),
    ),
    Case(
        "build-bad-build",
        ["valuations", "build", "{cfg}"],
        "build",
        config=_patched(SIM, {**_ATT, "env.valuation_params": {"build": "maybe"}}),
    ),
    Case(
        "build-bad-relevance",
        ["valuations", "build", "{cfg}"],
        "relevance",
        config=_patched(SIM, {**_ATT, "env.valuation_params": {"relevance": "cubic"}}),
    ),
    Case(
        "build-batch-size-0",
        ["valuations", "build", "{cfg}", "--batch-size", "0"],
        "batch",
        config=_patched(SIM, _ATT),
    ),
    Case(
        "build-batch-size-neg",
        ["valuations", "build", "{cfg}", "--batch-size", "-4"],
        "batch",
        config=_patched(SIM, _ATT),
    ),
    Case(
        "build-device-tpu",
        ["valuations", "build", "{cfg}", "--device", "tpu_v4"],
        "tpu_v4",
        config=_patched(SIM, _ATT),
    ),
    Case(
        "build-bank-dir-file",
        ["valuations", "build", "{cfg}", "--bank-dir", "{tmp}/plainfile"],
        "plainfile",
        config=_patched(SIM, _ATT),
        files={"plainfile": "x"},
    ),
    Case(
        "build-bank-path-missing",
        ["valuations", "build", "{cfg}"],
        "nowhere",
        config=_patched(
            SIM, {**_ATT, "env.valuation_params": {"bank_path": "/nowhere/bank"}}
        ),
    ),
    Case(
        "validate-bad-setting",
        ["valuations", "validate", "{cfg}"],
        "layerz",
        config=_patched(SIM, {**_ATT, "env.valuation_params": {"layerz": 1}}),
    ),
    Case(
        "validate-device-tpu",
        ["valuations", "validate", "{cfg}", "--device", "tpu_v4"],
        "tpu_v4",
        config=_patched(SIM, _ATT),
    ),
    Case(
        "build-uniform-params",
        ["valuations", "build", "{cfg}"],
        "alpha",
        config=_patched(SIM, {"env.valuation_params": {"alpha": [1]}}),
    ),
]


def _materialise(case: Case, tmp: Path) -> list[str]:
    for rel, content in case.files.items():
        path = tmp / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(json.dumps(content))
    cfg = tmp / "c.yaml"
    if case.config is not None:
        cfg.write_text(yaml.safe_dump(case.config))
    elif isinstance(case.text, bytes):
        cfg.write_bytes(case.text)
    elif case.text is not None:
        cfg.write_text(case.text)
    return [a.replace("{cfg}", str(cfg)).replace("{tmp}", str(tmp)) for a in case.argv]


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    """A tripwire: a train case that reaches the training loop fails the test."""
    import training.sb3

    def tripwire(self):
        raise AssertionError("training started: the error was not caught before it")

    monkeypatch.setattr(training.sb3.Trainer, "run", tripwire)
    monkeypatch.setenv("ATTN_MARKET_CACHE", "/nonexistent/attn-market-cache")


COMMANDS = ("simulate", "train", "evaluate", "valuations")
MIN_CULPRIT = 5


def _prefix(command: str) -> str:
    """The fixed start of every error line of ``command``."""
    return f"attn-market {command}: error: "


def _accidental_match(culprit: str, tmp: Path) -> str | None:
    """Where ``culprit`` would match without the error naming it, else None.

    A word shorter than ``MIN_CULPRIT`` or found in a fixed part of every line
    (the ``attn-market <command>: error:`` prefix, the temporary folder's path)
    matches whatever the error says.
    """
    word = culprit.lower()
    if len(word) < MIN_CULPRIT:
        return f"shorter than {MIN_CULPRIT} characters"
    fixed = [*(_prefix(c) for c in COMMANDS), str(tmp)]
    hits = [part for part in fixed if word in part.lower()]
    return f"found in {hits[0]!r}" if hits else None


def test_the_table_is_big_enough():
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


def test_every_culprit_is_specific():
    """No expected word can match by accident (issue 21 item 7)."""
    weak = {c.id: _accidental_match(c.culprit, Path("/")) for c in CASES}
    assert {k: v for k, v in weak.items() if v} == {}


@pytest.mark.parametrize(
    ("culprit", "tmp", "reason"),
    [
        ("k", "/t", "shorter"),
        ("f", "/t", "shorter"),
        ("market", "/t", "attn-market"),
        ("error", "/t", "error"),
        ("pytest", "/tmp/pytest-of-x/pytest-1", "pytest"),
    ],
)
def test_the_accident_check_catches_weak_words(culprit, tmp, reason) -> None:
    assert reason in _accidental_match(culprit, Path(tmp))


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[c.id for c in CASES],
)
def test_user_error_is_one_line(case: Case, tmp_path: Path, capsys) -> None:
    argv = _materialise(case, tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert _accidental_match(case.culprit, tmp_path) is None, case.culprit
    assert code == 2, f"exit {code}, stderr {err!r}"
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(_prefix(argv[0])), lines[0]
    assert case.culprit.lower() in lines[0].lower(), lines[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_unreadable_config(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(SIM))
    cfg.chmod(0)
    try:
        assert main(["simulate", str(cfg)]) == 2
    finally:
        cfg.chmod(0o644)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("attn-market simulate: error: ") and "c.yaml" in line


def test_mechanisms_make_names_a_bad_name() -> None:
    from attn_env import mechanisms

    with pytest.raises(ValueError, match="gsp"):
        mechanisms.make(["gsp"])


def test_yaml_float_strings_are_floats(tmp_path: Path) -> None:
    """PyYAML reads ``1.0e30``-style numbers (no dot in the mantissa) as strings."""
    from attn_env.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("env: {value_high: 1e3, cost_high: 2E2, max_bid: 1e3}\n")
    c = load_config(cfg)
    assert c.env.value_high == 1000.0 and c.env.cost_high == 200.0
    assert c.env.max_bid == 1000.0


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["simulate", "configs/gsp.yaml", "--episodes", "abc"], "'abc'"),
        (["simulate"], "config"),
        (["nope"], "'nope'"),
        (["evaluate", "configs/fpsb_n2.yaml"], "--policy"),
        (["train", "configs/fpsb_n2.yaml", "--timesteps", "1.5"], "'1.5'"),
        (["valuations", "show", "--slots", "x"], "'x'"),
    ],
)
def test_usage_error_is_one_line(argv, culprit, capsys) -> None:
    # argparse's own errors: one line too (no usage block), exit 2
    from attn_market.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0] and culprit in lines[0]
    assert "Traceback" not in err
