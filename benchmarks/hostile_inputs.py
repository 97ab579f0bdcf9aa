"""The hostile-input suite of issue 19: every case run through the real command line.

Each case builds its inputs in a fresh temporary folder (its *case folder*,
also the working directory) next to a *victim* folder of files that nothing
may touch, then runs ``python -m attn_market.cli ...`` (or, for mechanism
inputs, a tiny ``python -c`` against the Python API) in a subprocess with a
time limit: 10 s, or 20 s for cases that load torch and stable-baselines3
(``train``, ``evaluate``, ``--resume``: marked ``heavy``), 60 s for the
optional RLlib group (``--with-ray``: Ray alone takes ~15 s to import and
start). Per case it records:

- the exit status, and whether stderr holds a Python traceback;
- whether the command hung (ran into its time limit; the process group is killed);
- whether any file outside the case folder changed (the victim folder and the
  folder around the case are snapshotted before and after: type, size, mtime,
  SHA-256, link target), and whether guarded inputs inside the case folder
  (configs, files a refused run must not touch) changed;
- whether planted code ran (a pickle or YAML payload that would create a
  marker file).

Every case states its correct outcome: ``error`` (exit 2, exactly one line on
stderr), ``ok`` (exit 0) or ``warn`` (exit 0 with a warning line: a config
that sets nothing); ``one-ok-one-error`` for two writers started at once.
Any other outcome is a failure, as is a traceback, a hang, a change outside
or an execution.

    python benchmarks/hostile_inputs.py [--src DIR] [--jobs 2] [--json OUT]
        [--only SUBSTRING] [--group GROUP] [--with-ray] [--keep]

``--src DIR`` runs the cases against another checkout (``DIR`` is prepended to
``PYTHONPATH``; the venv is shared), so the same script measures a tree before
and after hardening. The fixtures (a tiny trained run, a solved equilibrium in
a solver cache) are made once per script run by that same tree (~30 s).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0
"Time limit of a case, seconds."
HEAVY_TIMEOUT = 20.0
"Time limit of a case that loads torch and stable-baselines3."
RAY_TIMEOUT = 60.0
"Time limit of an RLlib case (the item-5 bound is 30 s plus Ray's start)."
TRACEBACK = "Traceback (most recent call last)"
OUTCOMES = ("ok", "warn", "error", "one-ok-one-error")

# -- the markets the cases start from --------------------------------------------------

SIM: dict[str, Any] = {
    "seed": 0,
    "env": {"mechanism": "first_price", "n_buyers": 2},
    "episodes": 4,
}
TINY_TRAIN: dict[str, Any] = {
    "total_timesteps": 512,
    "num_envs": 8,
    "n_steps": 32,
    "batch_size": 128,
    "net_arch": [16],
    "alternate_every": 256,
    "checkpoint_every": 256,
    "device": "cpu",
    "self_play_pool": 2,
    "algo_params": {"n_epochs": 1},
}
LEARN: dict[str, Any] = {
    "seed": 0,
    "env": {"mechanism": "first_price", "n_buyers": 3, "action": "shade"},
    "agents": {"buyer": {"kind": "learn"}},
    "episodes": 16,
    "train": TINY_TRAIN,
}
EQUILIBRIUM: dict[str, Any] = {
    "seed": 0,
    "env": {"mechanism": "first_price", "n_buyers": 2},
    "agents": {"buyer": {"kind": "equilibrium"}},
    "episodes": 8,
}
N_Q, N_C, N_P, K_MAX = 4, 5, 2, 3
"Shape of the numpy-made attention bank (queries, candidates, pages, slots)."


# -- cases -----------------------------------------------------------------------------


@dataclass
class Ctx:
    """What a case builds in: its folder (the cwd), the victim folder, fixtures."""

    case: Path
    victim: Path
    marker: Path
    fixtures: Path
    ports: dict[str, int] = field(default_factory=dict)


Build = Callable[[Ctx], list[list[str]]]


@dataclass(frozen=True)
class Case:
    """One hostile input: how to build it, what must happen."""

    name: str
    group: str
    expect: str
    "``ok`` (exit 0), ``error`` (exit 2, one line) or ``one-ok-one-error``."
    build: Build
    "Writes the inputs under ``ctx.case`` and returns the commands to run at once."
    heavy: bool = False
    "Loads torch/SB3 (20 s limit instead of 10 s)."
    needs_run: bool = False
    "Starts from a copy of the trained tiny run (``ctx.case / 'run'``)."
    guard: tuple[str, ...] = ()
    "Paths inside the case folder that must not change (inputs a run must not touch)."
    ray: bool = False
    "Optional RLlib case (``--with-ray``)."

    def timeout(self, scale: float = 1.0) -> float:
        """The case's time limit in seconds (``scale`` stretches it on a busy box)."""
        limit = RAY_TIMEOUT if self.ray else HEAVY_TIMEOUT if self.heavy else TIMEOUT
        return limit * scale


def cli(*args: str) -> list[str]:
    """The argv of ``python -m attn_market.cli ARGS``, minus the interpreter."""
    return ["-m", "attn_market.cli", *map(str, args)]


def py(code: str) -> list[str]:
    """The argv of ``python -c CODE``, minus the interpreter."""
    return ["-c", code]


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def patched(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the dotted keys of ``patch`` set."""
    out = json.loads(json.dumps(base))
    for dotted, value in patch.items():
        *parents, last = dotted.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def _payload_yaml(marker: Path) -> str:
    return f'!!python/object/apply:os.system ["touch {marker}"]'


def _pickle_payload(marker: Path) -> bytes:
    """A pickle whose loading creates ``marker`` (``open(marker, 'w')``)."""
    import pickle

    class _P:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps(_P())


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


# config cases: (name, expect, YAML text or dict, command) -----------------------------

BIG = "1" + "0" * 400


def _nest_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nest_map(depth: int) -> str:
    return "{a: " * depth + "1" + "}" * depth


def _laughs() -> str:
    lines = ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        refs = ",".join([f"*{prev}"] * 9)
        lines.append(f"  {name}: &{name} [{refs}]")
        prev = name
    body = "\n".join(" " * 4 + line for line in lines)
    return (
        "seed: 0\nepisodes: 4\nenv:\n  mechanism: first_price\n  n_buyers: 2\n"
        f"  mechanism_params:\n    reserve: 0\n    lol:\n{body}\n"
    )


def _sim_text(env_extra: str = "", top: str = "") -> str:
    return (
        f"seed: 0\nepisodes: 4\n{top}"
        f"env: {{mechanism: first_price, n_buyers: 2{env_extra}}}\n"
    )


CONFIG_TEXTS: list[tuple[str, str, Any]] = [
    ("config-valid", "ok", SIM),
    ("config-nesting-2000-list", "error", _sim_text(f", x: {_nest_list(2000)}")),
    ("config-nesting-2000-map", "error", "x: " + _nest_map(2000) + "\n"),
    (
        "config-nesting-2000-mechanism-params",
        "error",
        _sim_text(f", mechanism_params: {{reserve: {_nest_list(2000)}}}"),
    ),
    ("config-nesting-100000", "error", _sim_text(f", x: {_nest_list(100000)}")),
    ("config-value-high-400-digits", "error", _sim_text(f", value_high: {BIG}")),
    ("config-budget-400-digits", "error", _sim_text(f", budget: {BIG}")),
    ("config-max-bid-400-digits", "error", _sim_text(f", max_bid: {BIG}")),
    (
        "config-exposure-floor-400-digits",
        "error",
        _sim_text(f", exposure_floor: {BIG}"),
    ),
    (
        "config-reserve-400-digits",
        "error",
        _sim_text(f", mechanism_params: {{reserve: {BIG}}}"),
    ),
    ("config-seed-400-digits", "error", f"seed: {BIG}\n" + _sim_text()[8:]),
    (
        "config-episodes-400-digits",
        "error",
        _sim_text().replace("episodes: 4", f"episodes: {BIG}"),
    ),
    ("config-billion-laughs", "error", _laughs()),
    ("config-n-buyers-30-digits", "error", patched(SIM, {"env.n_buyers": 10**29})),
    ("config-n-buyers-true", "error", patched(SIM, {"env.n_buyers": True})),
    ("config-n-buyers-negative", "error", patched(SIM, {"env.n_buyers": -3})),
    ("config-n-buyers-float", "error", patched(SIM, {"env.n_buyers": 2.5})),
    ("config-n-buyers-million", "error", patched(SIM, {"env.n_buyers": 10**6})),
    ("config-n-buyers-string", "error", patched(SIM, {"env.n_buyers": "two"})),
    ("config-episodes-1e12", "error", patched(SIM, {"episodes": 10**12})),
    ("config-rounds-1e9", "error", patched(SIM, {"env.rounds": 10**9})),
    (
        "config-n-slots-1e6",
        "error",
        patched(SIM, {"env.n_slots": 10**6, "env.mechanism": "gsp"}),
    ),
    ("config-empty", "warn", ""),
    ("config-only-comment", "warn", "# nothing here\n"),
    ("config-null", "warn", "null\n"),
    ("config-list", "error", "[1, 2, 3]\n"),
    ("config-scalar", "error", "42\n"),
    ("config-unknown-top-key", "error", patched(SIM, {"episdoes": 4})),
    ("config-unknown-env-key", "error", patched(SIM, {"env.n_buyer": 2})),
    (
        "config-k-true",
        "error",
        patched(
            SIM,
            {
                "env.mechanism": "k_double",
                "env.n_sellers": 2,
                "env.mechanism_params": {"k": True},
            },
        ),
    ),
    (
        "config-k-2",
        "error",
        patched(
            SIM,
            {
                "env.mechanism": "k_double",
                "env.n_sellers": 2,
                "env.mechanism_params": {"k": 2.0},
            },
        ),
    ),
    (
        "config-seller-in-one-sided",
        "error",
        patched(SIM, {"agents": {"seller": {"kind": "truthful"}}}),
    ),
    (
        "config-reserve-1e200",
        "error",
        patched(SIM, {"env.mechanism_params": {"reserve": 1e200}}),
    ),
    ("config-reserve-nan", "error", _sim_text(", mechanism_params: {reserve: .nan}")),
    ("config-reserve-inf", "error", _sim_text(", mechanism_params: {reserve: .inf}")),
    (
        "config-reserve-negative",
        "error",
        patched(SIM, {"env.mechanism_params": {"reserve": -1.0}}),
    ),
    (
        "config-reserve-true",
        "error",
        patched(SIM, {"env.mechanism_params": {"reserve": True}}),
    ),
    ("config-value-high-nan", "error", _sim_text(", value_high: .nan")),
    ("config-value-high-string", "error", patched(SIM, {"env.value_high": "high"})),
    (
        "config-value-high-below-low",
        "error",
        patched(SIM, {"env.value_low": 0.8, "env.value_high": 0.2}),
    ),
    ("config-budget-negative", "error", patched(SIM, {"env.budget": -1.0})),
    ("config-exposure-floor-2", "error", patched(SIM, {"env.exposure_floor": 2.0})),
    (
        "config-mechanism-os-system",
        "error",
        patched(SIM, {"env.mechanism": "os.system"}),
    ),
    (
        "config-mechanism-list",
        "error",
        patched(SIM, {"env.mechanism": ["first_price"]}),
    ),
    (
        "config-mechanism-param-unknown",
        "error",
        patched(SIM, {"env.mechanism_params": {"shell": "rm -rf /"}}),
    ),
    (
        "config-agent-kind-unknown",
        "error",
        patched(SIM, {"agents": {"buyer": {"kind": "os.system"}}}),
    ),
    (
        "config-agent-not-mapping",
        "error",
        patched(SIM, {"agents": {"buyer": "truthful"}}),
    ),
    (
        "config-agent-bad-param",
        "error",
        patched(
            SIM, {"agents": {"buyer": {"kind": "truthful", "params": {"evil": 1}}}}
        ),
    ),
    (
        "config-valuation-unknown",
        "error",
        patched(SIM, {"env.valuation": "__import__"}),
    ),
    ("config-value-dist-unknown", "error", patched(SIM, {"env.value_dist": "pareto9"})),
    (
        "config-solve-values-1e9",
        "error",
        patched(EQUILIBRIUM, {"solve": {"values": 10**9}}),
    ),
    (
        "config-solve-iterations-400-digits",
        "error",
        _sim_text(top=f"solve: {{iterations: {BIG}}}\n"),
    ),
    (
        "config-solve-bids-true",
        "error",
        patched(EQUILIBRIUM, {"solve": {"bids": True}}),
    ),
    ("config-seed-float", "error", patched(SIM, {"seed": 1.5})),
    ("config-warmup-1e12", "error", patched(SIM, {"warmup": 10**12})),
    ("config-duplicate-anchor-alias-loop", "error", "a: &a [*a]\n"),
    ("config-binary", "error", b"\x00\xff\xfe" * 100),
    ("config-not-utf8", "error", b"seed: 0\nenv: {mechanism: \xff\xfe}\n"),
]

TRAIN_TEXTS: list[tuple[str, str, dict[str, Any]]] = [
    ("train-threads-1e8", "error", patched(LEARN, {"train.threads": 10**8})),
    ("train-threads-true", "error", patched(LEARN, {"train.threads": True})),
    ("train-num-envs-1e9", "error", patched(LEARN, {"train.num_envs": 10**9})),
    (
        "train-timesteps-400-digits",
        "error",
        patched(LEARN, {"train.total_timesteps": int(BIG)}),
    ),
    (
        "train-net-arch-huge",
        "error",
        patched(LEARN, {"train.net_arch": [10**9, 10**9]}),
    ),
    (
        "train-activation-fn-os-system",
        "error",
        patched(
            LEARN,
            {
                "train.algo_params": {
                    "n_epochs": 1,
                    "policy_kwargs": {"activation_fn": "os.system"},
                }
            },
        ),
    ),
    (
        "train-optimizer-class-popen",
        "error",
        patched(
            LEARN,
            {
                "train.algo_params": {
                    "n_epochs": 1,
                    "policy_kwargs": {"optimizer_class": "subprocess.Popen"},
                }
            },
        ),
    ),
    (
        "train-n-epochs-1e9",
        "error",
        patched(LEARN, {"train.algo_params": {"n_epochs": 10**9}}),
    ),
    (
        "train-algo-params-unknown",
        "error",
        patched(LEARN, {"train.algo_params": {"exec": "print(1)"}}),
    ),
    (
        "train-learning-rate-string",
        "error",
        patched(LEARN, {"train.learning_rate": "fast"}),
    ),
    ("train-algo-unknown", "error", patched(LEARN, {"train.algo": "dqn"})),
    ("train-no-learners", "error", patched(SIM, {"train": TINY_TRAIN})),
]


def _config_case(name: str, expect: str, content: Any) -> Case:
    def build(ctx: Ctx) -> list[list[str]]:
        path = ctx.case / "config.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            write_yaml(path, content)
        return [cli("simulate", path, "--json")]

    return Case(name, "configs", expect, build, guard=("config.yaml",))


def _train_case(name: str, expect: str, content: dict[str, Any]) -> Case:
    def build(ctx: Ctx) -> list[list[str]]:
        path = write_yaml(ctx.case / "config.yaml", content)
        return [cli("train", path, "--out", ctx.case / "out", "--no-progress")]

    return Case(name, "configs", expect, build, heavy=True, guard=("config.yaml",))


def _config_file_cases() -> list[Case]:
    """Config paths that are not regular files, or are huge."""

    def fifo(ctx: Ctx) -> list[list[str]]:
        return [cli("simulate", _fifo(ctx.case / "config.yaml"))]

    def dev_zero(ctx: Ctx) -> list[list[str]]:
        (ctx.case / "config.yaml").symlink_to("/dev/zero")
        return [cli("simulate", ctx.case / "config.yaml")]

    def sparse(ctx: Ctx) -> list[list[str]]:
        return [cli("simulate", _sparse(ctx.case / "config.yaml", 2**31))]

    def folder(ctx: Ctx) -> list[list[str]]:
        (ctx.case / "config.yaml").mkdir()
        return [cli("simulate", ctx.case / "config.yaml")]

    def missing(ctx: Ctx) -> list[list[str]]:
        return [cli("simulate", ctx.case / "nowhere.yaml")]

    def yaml_exec(ctx: Ctx) -> list[list[str]]:
        text = f"seed: {_payload_yaml(ctx.marker)}\n" + _sim_text()[8:]
        (ctx.case / "config.yaml").write_text(text)
        return [cli("simulate", ctx.case / "config.yaml")]

    def yaml_name(ctx: Ctx) -> list[list[str]]:
        (ctx.case / "config.yaml").write_text(
            _sim_text(", mechanism: !!python/name:os.system ''").replace(
                "mechanism: first_price, ", ""
            )
        )
        return [cli("simulate", ctx.case / "config.yaml")]

    def long_line(ctx: Ctx) -> list[list[str]]:
        (ctx.case / "config.yaml").write_text(_sim_text(f", x{'y' * 5_000_000}: 1"))
        return [cli("simulate", ctx.case / "config.yaml")]

    return [
        Case("config-fifo", "configs", "error", fifo),
        Case("config-symlink-dev-zero", "configs", "error", dev_zero),
        Case("config-sparse-2GiB", "configs", "error", sparse),
        Case("config-is-a-folder", "configs", "error", folder),
        Case("config-missing", "configs", "error", missing),
        Case("config-yaml-python-apply", "configs", "error", yaml_exec),
        Case("config-yaml-python-name", "configs", "error", yaml_name),
        Case("config-5MB-key", "configs", "error", long_line),
    ]


# run-folder cases ---------------------------------------------------------------------


def _manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def _save_manifest(run: Path, manifest: Any) -> None:
    (run / "manifest.json").write_text(json.dumps(manifest))


def _learn_cfg(ctx: Ctx) -> Path:
    return write_yaml(ctx.case / "learn.yaml", LEARN)


def _resume(ctx: Ctx, timesteps: int = 768) -> list[str]:
    run = ctx.case / "run"
    return cli(
        "train",
        _learn_cfg(ctx),
        "--out",
        run,
        "--resume",
        "--timesteps",
        timesteps,
        "--no-progress",
    )


def _evaluate(ctx: Ctx) -> list[str]:
    run = ctx.case / "run"
    return cli(
        "evaluate",
        _learn_cfg(ctx),
        "--policy",
        run,
        "--json",
        "--episodes",
        16,
        "--samples",
        20,
    )


def _victim_store(ctx: Ctx, name: str) -> Path:
    store = ctx.victim / name
    for sub in ("alpha", "beta", "gamma", "delta"):
        (store / sub).mkdir(parents=True, exist_ok=True)
        (store / sub / "keep.txt").write_text(f"victim {sub}\n")
    return store


def _ck_symlink(ctx: Ctx) -> None:
    """checkpoints/ a link to a victim folder; the manifest's checkpoint under ck/."""
    run = ctx.case / "run"
    store = _victim_store(ctx, "store")
    for entry in (run / "checkpoints").iterdir():
        shutil.move(str(entry), store / entry.name)
    (run / "checkpoints").rmdir()
    (run / "checkpoints").symlink_to(store, target_is_directory=True)
    (run / "ck").symlink_to(store, target_is_directory=True)
    m = _manifest(run)
    m["checkpoint"] = "ck/" + Path(m["checkpoint"]).name
    _save_manifest(run, m)


def _ck_real(ctx: Ctx) -> None:
    """The checkpoints moved to a real ``ck/`` (the manifest points there), and
    ``checkpoints/`` a link to a victim folder: new checkpoints and pruning
    would land in the victim (issue 19's CRITICAL case)."""
    run = ctx.case / "run"
    store = _victim_store(ctx, "store")
    (run / "checkpoints").rename(run / "ck")
    (run / "checkpoints").symlink_to(store, target_is_directory=True)
    m = _manifest(run)
    m["checkpoint"] = "ck/" + Path(m["checkpoint"]).name
    _save_manifest(run, m)


def _pool_symlink(ctx: Ctx, empty_pool: bool) -> None:
    run = ctx.case / "run"
    store = _victim_store(ctx, "pool")
    for entry in (run / "pool" / "buyer").iterdir():
        shutil.copy(entry, store / entry.name)
    shutil.rmtree(run / "pool" / "buyer")
    (run / "pool" / "buyer").symlink_to(store, target_is_directory=True)
    if empty_pool:
        m = _manifest(run)
        m["pool"] = {}
        _save_manifest(run, m)


def _tb_symlink(ctx: Ctx, level: str) -> None:
    run = ctx.case / "run"
    store = _victim_store(ctx, "tb")
    # the learner's log folder: tb/buyer (or tb/buyer_0 in older trees)
    target = run / "tb" if level == "tb" else sorted((run / "tb").iterdir())[0]
    shutil.rmtree(target)
    target.symlink_to(store, target_is_directory=True)


def _loop(ctx: Ctx) -> None:
    run = ctx.case / "run"
    (run / "a").symlink_to(run / "b")
    (run / "b").symlink_to(run / "a")
    m = _manifest(run)
    m["checkpoint"] = "a/000000000512-0"
    _save_manifest(run, m)


def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        m = _manifest(ctx.case / "run")
        change(m)
        _save_manifest(ctx.case / "run", m)

    return apply


def _learner(m: dict[str, Any]) -> dict[str, Any]:
    return m["learners"]["buyer"]


def _set_sb3(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: _learner(m)["sb3"].update({key: value})


def _raw_manifest(text: str | bytes) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        path = ctx.case / "run" / "manifest.json"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    return apply


def _manifest_file(kind: str) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        path = ctx.case / "run" / "manifest.json"
        path.unlink()
        if kind == "fifo":
            _fifo(path)
        elif kind == "dev-zero":
            path.symlink_to("/dev/zero")
        elif kind == "sparse":
            _sparse(path, 2**31)
        elif kind == "victim-link":
            (ctx.victim / "manifest.json").write_text("{}")
            path.symlink_to(ctx.victim / "manifest.json")

    return apply


def _plant_model(ctx: Ctx) -> None:
    run = ctx.case / "run"
    ck = run / _manifest(run)["checkpoint"]
    (ck / "buyer.safetensors").write_bytes(_pickle_payload(ctx.marker))


def _plant_pool(ctx: Ctx) -> None:
    run = ctx.case / "run"
    name = _manifest(run)["pool"]["buyer"][-1]
    (run / "pool" / "buyer" / name).write_bytes(_pickle_payload(ctx.marker))


def _plant_strays(ctx: Ctx) -> None:
    run = ctx.case / "run"
    ck = run / _manifest(run)["checkpoint"]
    blob = _pickle_payload(ctx.marker)
    for path in (
        run / "evil.pkl",
        ck / "buyer.zip",
        run / "tb" / "evil.pkl",
        run / "pool" / "buyer" / "000000000001.pt",
        run / "config.yaml",
    ):
        path.write_bytes(blob)


def _old_format(ctx: Ctx) -> None:
    run = ctx.case / "run"
    m = _manifest(run)
    m["format"] = "attn-market-run/1"
    _learner(m)["model"] = "buyer.zip"
    (run / m["checkpoint"] / "buyer.zip").write_bytes(_pickle_payload(ctx.marker))
    _save_manifest(run, m)


def _own_names_kept(ctx: Ctx) -> None:
    """Entries not of the run's naming scheme in checkpoints/ and pool/buyer/."""
    run = ctx.case / "run"
    for sub in ("notes", "000000000001-0-backup"):
        (run / "checkpoints" / sub).mkdir()
        (run / "checkpoints" / sub / "keep.txt").write_text("mine\n")
    (run / "pool" / "buyer" / "readme.txt").write_text("mine\n")


def _stale_lock(ctx: Ctx) -> None:
    (ctx.case / "run" / ".lock").write_text('{"pid": 999999999, "host": "gone"}')


def _staging_leftover(ctx: Ctx) -> None:
    stage = ctx.case / "run" / "checkpoints" / ".staging-deadbeef-0"
    stage.mkdir(parents=True)
    (stage / "buyer.safetensors").write_bytes(b"half")


def _run_case(
    name: str,
    expect: str,
    doctor: Callable[[Ctx], None] | None,
    command: str = "resume",
    guard: tuple[str, ...] = (),
) -> Case:
    def build(ctx: Ctx) -> list[list[str]]:
        if doctor is not None:
            doctor(ctx)
        return [_resume(ctx) if command == "resume" else _evaluate(ctx)]

    return Case(
        f"run-{name}-{command}",
        "run folders",
        expect,
        build,
        heavy=True,
        needs_run=True,
        guard=guard,
    )


def _run_cases() -> list[Case]:
    both = ("resume", "evaluate")
    cases: list[Case] = []
    for cmd in both:
        cases += [
            _run_case("clean", "ok", None, cmd),
            _run_case("checkpoints-symlink-ck", "error", _ck_symlink, cmd),
            _run_case("checkpoints-symlink-ck-real", "error", _ck_real, cmd),
            _run_case("symlink-loop", "error", _loop, cmd),
            _run_case("model-pickle", "error", _plant_model, cmd),
            _run_case("stray-pickles", "ok", _plant_strays, cmd),
            _run_case("old-format-zip", "error", _old_format, cmd),
            _run_case("manifest-list", "error", _raw_manifest("[]"), cmd),
            _run_case("manifest-deep", "error", _raw_manifest(_nest_list(100000)), cmd),
            _run_case(
                "manifest-1e400",
                "error",
                _raw_manifest_sub('"timesteps": 512', '"timesteps": 1e400'),
                cmd,
            ),
            _run_case("manifest-fifo", "error", _manifest_file("fifo"), cmd),
            _run_case("manifest-dev-zero", "error", _manifest_file("dev-zero"), cmd),
            _run_case(
                "manifest-symlink-out", "error", _manifest_file("victim-link"), cmd
            ),
            _run_case(
                "checkpoint-dotdot",
                "error",
                _edit(lambda m: m.update(checkpoint="../../victim")),
                cmd,
            ),
            _run_case(
                "checkpoint-absolute",
                "error",
                _edit(lambda m: m.update(checkpoint="/tmp")),
                cmd,
            ),
            _run_case(
                "model-dotdot",
                "error",
                _edit(
                    lambda m: _learner(m).update(model="../../../victim/x.safetensors")
                ),
                cmd,
            ),
            _run_case(
                "activation-os-system",
                "error",
                _edit(
                    lambda m: _learner(m)["policy"]["kwargs"].update(
                        activation_fn={"class": "os.system"}
                    )
                ),
                cmd,
            ),
        ]
    cases += [
        _run_case("pool-symlink-empty-pool", "error", lambda c: _pool_symlink(c, True)),
        _run_case("pool-symlink", "error", lambda c: _pool_symlink(c, False)),
        _run_case("tb-symlink", "error", lambda c: _tb_symlink(c, "tb")),
        _run_case("tb-learner-symlink", "error", lambda c: _tb_symlink(c, "buyer")),
        _run_case("pool-pickle", "error", _plant_pool),
        _run_case("manifest-sparse-2GiB", "error", _manifest_file("sparse")),
        _run_case(
            "timesteps-1e9-float", "error", _edit(lambda m: m.update(timesteps=1e9))
        ),
        _run_case("timesteps-true", "error", _edit(lambda m: m.update(timesteps=True))),
        _run_case(
            "learner-timesteps-true",
            "error",
            _edit(lambda m: _learner(m).update(timesteps=True)),
        ),
        _run_case(
            "n-updates-1e400",
            "error",
            _raw_manifest_sub('"n_updates": 2', '"n_updates": 1e400'),
        ),
        _run_case("n-epochs-1e9-float", "error", _edit(_set_sb3("n_epochs", 1e9))),
        _run_case("n-epochs-1e9", "error", _edit(_set_sb3("n_epochs", 10**9))),
        _run_case("n-epochs-true", "error", _edit(_set_sb3("n_epochs", True))),
        _run_case("batch-size-string", "error", _edit(_set_sb3("batch_size", "all"))),
        _run_case("n-steps-negative", "error", _edit(_set_sb3("n_steps", -32))),
        _run_case(
            "pool-dotdot",
            "error",
            _edit(lambda m: m["pool"].update(buyer=["../../x.safetensors"])),
        ),
        _run_case(
            "foreign-names-kept",
            "ok",
            _own_names_kept,
            guard=(
                "run/checkpoints/notes",
                "run/checkpoints/000000000001-0-backup",
                "run/pool/buyer/readme.txt",
            ),
        ),
        _run_case("stale-lock", "ok", _stale_lock),
        _run_case("staging-leftover", "ok", _staging_leftover),
    ]
    return cases + _fresh_run_cases()


def _raw_manifest_sub(old: str, new: str) -> Callable[[Ctx], None]:
    def apply(ctx: Ctx) -> None:
        path = ctx.case / "run" / "manifest.json"
        text = json.dumps(_manifest(ctx.case / "run"), indent=1)
        if old.replace(" ", "") not in text.replace(" ", ""):
            raise RuntimeError(f"case setup: {old!r} not in the manifest")
        path.write_text(text.replace(old, new))

    return apply


def _fresh_run_cases() -> list[Case]:
    def fresh(ctx: Ctx, out: Path, *extra: Any) -> list[str]:
        return cli("train", _learn_cfg(ctx), "--out", out, "--no-progress", *extra)

    def nonempty(ctx: Ctx) -> list[list[str]]:
        out = ctx.case / "out"
        for sub in ("alpha", "beta", "gamma", "delta"):
            (out / "checkpoints" / sub).mkdir(parents=True)
            (out / "checkpoints" / sub / "keep.txt").write_text(sub)
        return [fresh(ctx, out)]

    def nonempty_file(ctx: Ctx) -> list[list[str]]:
        out = ctx.case / "out"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        return [fresh(ctx, out)]

    def out_is_file(ctx: Ctx) -> list[list[str]]:
        (ctx.case / "out").write_text("mine")
        return [fresh(ctx, ctx.case / "out")]

    def out_loop(ctx: Ctx) -> list[list[str]]:
        (ctx.case / "out").symlink_to(ctx.case / "out")
        return [fresh(ctx, ctx.case / "out")]

    def two_writers(ctx: Ctx) -> list[list[str]]:
        out = ctx.case / "out"
        # 256 steps: the writer that gets the folder ends well within the limit
        return [
            fresh(ctx, out, "--timesteps", 256),
            fresh(ctx, out, "--timesteps", 256),
        ]

    def two_resumes(ctx: Ctx) -> list[list[str]]:
        return [_resume(ctx, 768), _resume(ctx, 768)]

    def resume_missing(ctx: Ctx) -> list[list[str]]:
        return [
            cli(
                "train",
                _learn_cfg(ctx),
                "--out",
                ctx.case / "nothing",
                "--resume",
                "--no-progress",
            )
        ]

    def fresh_clean(ctx: Ctx) -> list[list[str]]:
        return [fresh(ctx, ctx.case / "out")]

    def eval_no_learners(ctx: Ctx) -> list[list[str]]:
        cfg = write_yaml(ctx.case / "sim.yaml", SIM)
        return [
            cli(
                "evaluate",
                cfg,
                "--policy",
                ctx.case / "run",
                "--json",
                "--episodes",
                4,
                "--samples",
                5,
            )
        ]

    group = "run folders"
    return [
        Case("run-fresh-clean", group, "ok", fresh_clean, heavy=True),
        Case(
            "run-fresh-nonempty-checkpoints",
            group,
            "error",
            nonempty,
            heavy=True,
            guard=("out",),
        ),
        Case(
            "run-fresh-nonempty-file",
            group,
            "error",
            nonempty_file,
            heavy=True,
            guard=("out",),
        ),
        Case(
            "run-fresh-out-is-file",
            group,
            "error",
            out_is_file,
            heavy=True,
            guard=("out",),
        ),
        Case("run-fresh-out-symlink-loop", group, "error", out_loop, heavy=True),
        Case("run-two-writers", group, "one-ok-one-error", two_writers, heavy=True),
        Case(
            "run-two-resumes",
            group,
            "one-ok-one-error",
            two_resumes,
            heavy=True,
            needs_run=True,
        ),
        Case("run-resume-missing", group, "error", resume_missing, heavy=True),
        Case(
            "run-evaluate-config-without-learners",
            group,
            "error",
            eval_no_learners,
            heavy=True,
            needs_run=True,
        ),
    ]


# equilibrium files and the solver cache ---------------------------------------------


def _solution(ctx: Ctx) -> dict[str, Any]:
    return json.loads(_cache_file(ctx.fixtures / "cache").read_text())


def _cache_file(cache: Path) -> Path:
    files = sorted((cache / "solver").glob("*.json"))
    if len(files) != 1:
        raise RuntimeError(f"fixture: expected one solver cache entry, got {files}")
    return files[0]


def _deep(_: dict[str, Any]) -> str:
    return _nest_list(100000)


EQ_MUTATIONS: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = [
    ("valid", "ok", lambda s: s),
    ("deep-nesting", "error", _deep),
    (
        "iterations-1e400",
        "error",
        lambda s: json.dumps(s).replace('"iterations": ', '"iterations": 1e400, "x": '),
    ),
    ("iterations-true", "error", lambda s: {**s, "iterations": True}),
    (
        "string-values",
        "error",
        lambda s: _role(s, values=["a"] * len(s["roles"]["buyer"]["values"])),
    ),
    (
        "string-bids",
        "error",
        lambda s: _role(s, bids=["1"] * len(s["roles"]["buyer"]["bids"])),
    ),
    (
        "nan-bids",
        "error",
        lambda s: json.dumps(s).replace('"bids": [', '"bids": [NaN, ', 1),
    ),
    ("bids-short", "error", lambda s: _role(s, bids=s["roles"]["buyer"]["bids"][:3])),
    (
        "bids-1e308",
        "error",
        lambda s: _role(s, bids=[1e308] * len(s["roles"]["buyer"]["bids"])),
    ),
    ("roles-list", "error", lambda s: {**s, "roles": []}),
    ("no-buyer", "error", lambda s: {**s, "roles": {}}),
    ("list", "error", lambda s: []),
    ("empty", "error", lambda s: ""),
    ("binary", "error", lambda s: b"\x80\x81\x00" * 10),
    ("format-other", "error", lambda s: {**s, "format": "pickle/1"}),
    (
        "another-market",
        "error",
        lambda s: {**s, "market": {**s["market"], "n_buyers": 5}},
    ),
    ("utility-loss-string", "error", lambda s: _role(s, utility_loss="small")),
    ("strategy-nested-strings", "error", lambda s: _role(s, strategy=[["x"]])),
]


def _role(s: dict[str, Any], **change: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(s))
    out["roles"]["buyer"].update(change)
    return out


def _write_mutation(path: Path, content: Any) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))


def _eq_cfg(ctx: Ctx, path: Path) -> Path:
    cfg = patched(
        EQUILIBRIUM,
        {"agents": {"buyer": {"kind": "equilibrium", "params": {"path": str(path)}}}},
    )
    return write_yaml(ctx.case / "eq.yaml", cfg)


def _eq_file_case(
    name: str, expect: str, mutate: Callable[[dict[str, Any]], Any]
) -> Case:
    def build(ctx: Ctx) -> list[list[str]]:
        path = ctx.case / "equilibrium.json"
        _write_mutation(path, mutate(_solution(ctx)))
        return [cli("simulate", _eq_cfg(ctx, path), "--json")]

    return Case(
        f"eq-file-{name}", "equilibria", expect, build, guard=("equilibrium.json",)
    )


def _cache_case(name: str, mutate: Callable[[dict[str, Any]], Any]) -> Case:
    """A doctored cache entry is solved again (as documented): exit 0."""

    def build(ctx: Ctx) -> list[list[str]]:
        shutil.copytree(ctx.fixtures / "cache", ctx.case / "cache", symlinks=True)
        _write_mutation(_cache_file(ctx.case / "cache"), mutate(_solution(ctx)))
        return [
            cli("simulate", write_yaml(ctx.case / "eq.yaml", EQUILIBRIUM), "--json")
        ]

    return Case(f"eq-cache-{name}", "equilibria", "ok", build)


def _eq_special_cases() -> list[Case]:
    def file_kind(kind: str) -> Build:
        def build(ctx: Ctx) -> list[list[str]]:
            path = ctx.case / "equilibrium.json"
            if kind == "fifo":
                _fifo(path)
            elif kind == "dev-zero":
                path.symlink_to("/dev/zero")
            elif kind == "sparse":
                _sparse(path, 2**31)
            elif kind == "folder-empty":
                path = ctx.case / "eqdir"
                path.mkdir()
            elif kind == "folder":
                path = ctx.case / "eqdir"
                path.mkdir()
                (path / "equilibrium.json").write_text(json.dumps(_solution(ctx)))
            elif kind == "pickle":
                path.write_bytes(_pickle_payload(ctx.marker))
            elif kind == "yaml-tag":
                path.write_text(_payload_yaml(ctx.marker))
            return [cli("simulate", _eq_cfg(ctx, path), "--json")]

        return build

    def cache_kind(kind: str) -> Build:
        def build(ctx: Ctx) -> list[list[str]]:
            shutil.copytree(ctx.fixtures / "cache", ctx.case / "cache", symlinks=True)
            entry = _cache_file(ctx.case / "cache")
            entry.unlink()
            if kind == "fifo":
                _fifo(entry)
            elif kind == "dev-zero":
                entry.symlink_to("/dev/zero")
            elif kind == "victim-link":
                (ctx.victim / "solution.json").write_text('{"mine": true}')
                entry.symlink_to(ctx.victim / "solution.json")
            elif kind == "sparse":
                _sparse(entry, 2**31)
            elif kind == "pickle":
                entry.write_bytes(_pickle_payload(ctx.marker))
            return [
                cli("simulate", write_yaml(ctx.case / "eq.yaml", EQUILIBRIUM), "--json")
            ]

        return build

    group = "equilibria"
    cases = [
        Case(f"eq-file-{k}", group, "error", file_kind(k))
        for k in ("fifo", "dev-zero", "sparse", "folder-empty", "pickle", "yaml-tag")
    ]
    cases.append(Case("eq-file-folder", group, "ok", file_kind("folder")))
    cases += [
        Case(f"eq-cache-{k}", group, "ok", cache_kind(k))
        for k in ("fifo", "dev-zero", "victim-link", "sparse", "pickle")
    ]

    def solve_out_symlink(ctx: Ctx) -> list[list[str]]:
        (ctx.victim / "equilibrium.json").write_text("mine")
        (ctx.case / "out").mkdir()
        (ctx.case / "out" / "equilibrium.json").symlink_to(
            ctx.victim / "equilibrium.json"
        )
        return [
            cli(
                "solve",
                write_yaml(ctx.case / "eq.yaml", EQUILIBRIUM),
                "--out",
                ctx.case / "out",
                "--json",
            )
        ]

    cases.append(Case("eq-solve-out-symlink", group, "error", solve_out_symlink))
    return cases


# banks --------------------------------------------------------------------------------


def _bank_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """The six arrays of a valid bank (what a build writes), made with numpy."""
    rng = np.random.default_rng(seed)
    alpha = np.zeros((N_Q, N_P, K_MAX, K_MAX), dtype=np.float32)
    for k in range(1, K_MAX + 1):
        shares = rng.dirichlet(np.ones(k), size=(N_Q, N_P))
        alpha[:, :, k - 1, :k] = -np.sort(-shares, axis=-1)
    cands = np.stack([rng.permutation(20)[:N_C] for _ in range(N_Q)])
    return {
        "queries": np.arange(N_Q, dtype=np.int32),
        "candidates": cands.astype(np.int32),
        "own": rng.random((N_Q, N_C)) < 0.3,
        "relevance_raw": rng.uniform(0.1, 0.9, (N_Q, N_C)).astype(np.float32),
        "page_candidates": cands[:, None, :K_MAX].repeat(N_P, axis=1).astype(np.int32),
        "alpha": alpha,
    }


def _write_bank(folder: Path, manifest: Any = None, **replace: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {**_bank_arrays(), **replace}
    for name, array in arrays.items():
        if array is not None:
            np.save(folder / f"{name}.npy", array, allow_pickle=True)
    doc = {"format": 1, "corpus_hash": "x" * 64} if manifest is None else manifest
    _write_mutation(folder / "manifest.json", doc)
    return folder


def _bank_cfg(ctx: Ctx, bank: Path) -> Path:
    cfg = {
        "seed": 0,
        "env": {
            "mechanism": "gsp",
            "n_buyers": 3,
            "n_slots": 2,
            "valuation": "attention",
            "valuation_params": {"bank_path": str(bank), "relevance": "max"},
        },
        "episodes": 8,
    }
    return write_yaml(ctx.case / "bank.yaml", cfg)


def _bank_case(name: str, expect: str, make: Callable[[Ctx, Path], None]) -> Case:
    def build(ctx: Ctx) -> list[list[str]]:
        bank = ctx.case / "bank"
        make(ctx, bank)
        return [cli("simulate", _bank_cfg(ctx, bank), "--json")]

    return Case(f"bank-{name}", "banks", expect, build, guard=("bank",))


def _bank_cases() -> list[Case]:
    arr = _bank_arrays()

    def replace_file(name: str, kind: str) -> Callable[[Ctx, Path], None]:
        def make(ctx: Ctx, bank: Path) -> None:
            _write_bank(bank)
            path = bank / name
            path.unlink()
            if kind == "fifo":
                _fifo(path)
            elif kind == "dev-zero":
                path.symlink_to("/dev/zero")
            elif kind == "victim-link":
                np.save(ctx.victim / name, arr[name.removesuffix(".npy")])
                path.symlink_to(ctx.victim / name)
            elif kind == "sparse":
                _sparse(path, 2**31)
            elif kind == "truncated":
                np.save(path, arr[name.removesuffix(".npy")])
                path.write_bytes(path.read_bytes()[:100])
            elif kind == "pickle":
                path.write_bytes(_pickle_payload(ctx.marker))
            elif kind == "missing":
                pass

        return make

    def arrays(**replace: Any) -> Callable[[Ctx, Path], None]:
        return lambda ctx, bank: _write_bank(bank, **replace)

    def manifest(doc: Any) -> Callable[[Ctx, Path], None]:
        return lambda ctx, bank: _write_bank(bank, manifest=doc)

    def object_array(ctx: Ctx, bank: Path) -> None:
        class _P:
            def __reduce__(self):
                return (open, (str(ctx.marker), "w"))

        obj = np.empty((N_Q, N_C), dtype=object)
        obj[:] = None
        obj[0, 0] = _P()
        _write_bank(bank, relevance_raw=obj)

    def bank_is_file(ctx: Ctx, bank: Path) -> None:
        bank.write_text("not a bank")

    def bank_missing(ctx: Ctx, bank: Path) -> None:
        pass

    rel = arr["relevance_raw"]
    cases = [
        _bank_case("valid", "ok", arrays()),
        _bank_case("manifest-list", "error", manifest([])),
        _bank_case("manifest-string", "error", manifest("bank")),
        _bank_case("manifest-deep", "error", manifest(_nest_list(100000))),
        _bank_case(
            "manifest-format-true",
            "error",
            manifest({"format": True, "corpus_hash": "x" * 64}),
        ),
        _bank_case("manifest-format-1e400", "error", manifest('{"format": 1e400}')),
        _bank_case("alpha-1d", "error", arrays(alpha=np.ones(4, np.float32))),
        _bank_case(
            "alpha-3d", "error", arrays(alpha=np.ones((N_Q, N_P, K_MAX), np.float32))
        ),
        _bank_case("alpha-negative", "error", arrays(alpha=-arr["alpha"])),
        _bank_case(
            "alpha-nan", "error", arrays(alpha=np.full_like(arr["alpha"], np.nan))
        ),
        _bank_case("alpha-strings", "error", arrays(alpha=arr["alpha"].astype(str))),
        _bank_case(
            "relevance-complex",
            "error",
            arrays(relevance_raw=rel.astype(np.complex64) + 1j),
        ),
        _bank_case(
            "relevance-nan", "error", arrays(relevance_raw=np.full_like(rel, np.nan))
        ),
        _bank_case(
            "relevance-inf", "error", arrays(relevance_raw=np.full_like(rel, np.inf))
        ),
        _bank_case("relevance-wrong-shape", "error", arrays(relevance_raw=rel[:, :2])),
        _bank_case("relevance-object-pickle", "error", object_array),
        _bank_case(
            "candidates-float",
            "error",
            arrays(candidates=arr["candidates"].astype(np.float64)),
        ),
        _bank_case("queries-empty", "error", arrays(queries=np.zeros(0, np.int32))),
        _bank_case("bank-is-a-file", "error", bank_is_file),
        _bank_case("bank-missing", "error", bank_missing),
    ]
    for name, kind in (
        ("alpha.npy", "fifo"),
        ("alpha.npy", "dev-zero"),
        ("alpha.npy", "victim-link"),
        ("alpha.npy", "sparse"),
        ("alpha.npy", "truncated"),
        ("alpha.npy", "pickle"),
        ("alpha.npy", "missing"),
        ("manifest.json", "fifo"),
        ("manifest.json", "dev-zero"),
        ("relevance_raw.npy", "fifo"),
    ):
        label = name.split(".")[0].replace("_", "-")
        cases.append(_bank_case(f"{label}-{kind}", "error", replace_file(name, kind)))
    return cases


# mechanism inputs through the Python API ---------------------------------------------

_MECH_HEAD = """
import sys
import numpy as np
from attn_env import mechanisms
RTOL = 1e-6
def bad(msg):
    print("violated: " + msg, file=sys.stderr); sys.exit(1)
def check(out, pay_cap, name):
    for field in ("pay", "price"):
        a = np.asarray(getattr(out, field), dtype=float)
        if not np.isfinite(a).all(): bad(f"{name}: {field} not finite")
    if (np.asarray(out.pay) < 0).any(): bad(f"{name}: negative pay")
    over = np.asarray(out.pay) > pay_cap * (1 + RTOL) + 1e-300
    if over.any():
        i = np.argwhere(over)[0]
        pay, cap = out.pay[tuple(i)], pay_cap[tuple(i)]
        bad(f"{name}: pays {pay:.4g} over its bid/value {cap:.4g}")
rng = np.random.default_rng(0)
try:
"""
_MECH_TAIL = """
except ValueError as err:
    print("refused: " + " ".join(str(err).split()), file=sys.stderr); sys.exit(2)
"""


def _mech_code(body: str) -> str:
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return _MECH_HEAD + indented + _MECH_TAIL


def _one_sided(name: str, bids: str, k: int = 2, weights: str | None = None) -> str:
    weights = weights or f"np.linspace(1.0, 0.5, {k})"
    return f"""
bids = {bids}
w = {weights}
out = mechanisms.make({name!r}, seed=0).clear(bids, weights=w)
check(out, bids * np.asarray(out.alloc), {name!r})
"""


def _two_sided(name: str, bids: str, asks: str) -> str:
    return f"""
bids, asks = {bids}, {asks}
out = mechanisms.make({name!r}, seed=0).clear(bids, asks)
check(out, bids * (np.asarray(out.alloc) > 0), {name!r})
rec = np.asarray(out.seller_receipt)
if not np.isfinite(rec).all(): bad("receipt not finite")
sold = np.asarray(out.seller_alloc) > 0
if (rec[sold] < asks[sold] * (1 - RTOL)).any(): bad("a seller receives under its ask")
"""


def _matching(name: str, values: str, weights: str | None = None) -> str:
    w = f", weights={weights}" if weights else ""
    return f"""
values = {values}
out = mechanisms.make({name!r}, seed=0).clear(values{w})
slot = np.asarray(out.slot)
own = np.take_along_axis(values, np.maximum(slot, 0)[..., None], 2)[..., 0]
check(out, np.where(slot >= 0, own, 0.0), {name!r})
"""


def _logu(lo: float, hi: float, shape: tuple[int, ...]) -> str:
    return f"np.exp(rng.uniform(np.log({lo!r}), np.log({hi!r}), {shape}))"


ONE_SIDED = ("first_price", "second_price", "gsp", "vcg")
TWO_SIDED = ("k_double", "mcafee", "call_market", "cda")
MATCHING = ("assignment", "stable_matching")


def _mechanism_cases() -> list[Case]:
    specs: list[tuple[str, str, str]] = [
        (
            "assignment-values-1-to-1e17-ir",
            "ok",
            _matching("assignment", _logu(1.0, 1e17, (200, 4, 3))),
        ),
        (
            "assignment-full-range-ir",
            "ok",
            _matching("assignment", _logu(1e-150, 1e150, (200, 4, 3))),
        ),
        (
            "vcg-1e150-finite",
            "ok",
            _one_sided(
                "vcg",
                "np.array([[1e150, 1.0, 0.5], [1e150, 1e150, 1.0]])",
                weights="np.array([1.0, 0.5])",
            ),
        ),
        (
            "stable-matching-weight-1e-300",
            "error",
            _matching(
                "stable_matching",
                "rng.uniform(0.1, 1, (4, 3, 2))",
                "np.array([1.0, 1e-300])",
            ),
        ),
        (
            "stable-matching-weight-1e-150",
            "ok",
            _matching(
                "stable_matching",
                "rng.uniform(0.1, 1, (4, 3, 2))",
                "np.array([1.0, 1e-150])",
            ),
        ),
    ]
    for name in ONE_SIDED:
        k = 1 if name == "second_price" else 2
        specs += [
            (
                f"{name}-range-ends",
                "ok",
                _one_sided(name, _logu(1e-150, 1e150, (64, 4)), k),
            ),
            (
                f"{name}-bid-1e200",
                "error",
                _one_sided(name, "np.array([[1e200, 1.0, 0.5]])", k),
            ),
            (
                f"{name}-bid-nan",
                "error",
                _one_sided(name, "np.array([[np.nan, 1.0, 0.5]])", k),
            ),
            (
                f"{name}-bid-negative",
                "error",
                _one_sided(name, "np.array([[-1.0, 1.0, 0.5]])", k),
            ),
        ]
    for name in TWO_SIDED:
        specs += [
            (
                f"{name}-range-ends",
                "ok",
                _two_sided(
                    name, _logu(1e-150, 1e150, (64, 3)), _logu(1e-150, 1e150, (64, 3))
                ),
            ),
            (
                f"{name}-ask-inf",
                "error",
                _two_sided(name, "np.array([[1.0, 0.5]])", "np.array([[np.inf, 0.2]])"),
            ),
            (
                f"{name}-bid-1e200",
                "error",
                _two_sided(name, "np.array([[1e200, 0.5]])", "np.array([[0.1, 0.2]])"),
            ),
        ]
    for name in MATCHING:
        specs += [
            (
                f"{name}-range-ends",
                "ok",
                _matching(name, _logu(1e-150, 1e150, (64, 3, 2))),
            ),
            (
                f"{name}-value-nan",
                "error",
                _matching(name, "np.full((1, 2, 2), np.nan)"),
            ),
        ]
    return [
        Case(
            f"mech-{name}",
            "mechanisms",
            expect,
            lambda ctx, c=code: [py(_mech_code(c))],
        )
        for name, expect, code in specs
    ]


# RLlib --address (optional) ----------------------------------------------------------


def _ray_cases() -> list[Case]:
    cfg = patched(
        LEARN, {"train": {"backend": "rllib", "total_timesteps": 64, "num_envs": 2}}
    )

    def address(kind: str) -> Build:
        def build(ctx: Ctx) -> list[list[str]]:
            path = write_yaml(ctx.case / "rllib.yaml", cfg)
            addr = {
                "not-ray": f"127.0.0.1:{ctx.ports['garbage']}",
                "closed-port": "127.0.0.1:9",
                "unroutable": "10.255.255.1:6379",
            }[kind]
            return [
                cli(
                    "train",
                    path,
                    "--out",
                    ctx.case / "out",
                    "--address",
                    addr,
                    "--no-progress",
                )
            ]

        return build

    return [
        Case(f"ray-address-{k}", "rllib", "error", address(k), heavy=True, ray=True)
        for k in ("not-ray", "closed-port", "unroutable")
    ]


class GarbageServer:
    """A local TCP port that is not Ray: accepts, writes junk, keeps quiet."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nnot ray\n")

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def all_cases(with_ray: bool = False) -> list[Case]:
    """Every case of the suite (the RLlib group only with ``with_ray``)."""
    cases = [_config_case(*c) for c in CONFIG_TEXTS]
    cases += _config_file_cases()
    cases += [_train_case(*c) for c in TRAIN_TEXTS]
    cases += _run_cases()
    cases += [_eq_file_case(*c) for c in EQ_MUTATIONS]
    cases += [_cache_case(n, m) for n, e, m in EQ_MUTATIONS if n != "valid"]
    cases += _eq_special_cases()
    cases += _bank_cases()
    cases += _mechanism_cases()
    if with_ray:
        cases += _ray_cases()
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RuntimeError(f"duplicate case names: {sorted(dupes)}")
    return cases


# -- running ---------------------------------------------------------------------------


def snapshot(
    root: Path, skip: Path | None = None, marker: Path | None = None
) -> dict[str, Any]:
    """Every entry under ``root`` (except ``skip`` and ``marker``): kind, size,
    mtime, content hash or link target. Symlinks are recorded, never followed."""
    out: dict[str, Any] = {}
    if not os.path.lexists(root):
        return out
    stack = [root]
    while stack:
        path = stack.pop()
        if (skip is not None and path == skip) or path == marker:
            continue
        info = os.lstat(path)
        rel = str(path.relative_to(root.parent))
        if stat.S_ISLNK(info.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            out[rel] = ("dir",)  # its entries are recorded one by one
            stack.extend(path.iterdir())
        elif stat.S_ISREG(info.st_mode):
            digest = (
                hashlib.sha256(path.read_bytes()).hexdigest()
                if info.st_size < 2**26
                else ""
            )
            out[rel] = ("file", info.st_size, info.st_mtime_ns, digest)
        else:
            out[rel] = ("special", stat.S_IFMT(info.st_mode))
    return out


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k))


@dataclass
class Result:
    """What one case did."""

    name: str
    group: str
    expect: str
    outcome: str = ""
    exit_codes: list[int | None] = field(default_factory=list)
    traceback: bool = False
    hang: bool = False
    changed_outside: list[str] = field(default_factory=list)
    changed_guarded: list[str] = field(default_factory=list)
    executed: bool = False
    seconds: float = 0.0
    stderr_tail: str = ""
    setup_error: str = ""

    @property
    def passed(self) -> bool:
        return not (
            self.setup_error
            or self.traceback
            or self.hang
            or self.changed_outside
            or self.changed_guarded
            or self.executed
            or self.outcome != self.expect
        )


def _classify(code: int | None, stderr: str) -> str:
    if code is None:
        return "hang"
    if TRACEBACK in stderr:
        return "traceback"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if code == 0:
        return "ok"
    if code == 2 and len(lines) == 1:
        return "error"
    return f"exit {code}, {len(lines)} lines"


def _combine(outcomes: list[str]) -> str:
    if len(outcomes) == 1:
        return outcomes[0]
    if sorted(outcomes) == ["error", "ok"]:
        return "one-ok-one-error"
    return " + ".join(outcomes)


def _env(src: Path, case: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTHONPATH"))
    }
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(src), os.environ.get("PYTHONPATH")])
    )
    for name, sub in (
        ("HOME", "home"),
        ("ATTN_MARKET_CACHE", "cache"),
        ("MPLCONFIGDIR", "mpl"),
        ("TMPDIR", "tmp"),
    ):
        (case / sub).mkdir(exist_ok=True)
        env[name] = str(case / sub)
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        COLUMNS="200",
    )
    return env


def _start(argv: list[str], ctx: Ctx, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=ctx.case,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _wait_all(
    procs: list[subprocess.Popen], timeout: float
) -> list[tuple[int | None, str]]:
    """Each process's exit code (``None`` if it ran past ``timeout``) and stderr."""
    deadline = time.monotonic() + timeout
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=max(0.01, deadline - time.monotonic()))
            results.append((proc.returncode, err.decode("utf-8", "replace")))
        except subprocess.TimeoutExpired:
            _kill(proc)
            _, err = proc.communicate()
            results.append((None, err.decode("utf-8", "replace")))
    for proc in procs:  # children left behind (Ray workers, a stuck reader)
        _kill(proc)
    return results


def _unblock_fifos(root: Path) -> None:
    """Open every fifo under ``root`` for writing once, so no reader stays stuck."""
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def run_case(
    case: Case,
    src: Path,
    fixtures: Path,
    work: Path,
    ports: dict[str, int],
    scale: float = 1.0,
) -> Result:
    """Build ``case`` in a fresh folder under ``work``, run it, judge it."""
    result = Result(case.name, case.group, case.expect)
    root = Path(tempfile.mkdtemp(prefix=f"{case.name[:40]}-", dir=work))
    ctx = Ctx(root / "case", root / "victim", root / "PWNED", fixtures, ports)
    ctx.case.mkdir()
    ctx.victim.mkdir()
    for i in range(3):
        (ctx.victim / f"file{i}.txt").write_text(f"victim {i}\n")
    (ctx.victim / "sub").mkdir()
    (ctx.victim / "sub" / "data.json").write_text('{"keep": true}')
    try:
        if case.needs_run:
            shutil.copytree(fixtures / "run", ctx.case / "run", symlinks=True)
        commands = case.build(ctx)
    except Exception as err:  # a broken case: reported, never counted as passed
        result.setup_error = f"{type(err).__name__}: {err}"
        return result
    env = _env(src, ctx.case)
    outside = snapshot(root, skip=ctx.case, marker=ctx.marker)
    guarded = {g: snapshot(ctx.case / g) for g in case.guard}
    start = time.monotonic()
    procs = [_start(argv, ctx, env) for argv in commands]
    done = _wait_all(procs, case.timeout(scale))
    result.seconds = round(time.monotonic() - start, 2)
    _unblock_fifos(ctx.case)
    result.exit_codes = [code for code, _ in done]
    result.hang = any(code is None for code, _ in done)
    result.traceback = any(TRACEBACK in err for _, err in done)
    result.outcome = _combine([_classify(code, err) for code, err in done])
    if case.expect == "warn" and result.outcome == "ok":
        said = all("warning:" in err for _, err in done)
        result.outcome = "warn" if said else "ok (silent)"
    result.stderr_tail = " | ".join(
        " ".join(err.strip().splitlines()[-1:])[:300] for _, err in done
    )
    result.changed_outside = _changed(
        outside, snapshot(root, skip=ctx.case, marker=ctx.marker)
    )
    result.changed_guarded = [
        g for g in case.guard if snapshot(ctx.case / g) != guarded[g]
    ]
    result.executed = ctx.marker.exists()
    return result


def make_fixtures(src: Path, folder: Path) -> None:
    """The tiny trained run and the solver cache, made by the tree under test."""
    folder.mkdir(parents=True, exist_ok=True)
    env = _env(src, folder)
    steps = [
        (
            [
                "train",
                write_yaml(folder / "learn.yaml", LEARN),
                "--out",
                folder / "run",
                "--no-progress",
            ],
            {},
        ),
        (
            ["simulate", write_yaml(folder / "eq.yaml", EQUILIBRIUM), "--json"],
            {"ATTN_MARKET_CACHE": str(folder / "cache")},
        ),
    ]
    for args, extra in steps:
        proc = subprocess.run(
            [sys.executable, *cli(*args)],
            cwd=folder,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise SystemExit(
                f"fixture {' '.join(map(str, args[:1]))} failed:\n{proc.stderr}"
            )
    (folder / "run" / ".lock").unlink(missing_ok=True)


def run_suite(
    cases: list[Case],
    src: Path,
    jobs: int = 2,
    progress: bool = True,
    keep: Path | None = None,
    scale: float = 1.0,
) -> list[Result]:
    """Run ``cases`` against the tree ``src``; the fixtures are made first if needed."""
    from tqdm import tqdm

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hostile-", dir=keep))
    fixtures = work / "fixtures"
    if any(c.needs_run or c.group == "equilibria" for c in cases):
        make_fixtures(src, fixtures)
    server = GarbageServer() if any(c.ray for c in cases) else None
    ports = {"garbage": server.port} if server else {}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            (work / "cases").mkdir(exist_ok=True)
            futures = [
                pool.submit(run_case, c, src, fixtures, work / "cases", ports, scale)
                for c in cases
            ]
            bar = tqdm(total=len(futures), disable=not progress, desc="hostile inputs")
            for _ in concurrent.futures.as_completed(futures):
                bar.update()
            bar.close()
            results = [f.result() for f in futures]
    finally:
        if server:
            server.close()
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return results


def summary(results: list[Result]) -> dict[str, Any]:
    """The suite's counts (issue 19 item 6) and the failing cases."""
    return {
        "cases": len(results),
        "passed": sum(r.passed for r in results),
        "tracebacks": sum(r.traceback for r in results),
        "hangs": sum(r.hang for r in results),
        "changed_outside": sum(bool(r.changed_outside) for r in results),
        "changed_guarded": sum(bool(r.changed_guarded) for r in results),
        "code_executions": sum(r.executed for r in results),
        "wrong_outcome": sum(r.outcome != r.expect for r in results),
        "setup_errors": sum(bool(r.setup_error) for r in results),
        "failing": [r.name for r in results if not r.passed],
    }


def print_report(results: list[Result], src: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    table = Table(title=f"hostile inputs against {src}")
    for col in (
        "case",
        "expect",
        "outcome",
        "exit",
        "tb",
        "hang",
        "outside",
        "exec",
        "s",
        "last stderr line",
    ):
        table.add_column(col, overflow="fold")
    for r in sorted(results, key=lambda r: (r.passed, r.group, r.name)):
        style = None if r.passed else "red"
        table.add_row(
            r.name,
            r.expect,
            r.outcome or r.setup_error[:40],
            ",".join(map(str, r.exit_codes)),
            "X" if r.traceback else "",
            "X" if r.hang else "",
            str(len(r.changed_outside) + len(r.changed_guarded))
            if (r.changed_outside or r.changed_guarded)
            else "",
            "X" if r.executed else "",
            f"{r.seconds:.1f}",
            r.stderr_tail[:90],
            style=style,
        )
    console.print(table)
    s = summary(results)
    console.print(
        f"cases {s['cases']}, passed {s['passed']}: tracebacks {s['tracebacks']}, "
        f"hangs > limit {s['hangs']}, files changed outside {s['changed_outside']} "
        f"(guarded inputs {s['changed_guarded']}), "
        f"code executions {s['code_executions']}, "
        f"wrong outcome {s['wrong_outcome']}, setup errors {s['setup_errors']}"
    )
    if s["failing"]:
        console.print("failing: " + ", ".join(s["failing"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--src", type=Path, default=REPO, help="checkout to run the cases against"
    )
    parser.add_argument("--jobs", type=int, default=2, help="cases run in parallel")
    parser.add_argument(
        "--json", metavar="OUT", help="write the results here (atomically)"
    )
    parser.add_argument(
        "--only",
        default=None,
        help="only cases whose name holds one of these (comma-separated)",
    )
    parser.add_argument("--group", default=None, help="only this group")
    parser.add_argument(
        "--with-ray", action="store_true", help="add the (slow) RLlib cases"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the case folders under this folder",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="stretch every time limit (a machine busy with other work)",
    )
    args = parser.parse_args(argv)
    cases = all_cases(args.with_ray)
    if args.only:
        parts = args.only.split(",")
        cases = [c for c in cases if any(p in c.name for p in parts)]
    if args.group:
        cases = [c for c in cases if c.group == args.group]
    if args.list:
        for c in cases:
            print(f"{c.group:12} {c.name:50} {c.expect:18} {c.timeout():.0f} s")
        return 0
    src = args.src.resolve()
    start = time.monotonic()
    results = run_suite(
        cases,
        src,
        args.jobs,
        progress=sys.stderr.isatty(),
        keep=args.keep,
        scale=args.time_scale,
    )
    print_report(results, src)
    if args.json:
        from attn_env.fileio import atomic_write_text

        doc = {
            "src": str(src),
            "load": os.getloadavg(),
            "seconds": round(time.monotonic() - start, 1),
            "jobs": args.jobs,
            "time_scale": args.time_scale,
            "summary": summary(results),
            "results": [asdict(r) | {"passed": r.passed} for r in results],
        }
        atomic_write_text(args.json, json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
