"""The generative half of the hostile-input suite (issue 19 item 6), in-process.

Random config documents (wrong types, huge and boolean numbers, deep nesting,
unknown keys) go through the config loader; random mutations of a valid
equilibrium file, bank manifest and run manifest go through their readers.
Each must load or raise :class:`attn_env.errors.UserError` (or
``FileNotFoundError``) with a one-line message; any other exception is a bug.
The last test runs a few of ``benchmarks/hostile_inputs.py``'s cheapest cases
through the real command line (the script runs all of them; see
docs/security.md, "Hostile-input suite").
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attn_env.errors import UserError

REPO = Path(__file__).resolve().parent.parent
GEN = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- hostile values -------------------------------------------------------------------

NUMBERS = st.one_of(
    st.booleans(),
    st.integers(-(10**40), 10**40),
    st.sampled_from([0, -1, 2**31, 2**63, 10**400, 1e150, 1e200, 1e308, -1e308]),
    st.floats(allow_nan=False, allow_infinity=False),
)
SCALARS = st.one_of(st.none(), NUMBERS, st.text(max_size=12))
HOSTILE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=12,
)


DEEP = re.compile(r'"__DEEP([0-9]+)__"')
"A token that the writers below turn into a list nested that many levels."


def _deep_text(text: str) -> str:
    """``text`` with every deep-nesting token replaced by its nested list."""
    return DEEP.sub(lambda m: "[" * int(m[1]) + "]" * int(m[1]), text)


VALUES = st.one_of(HOSTILE, st.integers(60, 400).map(lambda n: f"__DEEP{n}__"))


@st.composite
def mutated(draw, doc: Any) -> Any:
    """``doc`` with one to three random edits: a value replaced or a key dropped."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        node, path = doc, []
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(
                st.sampled_from(
                    sorted(node) if isinstance(node, dict) else range(len(node))
                )
            )
            path.append(key)
            node = node[key]
        if not path:
            if draw(st.booleans()):
                return draw(VALUES)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(VALUES)
    return doc


def _user_error_or_load(call) -> Any:
    """``call()``'s value, or ``None`` after a one-line UserError/FileNotFoundError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call()
    except (UserError, FileNotFoundError) as err:
        assert "\n" not in str(err), str(err)
        return None


def _dump_json(path: Path, doc: Any) -> Path:
    path.write_text(_deep_text(json.dumps(doc)))
    return path


# -- configs --------------------------------------------------------------------------

VALID_CONFIG: dict[str, Any] = {
    "seed": 0,
    "env": {
        "mechanism": "gsp",
        "n_buyers": 3,
        "n_slots": 2,
        "value_high": 1.0,
        "mechanism_params": {"reserve": 0.1},
    },
    "agents": {"buyer": {"kind": "truthful"}},
    "episodes": 10,
    "train": {"total_timesteps": 64, "num_envs": 2, "threads": 1},
    "solve": {"values": 8, "bids": 11},
}
KEYS = st.sampled_from(
    ["seed", "env", "agents", "episodes", "train", "solve", "warmup", "plugins", "x"]
)


def _yaml_text(doc: Any) -> str:
    """``doc`` as YAML (JSON is YAML; deep tokens become deep flow lists)."""
    return _deep_text(json.dumps(doc))


def test_the_valid_config_loads(tmp_path):
    from attn_env.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(VALID_CONFIG))
    assert load_config(path).env.n_buyers == 3


@GEN
@given(doc=mutated(VALID_CONFIG))
def test_mutated_configs_load_or_fail_in_one_line(tmp_path_factory, doc):
    from attn_env.config import load_config

    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(_yaml_text(doc))
    _user_error_or_load(lambda: load_config(path))


@GEN
@given(doc=st.dictionaries(KEYS, VALUES, max_size=4))
def test_random_configs_load_or_fail_in_one_line(tmp_path_factory, doc):
    from attn_env.config import load_config

    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(_yaml_text(doc))
    _user_error_or_load(lambda: load_config(path))


# -- equilibrium files ----------------------------------------------------------------


@pytest.fixture(scope="module")
def solution_doc() -> dict[str, Any]:
    """A real (coarse) solve of a first-price market, as saved to disk."""
    from attn_env.config import EnvConfig, SolveConfig
    from attn_env.solver import solve

    env = EnvConfig(mechanism="first_price", n_buyers=2)
    return solve(env, SolveConfig(values=8, bids=11, iterations=40), seed=0).to_dict()


def test_the_valid_solution_loads(tmp_path, solution_doc):
    from attn_env.solver.solution import load_solution

    path = _dump_json(tmp_path / "equilibrium.json", solution_doc)
    assert (
        load_solution(path).roles["buyer"].values
        == solution_doc["roles"]["buyer"]["values"]
    )


@GEN
@given(data=st.data())
def test_mutated_solutions_load_or_fail_in_one_line(
    tmp_path_factory, solution_doc, data
):
    from attn_env.solver.solution import load_solution

    doc = data.draw(mutated(solution_doc))
    path = _dump_json(tmp_path_factory.mktemp("eq") / "equilibrium.json", doc)
    solution = _user_error_or_load(lambda: load_solution(path))
    if solution is not None:  # what loads is usable: finite bids on the value grid
        for role in solution.roles.values():
            bids = np.asarray(role.bids, dtype=float)
            assert np.isfinite(bids).all() and len(bids) == len(role.values)


# -- bank manifests -------------------------------------------------------------------


def _bank(folder: Path, manifest: Any) -> Path:
    """A numpy-made bank (4 queries, 5 candidates, 2 pages, 3 slots)."""
    rng = np.random.default_rng(0)
    q, c, p, k = 4, 5, 2, 3
    alpha = np.zeros((q, p, k, k), dtype=np.float32)
    for n in range(1, k + 1):
        shares = rng.dirichlet(np.ones(n), size=(q, p))
        alpha[:, :, n - 1, :n] = -np.sort(-shares, axis=-1)
    cands = np.stack([rng.permutation(20)[:c] for _ in range(q)]).astype(np.int32)
    arrays = {
        "queries": np.arange(q, dtype=np.int32),
        "candidates": cands,
        "own": rng.random((q, c)) < 0.3,
        "relevance_raw": rng.uniform(0.1, 0.9, (q, c)).astype(np.float32),
        "page_candidates": cands[:, None, :k].repeat(p, axis=1),
        "alpha": alpha,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    _dump_json(folder / "manifest.json", manifest)
    return folder


BANK_MANIFEST = {"format": 1, "corpus_hash": "x" * 64}


def test_the_valid_bank_loads(tmp_path):
    from attn_env.valuations.bank import load_bank

    assert load_bank(_bank(tmp_path / "bank", BANK_MANIFEST)).max_slots == 3


@GEN
@given(doc=mutated(BANK_MANIFEST))
def test_mutated_bank_manifests_load_or_fail_in_one_line(tmp_path_factory, doc):
    from attn_env.valuations.bank import load_bank

    folder = _bank(tmp_path_factory.mktemp("bank") / "bank", doc)
    _user_error_or_load(lambda: load_bank(folder))


# -- run manifests --------------------------------------------------------------------

RUN_MANIFEST: dict[str, Any] = json.loads(
    """{"agents":["buyer_0","buyer_1","buyer_2"],"algo":"ppo",
"checkpoint":"checkpoints/000000000512-0","finished":true,"format":"attn-market-run/2",
"learners":{"buyer":{"action":{"high":1.0,"low":0.0,"mode":"shade","role":"buyer"},
"algo":"ppo","episode_num":0,"model":"buyer.safetensors","n_updates":2,
"policy":{"class":"ActorCriticPolicy","kwargs":{"action_space":{"box":{"dtype":"float32",
"high":[8.0],"low":[-8.0],"shape":[1]}},"activation_fn":{"class":"Tanh"},
"features_extractor_class":{"class":"FlattenExtractor"},"features_extractor_kwargs":{},
"full_std":null,"log_std_init":0.0,"net_arch":[16],"normalize_images":true,
"observation_space":{"box":{"dtype":"float32","high":[1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0],
"low":[0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0],"shape":[8]}},"optimizer_class":{"class":"Adam"},
"optimizer_kwargs":{"eps":1e-05},"ortho_init":true,"squash_output":null,"use_expln":null,
"use_sde":false}},"role":"buyer","sb3":{"batch_size":128,"gamma":0.0,
"learning_rate":0.0003,"n_epochs":1,"n_steps":32,"policy_kwargs":{"net_arch":[16]},
"seed":2968811710},"seats":["buyer_0","buyer_1","buyer_2"],"timesteps":512}},
"mechanism":"first_price","pool":{"buyer":["000000000256.safetensors",
"000000000512.safetensors"]},"seed":0,"timesteps":512,"total_timesteps":512,"turns":2,
"wall_s":0.65}"""
)
"The manifest a tiny self-play run (3 first-price buyers, 512 steps) writes."


def _run_folder(folder: Path, manifest: Any) -> Path:
    """A run folder holding ``manifest`` and the files the valid one names."""
    for steps in ("000000000256", "000000000512"):
        (folder / "checkpoints" / f"{steps}-0").mkdir(parents=True, exist_ok=True)
        (folder / "checkpoints" / f"{steps}-0" / "buyer.safetensors").write_bytes(b"x")
        (folder / "pool" / "buyer").mkdir(parents=True, exist_ok=True)
        (folder / "pool" / "buyer" / f"{steps}.safetensors").write_bytes(b"x")
    _dump_json(folder / "manifest.json", manifest)
    return folder


def _check_run(folder: Path) -> Any:
    from training.checkpoint import check_run_manifest, read_manifest

    return check_run_manifest(folder, read_manifest(folder))


def test_the_valid_run_manifest_passes(tmp_path):
    _check_run(_run_folder(tmp_path / "run", RUN_MANIFEST))


@GEN
@given(doc=mutated(RUN_MANIFEST))
def test_mutated_run_manifests_pass_or_fail_in_one_line(tmp_path_factory, doc):
    folder = _run_folder(tmp_path_factory.mktemp("run") / "run", doc)
    _user_error_or_load(lambda: _check_run(folder))


# -- the command line, a few cheap cases of the script --------------------------------


def _suite():
    spec = importlib.util.spec_from_file_location(
        "hostile_inputs", REPO / "benchmarks" / "hostile_inputs.py"
    )
    if "hostile_inputs" not in sys.modules:  # dataclasses look the module up
        module = importlib.util.module_from_spec(spec)
        sys.modules["hostile_inputs"] = module
        spec.loader.exec_module(module)
    return sys.modules["hostile_inputs"]


CHEAP = (
    "config-nesting-2000-list",
    "config-billion-laughs",
    "config-fifo",
    "config-yaml-python-apply",
    "bank-manifest-list",
    "bank-alpha-fifo",
    "mech-vcg-1e150-finite",
)


def test_cheap_cases_of_the_script_pass(tmp_path):
    suite = _suite()
    cases = [c for c in suite.all_cases() if c.name in CHEAP]
    assert sorted(c.name for c in cases) == sorted(CHEAP)
    results = suite.run_suite(cases, REPO, jobs=2, progress=False, keep=tmp_path)
    counts = suite.summary(results)
    assert counts["tracebacks"] == 0 and counts["hangs"] == 0, counts
    assert counts["changed_outside"] == 0 and counts["code_executions"] == 0, counts
    assert counts["failing"] == [], [
        (r.name, r.outcome, r.stderr_tail) for r in results if not r.passed
    ]


def test_the_script_sees_what_it_counts(tmp_path):
    """Its judges catch a changed, added or relinked file, a traceback, a second
    line, and a wrong outcome (so the counts above can be non-zero)."""
    suite = _suite()
    root = tmp_path / "root"
    (root / "case").mkdir(parents=True)
    (root / "victim").mkdir()
    (root / "victim" / "a.txt").write_text("one")
    (root / "victim" / "link").symlink_to(root / "victim" / "a.txt")
    before = suite.snapshot(root, skip=root / "case")
    (root / "case" / "inside.txt").write_text("the case's own folder: not counted")
    assert suite._changed(before, suite.snapshot(root, skip=root / "case")) == []
    (root / "victim" / "a.txt").write_text("two")
    (root / "victim" / "link").unlink()
    (root / "victim" / "link").symlink_to("/etc/passwd")
    (root / "new.txt").write_text("x")
    changed = suite._changed(before, suite.snapshot(root, skip=root / "case"))
    assert changed == ["root/new.txt", "root/victim/a.txt", "root/victim/link"]
    (root / "victim" / "a.txt").unlink()
    gone = suite._changed(before, suite.snapshot(root, skip=root / "case"))
    assert "root/victim/a.txt" in gone
    assert suite._classify(None, "") == "hang"
    assert suite._classify(2, "attn-market x: error: bad\n") == "error"
    assert suite._classify(2, "line one\nline two\n") == "exit 2, 2 lines"
    assert suite._classify(1, suite.TRACEBACK + "\n  File\n") == "traceback"
    assert suite._combine(["ok", "error"]) == "one-ok-one-error"
    assert suite._combine(["ok", "ok"]) == "ok + ok"
