"""``train: {backend: rllib}``: RLlib PPO runs written in our run format.

The training tests need ``ray[rllib]`` (in the ``dev`` extra); they are skipped
where it is missing. One trains with a local in-process Ray, one joins a real
Ray head started on 127.0.0.1 through ``--address``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attn_env.config import ExperimentConfig, TrainConfig, load_config
from attn_env.errors import UserError
from attn_market.cli import main
from training.train_config import check_train_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


def _config(**train) -> ExperimentConfig:
    base = load_config(ROOT / "configs" / "fpsb_n2.yaml")
    options = {
        "backend": "rllib",
        "squash": "sigmoid",
        "num_envs": 16,
        "n_steps": 16,
        "batch_size": 256,
        "total_timesteps": 1024,
        "checkpoint_every": 512,
        "anneal_lr": True,
        "lr_decay_steps": None,
        **train,
    }
    tc = dataclasses.replace(base.train, **options)
    return dataclasses.replace(base, train=tc, episodes=200)


def _yaml(tmp_path: Path, config: ExperimentConfig) -> Path:
    import yaml

    data = config.to_dict()
    path = tmp_path / "rl.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# -- bad input: one line, no Ray needed ------------------------------------------------


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(ValueError, match=r"train.backend must be one of sb3, rllib"):
        check_train_config(TrainConfig(backend="jax"))


def test_rllib_params_are_checked():
    with pytest.raises(ValueError, match="unknown keyword 'n_epochs' for backend"):
        check_train_config(TrainConfig(backend="rllib", algo_params={"n_epochs": 3}))
    with pytest.raises(ValueError, match="num_env_runners must be of type int"):
        check_train_config(
            TrainConfig(backend="rllib", algo_params={"num_env_runners": 1.5})
        )
    with pytest.raises(ValueError, match="not available with backend rllib"):
        check_train_config(TrainConfig(backend="rllib", algo="sac"))
    with pytest.raises(ValueError, match=r"log_std_init must be .* in \[-20, 2\]"):
        check_train_config(
            TrainConfig(backend="rllib", algo_params={"log_std_init": 3.0})
        )


def test_log_std_default_is_the_sigmoid_spread_only_under_clip():
    from training.rllib import CLIP_LOG_STD, log_std_default

    # an untrained sigmoid policy at s = 1/2 moves s by 1/4 per unit of raw action
    assert np.exp(CLIP_LOG_STD) == pytest.approx(0.25)
    assert log_std_default("shade_clip") == CLIP_LOG_STD
    assert log_std_default("shade") == 0.0 and log_std_default("absolute") == 0.0


def test_rllib_reads_the_configs_epochs_and_learning_rate_decay():
    """``train.n_epochs`` and ``anneal_lr`` mean the same on both backends:
    RLlib's ``num_epochs`` (``algo_params`` win) and a piecewise schedule that
    reaches 0 at ``total_timesteps`` agent-steps."""
    from training.rllib import _learning_rate, rllib_params

    assert rllib_params(_config(n_epochs=4))["num_epochs"] == 4
    assert (
        rllib_params(_config(n_epochs=4, algo_params={"num_epochs": 7}))["num_epochs"]
        == 7
    )
    tc = _config(learning_rate=1e-2, total_timesteps=2048, anneal_lr=False).train
    assert _learning_rate(tc, 2) == 1e-2
    annealed = dataclasses.replace(tc, anneal_lr=True)
    # 2,048 agent-steps = 64 env steps of 16 markets x 2 seats
    assert _learning_rate(annealed, 2) == [[0, 1e-2], [64, 0.0]]
    # harmonic: half the start at lr_decay_steps (32 env steps here), points on
    # the curve up to the end, linear between them within 1 % of it
    harmonic = dataclasses.replace(tc, anneal_lr=False, lr_decay_steps=1024)
    points = np.array(_learning_rate(harmonic, 2))
    assert points[0].tolist() == [0, 1e-2] and points[-1, 0] == 64
    assert [32, 5e-3] in points.tolist()
    np.testing.assert_allclose(points[:, 1], 1e-2 / (1 + points[:, 0] / 32))
    t = np.arange(65)
    between = np.interp(t, points[:, 0], points[:, 1])
    np.testing.assert_allclose(between, 1e-2 / (1 + t / 32), rtol=0.01)


@pytest.mark.parametrize(
    ("decay", "want"),
    [
        ({"anneal_lr": True}, [7.5e-3, 5e-3, 2.5e-3, 0.0]),
        # harmonic: 1e-2 / (1 + t / 1024) at t = 512, 1024, 1536, 2048
        (
            {"anneal_lr": False, "lr_decay_steps": 1024},
            [1e-2 / 1.5, 5e-3, 4e-3, 1e-2 / 3],
        ),
    ],
)
def test_a_decayed_rllib_run_follows_its_schedule(tmp_path, decay, want):
    pytest.importorskip("ray")
    from training.rllib import session

    config = _config(total_timesteps=2048, learning_rate=1e-2, **decay)
    seen = []
    with session(config, tmp_path / "run") as job:
        for _ in range(4):  # 4 PPO iterations of 512 agent-steps
            job.algo.train()
            optimizers = job.algo.learner_group._learner._named_optimizers
            seen.append(optimizers["buyer_default_optimizer"].param_groups[0]["lr"])
    assert seen == pytest.approx(want, rel=0.01)


def test_clip_squash_starts_rllib_from_the_narrower_log_std(tmp_path):
    pytest.importorskip("ray")
    from training.checkpoint import load_tensors
    from training.rllib import CLIP_LOG_STD, train

    run = tmp_path / "run"
    # one PPO iteration (16 markets x 16 steps x 2 seats) from the start
    config = _config(squash="clip", total_timesteps=512, learning_rate=3e-4)
    manifest = train(config, run, progress=False)
    entry = manifest["learners"]["buyer"]
    assert entry["rllib"]["log_std_init"] == CLIP_LOG_STD
    state = load_tensors(run / manifest["checkpoint"] / entry["model"], "rllib")
    # one iteration's Adam steps at lr 3e-4 move it by hundredths (measured:
    # 0.011); RLlib's own start, 0, is 1.39 away
    assert float(state["pi.log_std"][0]) == pytest.approx(CLIP_LOG_STD, abs=0.05)


def test_ray_missing_gives_the_install_command(tmp_path, monkeypatch, capsys):
    # training.rllib_env picks its env's base class at import: import the
    # backend afresh without ray, and drop those copies afterwards so later
    # tests get the real ones
    backend = ("training.rllib", "training.rllib_env", "training.ray_start")

    def drop() -> None:
        for name in backend:
            sys.modules.pop(name, None)

    drop()
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    path = _yaml(tmp_path, _config())
    try:
        assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    finally:
        drop()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert 'pip install -e ".[rllib]"' in err
    assert not (tmp_path / "run").exists()


def test_unreachable_address_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _yaml(tmp_path, _config())
    code = main(
        ["train", str(path), "--out", str(tmp_path / "run"), "--address",
         f"127.0.0.1:{port}"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "cannot reach a Ray cluster" in err and "ray start --head" in err


class _NotRay:
    """A local TCP server that accepts connections but is not Ray.

    ``reply``: bytes sent to every client at once (``b""``: stays silent).
    """

    def __init__(self, reply: bytes = b"") -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reply, self.conns = reply, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.reply:
                conn.sendall(self.reply)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


def _ray_processes() -> set[int]:
    """Pids of Ray processes (raylet, gcs_server, workers) this test process
    started: its descendants only, so a Ray of a test on another xdist worker
    does not count."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True
    )
    rows = [line.split(None, 2) for line in out.stdout.splitlines()]
    children: dict[int, list[int]] = {}
    args: dict[int, str] = {}
    for row in rows:
        pid, ppid = int(row[0]), int(row[1])
        children.setdefault(ppid, []).append(pid)
        args[pid] = row[2] if len(row) > 2 else ""
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    keys = ("raylet", "gcs_server", "ray::", "default_worker")
    return {pid for pid in found if any(k in args[pid] for k in keys)}


@pytest.mark.parametrize(
    "reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"], ids=["silent", "http"]
)
def test_an_address_that_is_not_ray_is_one_line_within_30s(tmp_path, capsys, reply):
    """Issue 19, item 5: a TCP port that accepts but is not Ray hung past 150 s."""
    ray = pytest.importorskip("ray")
    server = _NotRay(reply)
    before = _ray_processes()
    path = _yaml(tmp_path, _config())
    address = f"127.0.0.1:{server.port}"
    t0 = time.monotonic()
    try:
        code = main(["train", str(path), "--out", str(tmp_path / "run"),
                     "--address", address])  # fmt: skip
    finally:
        server.close()
    assert time.monotonic() - t0 <= 30
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and address in err, err
    assert "cannot reach a Ray cluster" in err
    assert not ray.is_initialized()
    assert _ray_processes() <= before  # no Ray process left behind


@pytest.mark.parametrize(
    "address", ["192.0.2.1:6379", "no-such-host.invalid:6379", "[::1]:1"]
)
def test_an_unroutable_or_unknown_address_is_one_line(tmp_path, capsys, address):
    """192.0.2.1 is TEST-NET-1: no route (or no answer) anywhere."""
    ray = pytest.importorskip("ray")
    path = _yaml(tmp_path, _config())
    t0 = time.monotonic()
    code = main(["train", str(path), "--out", str(tmp_path / "run"),
                 "--address", address])  # fmt: skip
    assert time.monotonic() - t0 <= 30
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and address in err, err
    assert not ray.is_initialized()


@pytest.mark.parametrize("address", ["6379", "host:", "host:99999", ":6379", "a:b"])
def test_a_malformed_address_is_one_line(address):
    from training.rllib import parse_address

    with pytest.raises(UserError, match="is not HOST:PORT"):
        parse_address(address)
    assert parse_address("ray://10.0.0.1:10001") == ("10.0.0.1", 10001)
    assert parse_address("[::1]:6379") == ("::1", 6379)


def test_address_needs_the_rllib_backend(tmp_path, capsys):
    config = dataclasses.replace(
        _config(), train=dataclasses.replace(_config().train, backend="sb3")
    )
    path = _yaml(tmp_path, config)
    code = main(["train", str(path), "--out", str(tmp_path / "r"), "--address", "x:1"])
    assert code == 2
    assert "need train.backend: rllib" in capsys.readouterr().err


def _three_buyers(**train) -> ExperimentConfig:
    config = _config(**train)
    return dataclasses.replace(config, env=dataclasses.replace(config.env, n_buyers=3))


def _member_policy(lr):
    """A fresh SB3 policy of the layout a pool member has (``net_arch [64, 64]``)."""
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    return ActorCriticPolicy(
        lr.obs_space,
        lr.action_map.space(),
        lambda _: 0.0,
        net_arch=[64, 64],
        activation_fn=torch.nn.Tanh,
        ortho_init=False,
    )


def test_self_play_env_plays_one_seat_per_market_and_the_pool():
    # no Ray started: the env alone, with a pool member of known actions
    pytest.importorskip("ray")

    from training.rllib import MarketMultiAgentEnv

    env = MarketMultiAgentEnv(
        {"experiment": _three_buyers(self_play_pool=2), "num_envs": 6}
    )
    # seat m mod 3 of market m is the learner's; the others are the pool's
    assert env.agents == [
        "buyer_0/0", "buyer_0/3", "buyer_1/1", "buyer_1/4", "buyer_2/2", "buyer_2/5"
    ]  # fmt: skip
    (lr,) = env.learners
    policy = _member_policy(lr)
    state = {k: v.numpy().copy() for k, v in policy.state_dict().items()}
    state["action_net.weight"][:] = 0.0
    state["action_net.bias"][:] = -1.5  # the member's raw action, whatever it sees
    state["log_std"][:] = -30.0  # it samples, with a negligible spread
    obs, _ = env.reset(seed=0)
    assert set(obs) == set(env.agents)
    with pytest.raises(RuntimeError, match="pool is empty"):
        env.step(dict.fromkeys(env.agents, np.zeros(1, np.float32)))
    assert env.set_pool("buyer", [("a.safetensors", state)]) == 1
    member = env.pools["buyer"].members[0]
    assert env.set_pool("buyer", [("a.safetensors", state)]) == 1
    assert env.pools["buyer"].members[0] is member  # kept, not rebuilt

    seen = []
    step = env.venv.step
    env.venv.step = lambda full: (seen.append(full.copy()), step(full))[1]
    env.reset(seed=1)
    acts = {a: np.full(1, 2.0, np.float32) for a in env.agents}
    _, rew, *_ = env.step(acts)
    (full,) = seen
    mine = np.arange(6) % 3
    learner = lr.action_map.to_action(np.array([[2.0]]))[0, 0]
    pooled = lr.action_map.to_action(np.array([[-1.5]]))[0, 0]
    for m in range(6):
        for j in range(3):
            want = learner if j == mine[m] else pooled
            assert full[m, j, 0] == pytest.approx(want, abs=1e-5), (m, j)
    assert set(rew) == set(env.agents)


def test_restarted_runner_pulls_the_pools_from_the_board():
    # an env runner that Ray (re)starts mid-run builds a fresh env with empty
    # pools: at its first reset it fills them from the trainer's pool board
    ray = pytest.importorskip("ray")

    from training.rllib import MarketMultiAgentEnv, pool_board

    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        board = pool_board(ray, "attn_market_pools_test")
        experiment = _three_buyers(self_play_pool=2)
        env = MarketMultiAgentEnv(
            {
                "experiment": experiment,
                "num_envs": 3,
                "pool_board": "attn_market_pools_test",
            }
        )
        env.reset(seed=0)  # the board is empty: the pool stays empty
        assert len(env.pools["buyer"]) == 0
        (lr,) = env.learners
        policy = _member_policy(lr)
        state = {k: v.numpy() for k, v in policy.state_dict().items()}
        ray.get(
            board.put.remote(
                {"buyer": [("a.safetensors", state), ("b.safetensors", state)]}
            )
        )
        env.reset(seed=1)
        assert len(env.pools["buyer"]) == 2
        _, rew, *_ = env.step({a: np.zeros(1, np.float32) for a in env.agents})
        assert set(rew) == set(env.agents)
    finally:
        ray.shutdown()


# -- training -------------------------------------------------------------------------


def _mlp_mean(state: dict, obs: np.ndarray) -> np.ndarray:
    """The RLModule's deterministic action, computed by hand from its weights."""
    h = obs.astype(np.float64)
    i = 0
    while f"encoder.actor_encoder.net.mlp.{i}.weight" in state:
        w = state[f"encoder.actor_encoder.net.mlp.{i}.weight"].double().numpy()
        b = state[f"encoder.actor_encoder.net.mlp.{i}.bias"].double().numpy()
        h = np.tanh(h @ w.T + b)
        i += 2
    w = state["pi.net.mlp.0.weight"].double().numpy()
    return h @ w.T + state["pi.net.mlp.0.bias"].double().numpy()


def test_rllib_run_loads_and_evaluates(tmp_path):
    pytest.importorskip("ray")
    from runner.evaluate import evaluate
    from training import load_policy
    from training.checkpoint import load_tensors
    from training.rllib import train

    run = tmp_path / "run"
    # a constant learning rate: the saved optimizer's lr is checked below
    manifest = train(_config(anneal_lr=False), run, progress=False)
    assert manifest["backend"] == "rllib" and manifest["finished"]
    assert manifest["timesteps"] >= 1024
    assert list((run / "tb" / "rllib").iterdir()), "no TensorBoard events"

    policy = load_policy(run, device="cpu")
    entry = manifest["learners"]["buyer"]
    state = load_tensors(run / manifest["checkpoint"] / entry["model"], "rllib")
    rng = np.random.default_rng(0)
    obs = rng.uniform(0, 1, (32, policy.by_role["buyer"].obs_dim)).astype(np.float32)
    obs[:, 3] = 0.0  # buyers
    raw = policy.by_role["buyer"].raw(obs)
    np.testing.assert_allclose(
        raw, np.clip(_mlp_mean(state, obs), -8, 8), rtol=1e-4, atol=1e-5
    )
    bids = policy.act(obs)
    assert bids.shape == (32, 1) and np.all((bids >= 0) & (bids <= obs[:, :1] + 1e-6))

    result = evaluate(
        _config(anneal_lr=False), run, episodes=200, samples=200, progress=False
    )
    assert np.isfinite(result["bne_l2"])
    assert result["timesteps"] == manifest["timesteps"]

    # --resume restores the optimizer state: with nothing left to train, the
    # checkpoint it writes holds exactly the state it loaded
    saved = load_tensors(run / manifest["checkpoint"] / entry["model"], "optimizer")
    (name,) = saved
    assert saved[name]["module_id"] == "buyer"
    adam = saved[name]["state"]
    assert (
        adam["state"]
        and adam["param_groups"][0]["lr"]
        == _config(anneal_lr=False).train.learning_rate
    )
    assert all(s["step"] > 0 for s in adam["state"].values())
    same = train(_config(anneal_lr=False), run, resume=True, progress=False)
    assert same["iterations"] == manifest["iterations"]
    back = load_tensors(run / same["checkpoint"] / entry["model"], "optimizer")
    _assert_same_tree(back, saved)

    # --resume continues training from the checkpoint's weights and optimizer
    more = dataclasses.replace(
        _config(anneal_lr=False),
        train=dataclasses.replace(_config(anneal_lr=False).train, total_timesteps=1536),
    )
    again = train(more, run, resume=True, progress=False)
    assert again["timesteps"] >= 1536 and again["iterations"] > manifest["iterations"]
    later = load_tensors(run / again["checkpoint"] / entry["model"], "optimizer")
    steps = [s["step"] for s in later[name]["state"]["state"].values()]
    assert all(
        n > s["step"] for n, s in zip(steps, adam["state"].values(), strict=True)
    )


def _assert_same_tree(a, b, where="") -> None:
    import torch

    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same_tree(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_tree(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


def test_rllib_self_play_writes_resumes_and_loads_its_pool(tmp_path):
    pytest.importorskip("ray")
    from training import load_policy
    from training.rllib import train

    run = tmp_path / "sp"
    # one learner seat per market: 16 agent-steps per env step, 256 per iteration
    first = train(
        _three_buyers(self_play_pool=2, total_timesteps=512), run, progress=False
    )
    assert first["timesteps"] == 512 and first["learners"]["buyer"]["timesteps"] == 512
    pool = first["pool"]["buyer"]
    # the initial policy, then one snapshot per iteration; the oldest left
    assert pool == ["000000000256.safetensors", "000000000512.safetensors"]
    files = sorted(p.name for p in (run / "pool" / "buyer").glob("*.safetensors"))
    assert files == pool

    again = train(
        _three_buyers(self_play_pool=2, total_timesteps=768),
        run,
        resume=True,
        progress=False,
    )
    assert again["timesteps"] == 768 and again["iterations"] == first["iterations"] + 1
    assert again["pool"]["buyer"] == [pool[1], "000000000768.safetensors"]
    files = sorted(p.name for p in (run / "pool" / "buyer").glob("*.safetensors"))
    assert files == again["pool"]["buyer"]

    policy = load_policy(run, device="cpu")
    obs = np.zeros((4, policy.by_role["buyer"].obs_dim), np.float32)
    obs[:, 0] = [0.2, 0.4, 0.6, 0.8]
    bids = policy.act(obs)
    assert bids.shape == (4, 1) and np.all((bids >= 0) & (bids <= obs[:, :1] + 1e-6))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# about 45 s (a real Ray head): in the default suite, so CI tests the --address path
def test_train_on_a_ray_head_through_address(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray")
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_bin is not None
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    port = _free_port()
    # its own process group: stopping it ends this head only, not other Rays
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
         "--disable-usage-stats"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:  # until the head listens
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                assert time.monotonic() < deadline, "ray head did not start"
                time.sleep(0.5)
        path = _yaml(tmp_path, _config(total_timesteps=512))
        out = tmp_path / "run"
        code = main(
            ["train", str(path), "--out", str(out), "--no-progress",
             "--address", f"127.0.0.1:{port}", "--num-env-runners", "1"]
        )  # fmt: skip
        assert code == 0, capsys.readouterr().err
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["timesteps"] >= 512
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["learners"]["buyer"]["rllib"]["num_env_runners"] == 1
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_ray_native_log_lines_are_kept_out_of_the_terminal(capfd):
    """What Ray's C++ core writes to fd 2 while joining is captured, fd 2 restored."""
    from training.ray_start import _last_reason, _native_stderr

    with _native_stderr() as logged:
        os.write(2, b"[2026-12-07 01:07:17,503 W 1 1] gcs_client.cc:210: first\n")
        os.write(2, b"[2026-12-07 01:07:18,519 W 1 1] gcs_client.cc:210: status 404\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert _last_reason("".join(logged)) == "gcs_client.cc:210: status 404"
