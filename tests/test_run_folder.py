"""A run folder is a sandbox (issue 19, item 1): every attack of the issue, rebuilt.

Each test builds the attack in ``tmp_path`` around a copy of one tiny trained run
(the TINY self-play config of ``test_untrusted_files``), runs ``attn-market
train`` on it, and asserts both halves: exit 2 with one line naming the culprit,
and a *victim* folder outside the run byte-for-byte unchanged (a snapshot of
every entry, its kind, bytes or link target, before and after).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from attn_env.errors import UnsafePathError, UserError
from attn_market.cli import main
from tests.test_untrusted_files import config
from training.run import (
    LOCK,
    MANIFEST,
    RunFolder,
    check_run_manifest,
    read_manifest,
    write_checkpoint,
)

pytest.importorskip("stable_baselines3")
pytestmark = pytest.mark.usefixtures("restore_torch_threads")


# -- helpers ------------------------------------------------------------------------


def snapshot(folder: Path, lock: bool = False) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under ``folder`` (links not followed): kind and bytes/target.

    A run's own lock file (rewritten by every writer) only with ``lock``.
    """
    out: dict[str, tuple[str, bytes | str]] = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", b"")
            else:
                out[rel] = ("file", path.read_bytes())
    if not lock:
        out.pop(LOCK, None)
    return out


def make_victim(tmp_path: Path) -> Path:
    """A folder a careless or hostile run folder points at: names of every kind."""
    victim = tmp_path / "victim"
    for name in ("alpha", "beta", "000000000001-0", "000000000002-0", ".staging-x"):
        (victim / name).mkdir(parents=True)
        (victim / name / "data.txt").write_text(f"precious {name}")
    (victim / "000000000003.safetensors").write_bytes(b"precious weights")
    (victim / "000000000512.safetensors").write_bytes(b"precious weights 512")
    (victim / "notes.txt").write_text("keep me")
    return victim


def cli_train(tmp_path: Path, out: Path, *extra: str, **train) -> int:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config(**train).to_dict(), sort_keys=False))
    return main(["train", str(cfg), "--out", str(out), "--no-progress", *extra])


def one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from training import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(config(), run, progress=False)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained, out, symlinks=True)
    return out


def edit(run: Path, change) -> None:
    manifest = json.loads((run / MANIFEST).read_text())
    change(manifest)
    (run / MANIFEST).write_text(json.dumps(manifest))


def resume_refused(tmp_path, run, capsys, victim, *words: str) -> None:
    """``train --resume`` exits 2 in one line and leaves ``victim`` as it was."""
    before = snapshot(victim)
    assert cli_train(tmp_path, run, "--resume", total_timesteps=768) == 2
    one_line_error(capsys, *words)
    assert snapshot(victim) == before


# -- issue 19's CRITICAL and HIGH cases ---------------------------------------------


def test_symlinked_checkpoints_with_a_second_name_deletes_nothing(
    run, tmp_path, capsys
):
    """CRITICAL: checkpoints/ -> victim, manifest checkpoint under ``ck/``."""
    victim = make_victim(tmp_path)
    ckpt = json.loads((run / MANIFEST).read_text())["checkpoint"]
    shutil.copytree(run / ckpt, victim / Path(ckpt).name)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").symlink_to(victim, target_is_directory=True)
    (run / "ck").symlink_to(victim, target_is_directory=True)
    edit(run, lambda m: m.update(checkpoint=f"ck/{Path(ckpt).name}"))
    resume_refused(tmp_path, run, capsys, victim, "manifest.json", "'ck/")


def test_symlinked_checkpoints_under_its_own_name_deletes_nothing(
    run, tmp_path, capsys
):
    victim = make_victim(tmp_path)
    ckpt = json.loads((run / MANIFEST).read_text())["checkpoint"]
    shutil.copytree(run / ckpt, victim / Path(ckpt).name)
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").symlink_to(victim, target_is_directory=True)
    resume_refused(tmp_path, run, capsys, victim, "'checkpoints' is a symlink")


def test_symlinked_pool_folder_with_an_empty_pool_deletes_nothing(
    run, tmp_path, capsys
):
    """HIGH: pool/<learner> -> victim and ``"pool": {}`` in the manifest."""
    victim = make_victim(tmp_path)
    shutil.rmtree(run / "pool" / "buyer")
    (run / "pool" / "buyer").symlink_to(victim, target_is_directory=True)
    edit(run, lambda m: m.update(pool={}))
    resume_refused(tmp_path, run, capsys, victim, "'pool/buyer' is a symlink")


def test_symlinked_pool_root_deletes_nothing(run, tmp_path, capsys):
    victim = make_victim(tmp_path)
    shutil.copytree(run / "pool", victim / "pool")
    before = snapshot(victim)
    shutil.rmtree(run / "pool")
    (run / "pool").symlink_to(victim / "pool", target_is_directory=True)
    assert cli_train(tmp_path, run, "--resume", total_timesteps=768) == 2
    one_line_error(capsys, "'pool' is a symlink")
    assert snapshot(victim) == before


def test_fresh_train_refuses_a_folder_it_did_not_create(tmp_path, capsys):
    """HIGH: ``train --out DIR`` with DIR holding checkpoints/{alpha,...}."""
    out = tmp_path / "out"
    for name in ("alpha", "beta", "gamma", "delta"):
        (out / "checkpoints" / name).mkdir(parents=True)
        (out / "checkpoints" / name / "data.txt").write_text(name)
    before = snapshot(out)
    assert cli_train(tmp_path, out) == 2
    one_line_error(capsys, str(out), "not empty", "checkpoints")
    assert snapshot(out) == before


def test_fresh_train_refuses_a_file_and_a_trained_run(run, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    assert cli_train(tmp_path, file) == 2
    one_line_error(capsys, "not a folder")
    before = snapshot(run)
    assert cli_train(tmp_path, run) == 2
    one_line_error(capsys, "already holds a trained run", "--resume")
    assert snapshot(run) == before


def test_fresh_train_takes_a_missing_or_empty_folder(tmp_path):
    for out in (tmp_path / "new" / "run", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        with RunFolder.fresh(out) as run:
            assert run.root == out.resolve() and (out / LOCK).is_file()
        # the lock file of a run that wrote nothing does not make it non-empty
        RunFolder.fresh(out).close()


# -- two writers, stale locks ---------------------------------------------------------


def test_a_second_writer_fails_at_once_naming_the_holder(run, tmp_path, capsys):
    before = snapshot(run, lock=True)
    with RunFolder(run) as holder:
        holder.lock()
        assert cli_train(tmp_path, run, "--resume", total_timesteps=768) == 2
        one_line_error(capsys, "in use by another training run", f"pid {os.getpid()}")
        with pytest.raises(UserError, match="in use by another"):
            RunFolder.resume(run)
    after = snapshot(run, lock=True)
    assert after.pop(LOCK)[1] != before.pop(LOCK)[1]  # the holder wrote its pid
    assert after == before


def test_two_fresh_runs_in_one_new_folder(tmp_path):
    out = tmp_path / "run"
    first = RunFolder.fresh(out)
    try:
        with pytest.raises(UserError, match=f"pid {os.getpid()}"):
            RunFolder.fresh(out)
    finally:
        first.close()


def test_a_stale_lock_is_taken_over_and_its_staging_cleaned(run, tmp_path):
    from training import train

    stale = "0123456789ab"
    (run / LOCK).write_text(
        json.dumps({"pid": 999_999_999, "host": "gone", "token": stale})
    )
    ckpts = run / "checkpoints"
    (ckpts / f".staging-{stale}-abc").mkdir()  # the dead run's half checkpoint
    (ckpts / ".staging-feedfacecafe-abc").mkdir()  # not the dead run's: kept
    manifest = train(config(total_timesteps=768), run, resume=True, progress=False)
    assert manifest["timesteps"] == 768
    names = sorted(p.name for p in ckpts.iterdir())
    assert ".staging-feedfacecafe-abc" in names
    assert not [n for n in names if n.startswith(f".staging-{stale}")]
    info = json.loads((run / LOCK).read_text())
    assert info["pid"] == os.getpid() and info["token"] != stale
    # released when the run ended: a third writer gets it at once
    with open(run / LOCK) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_lock_file_that_is_a_symlink_is_refused(run, tmp_path, capsys):
    victim = make_victim(tmp_path)
    (run / LOCK).unlink()
    (run / LOCK).symlink_to(victim / "notes.txt")
    resume_refused(tmp_path, run, capsys, victim, "'.lock' is a symlink")


# -- TensorBoard, symlink loops ------------------------------------------------------


@pytest.mark.parametrize("where", ["tb", "tb/buyer"])
def test_symlinked_tensorboard_folder_is_refused(run, tmp_path, capsys, where):
    victim = make_victim(tmp_path)
    link = run / where
    if link.exists():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim, target_is_directory=True)
    resume_refused(tmp_path, run, capsys, victim, f"'{where}' is a symlink")


def test_tensorboard_writes_only_inside_the_run(run, tmp_path):
    from training import train

    train(config(total_timesteps=768), run, resume=True, progress=False)
    events = list((run / "tb" / "buyer").glob("events.out.tfevents.*"))
    assert len(events) >= 2  # the first run's and the resumed run's


@pytest.mark.parametrize("where", ["checkpoints", "pool", "tb", "manifest.json"])
def test_a_symlink_loop_is_one_line(run, tmp_path, capsys, where):
    path = run / where
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(path)  # a loop: resolving it never ends
    assert cli_train(tmp_path, run, "--resume", total_timesteps=768) == 2
    one_line_error(capsys, f"'{where}' is a symlink")


def test_an_out_folder_that_is_a_symlink_loop_is_one_line(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for extra in ((), ("--resume",)):
        assert cli_train(tmp_path, loop / "run", *extra) == 2
        one_line_error(capsys, str(loop))


# -- the manifest's paths and numbers -----------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "words"),
    [
        ("checkpoints/alpha", "not a checkpoints/<steps>-<i> folder"),
        ("pool/buyer", "not a checkpoints/<steps>-<i> folder"),
        ("checkpoints/000000000512-0/..", "outside the run folder"),
        ("checkpoints", "not a checkpoints/<steps>-<i> folder"),
    ],
)
def test_the_manifest_checkpoint_must_be_one_of_the_runs(
    run, tmp_path, capsys, checkpoint, words
):
    victim = make_victim(tmp_path)
    edit(run, lambda m: m.update(checkpoint=checkpoint))
    resume_refused(tmp_path, run, capsys, victim, "manifest.json", words)


NUMBERS = {
    "n_epochs-float": (
        lambda m: m["learners"]["buyer"]["sb3"].update(n_epochs=1e9),
        "n_epochs",
    ),
    "n_epochs-huge": (
        lambda m: m["learners"]["buyer"]["sb3"].update(n_epochs=10**9),
        "n_epochs",
    ),
    "n_epochs-true": (
        lambda m: m["learners"]["buyer"]["sb3"].update(n_epochs=True),
        "n_epochs",
    ),
    "sb3-unknown-keyword": (
        lambda m: m["learners"]["buyer"]["sb3"].update(env="x"),
        "'env' is not a keyword",
    ),
    "sb3-net-arch": (
        lambda m: m["learners"]["buyer"]["sb3"].update(
            policy_kwargs={"net_arch": [10**9]}
        ),
        "net_arch",
    ),
    "sb3-buffer-class": (
        lambda m: m["learners"]["buyer"]["sb3"].update(rollout_buffer_class="os"),
        "rollout_buffer_class",
    ),
    "timesteps-true": (lambda m: m.update(timesteps=True), "'timesteps'"),
    "timesteps-negative": (lambda m: m.update(timesteps=-5), "'timesteps'"),
    "timesteps-huge": (lambda m: m.update(timesteps=10**30), "'timesteps'"),
    "learner-timesteps-true": (
        lambda m: m["learners"]["buyer"].update(timesteps=True),
        "'timesteps'",
    ),
    "turns-float": (lambda m: m.update(turns=2.5), "'turns'"),
    "wall-string": (lambda m: m.update(wall_s="x"), "'wall_s'"),
    "pool-name": (
        lambda m: m["pool"].update(buyer=["evil.safetensors"]),
        "snapshot name",
    ),
    "pool-of-no-learner": (
        lambda m: m["pool"].update(ghost=[]),
        "not a learner of the run",
    ),
    "learner-name": (
        lambda m: m["learners"].update({"../x": m["learners"]["buyer"]}),
        "not a plain learner name",
    ),
    "algo": (lambda m: m["learners"]["buyer"].update(algo="a2c"), "'algo'"),
}


@pytest.mark.parametrize("case", sorted(NUMBERS))
def test_manifest_fields_are_checked_for_type_and_range(run, tmp_path, capsys, case):
    change, word = NUMBERS[case]
    edit(run, change)
    victim = run  # a refused resume changes nothing in the run either
    resume_refused(tmp_path, run, capsys, victim, "manifest.json", word)


# -- pruning deletes only what the run made -------------------------------------------


def _ckpt(run_dir: Path, steps: int) -> Path:
    return write_checkpoint(
        run_dir, steps, {"buyer.safetensors": lambda p: p.write_bytes(b"w")}, {}
    )


def test_pruning_deletes_only_checkpoints_of_the_scheme(tmp_path):
    run_dir = tmp_path / "run"
    victim = make_victim(tmp_path)
    _ckpt(run_dir, 10)
    ckpts = run_dir / "checkpoints"
    (ckpts / "alpha").mkdir()
    (ckpts / "000000000001-0-extra").mkdir()
    (ckpts / ".staging-otherwriter1-x").mkdir()
    (ckpts / "000000000002-0").symlink_to(victim, target_is_directory=True)
    (ckpts / "000000000003-0").write_text("a file of the scheme's name")
    before = snapshot(victim)
    for steps in (20, 30, 40):
        _ckpt(run_dir, steps)
    names = sorted(p.name for p in ckpts.iterdir())
    assert names == [
        ".staging-otherwriter1-x",
        "000000000001-0-extra",
        "000000000002-0",
        "000000000003-0",
        "000000000030-0",
        "000000000040-0",
        "alpha",
    ]
    assert snapshot(victim) == before
    assert read_manifest(run_dir)["checkpoint"] == "checkpoints/000000000040-0"


def test_a_pool_deletes_only_snapshots_it_recorded(tmp_path):
    from training.actions import ActionMap
    from training.policy import build_policy
    from training.selfplay import SnapshotPool

    run_dir = tmp_path / "run"
    with RunFolder.fresh(run_dir) as run:
        folder = run.pool_folder("buyer")
        stray = folder / "000000000001.safetensors"
        stray.write_bytes(b"not ours")
        amap = ActionMap("shade", "buyer", 0.0, 1.0)
        pool = SnapshotPool(1, amap, run, "buyer")
        spec = {"class": "ActorCriticPolicy", "kwargs": _tiny_policy_kwargs()}
        for tag in (5, 6, 7):
            pool.add(build_policy("ppo", spec), tag)
            pool.prune_files()
        names = sorted(p.name for p in folder.iterdir())
        assert names == ["000000000001.safetensors", "000000000007.safetensors"]
        assert stray.read_bytes() == b"not ours"


def _tiny_policy_kwargs() -> dict:
    """A policy spec as the manifest stores it (from a real tiny run's manifest)."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.policies import ActorCriticPolicy

    from training.policy import policy_spec

    policy = ActorCriticPolicy(
        gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        lambda _: 0.0,
        net_arch=[4],
    )
    return policy_spec(policy)["kwargs"]


def test_checked_paths_refuse_every_escape(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "link").symlink_to(tmp_path)
    (run_dir / "file").write_text("x")
    run = RunFolder(run_dir)
    for rel, word in [
        ("../x", "outside the run folder"),
        ("/etc", "outside the run folder"),
        ("", "not a relative path"),
        ("a\\b", "not a relative path"),
        ("link/x", "'link' is a symlink"),
        ("link", "'link' is a symlink"),
        ("file/x", "'file' is not a folder"),
    ]:
        with pytest.raises(UnsafePathError, match=word):
            run.path_of(rel, "test path")
    assert run.path_of("checkpoints/new/deeper", "x") == (
        run_dir.resolve() / "checkpoints" / "new" / "deeper"
    )
    with pytest.raises(UnsafePathError, match="'link' is a symlink"):
        run.folder("link/sub", "x")
    assert not (tmp_path / "sub").exists()


def test_check_run_manifest_accepts_the_trained_run(trained):
    check_run_manifest(trained, read_manifest(trained))


# -- the typed manifest -------------------------------------------------------------


def test_typed_manifest_round_trips_the_written_file(trained):
    from training.manifest import parse_manifest

    data = read_manifest(trained)
    typed = parse_manifest(trained, data)
    # one place writes: what the trainer wrote is exactly what the typed form gives
    assert typed.to_dict() == data
    assert parse_manifest(trained, typed.to_dict()) == typed
    (name,) = typed.learners
    entry = typed.learners[name]
    assert typed.backend == entry.backend == "sb3"
    assert entry.action.mode == "shade"  # the TINY config's squash: sigmoid
    assert entry.timesteps == typed.timesteps and entry.seats == tuple(typed.agents)
    assert set(typed.pool[name]) == set(data["pool"][name])


TYPED = {
    "seed-string": (lambda m: m.update(seed="0"), "'seed' must be of type int"),
    "finished-int": (lambda m: m.update(finished=1), "'finished' must be of type"),
    "agents-empty": (lambda m: m.update(agents=[]), "'agents' must be a list"),
    "backend": (lambda m: m.update(backend="jax"), "'backend' must be one of sb3"),
    "action-low-high": (
        lambda m: m["learners"]["buyer"]["action"].update(low=1.0, high=0.0),
        "low < high",
    ),
    "action-mode": (
        lambda m: m["learners"]["buyer"]["action"].update(mode="teleport"),
        "unknown action map 'teleport'",
    ),
}


@pytest.mark.parametrize("case", sorted(TYPED))
def test_typed_fields_are_checked_in_one_line(run, case):
    change, words = TYPED[case]
    edit(run, change)
    with pytest.raises(UserError, match=r"manifest\.json") as err:
        check_run_manifest(run, read_manifest(run))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_sb3_refuses_to_resume_a_run_of_another_backend(run, tmp_path, capsys):
    victim = make_victim(tmp_path)
    edit(run, lambda m: m.update(backend="rllib"))
    resume_refused(
        tmp_path, run, capsys, victim, "backend sb3", "it was trained with rllib"
    )
