"""Untrusted files: a run folder never runs code, an output path is never clobbered.

A trained tiny run (self-play, so it holds model *and* pool files) is copied for
each test and doctored: pickles whose ``__reduce__`` creates a marker file are
planted in every file it holds, next to it (``evil.pkl``, a ``buyer.zip`` where
format 1 kept its SB3 model, a ``.pt`` pool snapshot), or its manifest is made
to point outside the folder. ``load_policy``, ``evaluate``, ``simulate`` with a
``kind: policy`` agent and ``train --resume`` must never create the marker; each
either works (the manifest does not name the doctored file) or fails with a
``ValueError``/``FileNotFoundError`` whose one-line message names the file.
The run folder's own sandbox (symlinks, pruning, the lock) is tested in
``test_run_folder.py``.

See ``docs/security.md``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from attn_env.config import AgentSpec, EnvConfig, ExperimentConfig, TrainConfig
from attn_env.fileio import atomic_save, atomic_write_text
from attn_env.observation import OBS_BASE_DIM, VALUE

pytest.importorskip("stable_baselines3")
pytest.importorskip("safetensors")

TINY = {
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


pytestmark = pytest.mark.usefixtures("restore_torch_threads")


def config(**train) -> ExperimentConfig:
    return ExperimentConfig(
        seed=0,
        env=EnvConfig(mechanism="first_price", n_buyers=3, action="shade"),
        agents={"buyer": AgentSpec(kind="learn")},
        episodes=16,
        train=TrainConfig(**{**TINY, **train}),
    )


# -- the payloads ---------------------------------------------------------------------


class _Payload:
    """Unpickling it creates ``marker`` (``open(marker, "w")``): proof of execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def raw_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def torch_pickle(marker: Path) -> bytes:
    """What ``torch.load(weights_only=False)`` (SB3's ``policy.pth``) would run."""
    import torch

    buf = io.BytesIO()
    torch.save({"state": _Payload(marker)}, buf)
    return buf.getvalue()


def sb3_zip(marker: Path) -> bytes:
    """An SB3 model zip whose ``observation_space`` entry unpickles the payload.

    The exploit of issue 11: ``PPO.load`` base64-decodes and unpickles it.
    """
    blob = base64.b64encode(raw_pickle(marker)).decode()
    data = {
        "observation_space": {":type:": "<class 'Box'>", ":serialized:": blob},
        "action_space": {":type:": "<class 'Box'>", ":serialized:": blob},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("data", json.dumps(data))
        zf.writestr("policy.pth", torch_pickle(marker))
        zf.writestr("pytorch_variables.pth", torch_pickle(marker))
        zf.writestr("_stable_baselines3_version", "2.3.0")
    return buf.getvalue()


def payload_for(path: Path, marker: Path) -> bytes:
    if path.suffix == ".zip":
        return sb3_zip(marker)
    if path.suffix in (".pt", ".pth", ".safetensors"):
        return torch_pickle(marker)
    return raw_pickle(marker)


def test_payloads_are_live(tmp_path):
    """The payloads do run code when unpickled the unsafe way (the test's control)."""
    import torch

    for i, make in enumerate((raw_pickle, torch_pickle, sb3_zip)):
        marker = tmp_path / f"marker{i}"
        blob = make(marker)
        if make is raw_pickle:
            pickle.loads(blob)
        elif make is torch_pickle:
            torch.load(io.BytesIO(blob), weights_only=False)
        else:
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                entry = json.loads(zf.read("data"))["observation_space"]
            pickle.loads(base64.b64decode(entry[":serialized:"]))
        assert marker.exists()


# -- a trained run and the four ways in -----------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from training import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(config(), run, progress=False)
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    return out


def _load(run: Path):
    from training import load_policy

    obs = np.zeros((2, OBS_BASE_DIM), np.float32)
    obs[:, VALUE] = [0.3, 0.8]
    return load_policy(run).act(obs)


def _evaluate(run: Path):
    from runner.evaluate import evaluate

    return evaluate(config(), run, episodes=16, samples=20)


def _simulate(run: Path):
    from runner.simulate import play

    cfg = dataclasses.replace(
        config(), agents={"buyer": AgentSpec(kind="policy", params={"path": str(run)})}
    )
    return play(cfg, episodes=16, progress=False)


def _resume(run: Path):
    from training import train

    return train(config(total_timesteps=768), run, resume=True, progress=False)


ENTRY_POINTS = {
    "load_policy": _load,
    "evaluate": _evaluate,
    "simulate": _simulate,
    "resume": _resume,
}


def _files(run: Path) -> list[Path]:
    return sorted(p for p in run.rglob("*") if p.is_file())


def _named(run: Path) -> dict[str, Path]:
    manifest = json.loads((run / "manifest.json").read_text())
    ckpt = run / manifest["checkpoint"]
    out = {"manifest": run / "manifest.json", "model": ckpt / "buyer.safetensors"}
    pool = manifest["pool"]["buyer"]
    out["pool"] = run / "pool" / "buyer" / pool[-1]
    return out


def _outcome(call, run: Path, marker: Path) -> str | None:
    """``None`` if the call worked, else its error's message; never any code run."""
    try:
        call(run)
        message = None
    except (ValueError, FileNotFoundError) as err:
        message = str(err)
        assert "\n" not in message, message
    assert not marker.exists(), "a planted pickle ran"
    return message


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload_for(path, marker))


def _strays(run: Path, marker: Path) -> list[Path]:
    """Files no manifest names, where the old format or an attacker would put them."""
    ckpt = json.loads((run / "manifest.json").read_text())["checkpoint"]
    strays = [
        run / "evil.pkl",
        run / ckpt / "buyer.zip",
        run / ckpt / "evil.safetensors",
        run / "pool" / "buyer" / "000000000001.pt",
        run / "pool" / "buyer" / "000000000001.safetensors",
        run / "tb" / "evil.pkl",
    ]
    for path in strays:
        _plant(path, marker)
    return strays


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_pickles_in_every_file_never_run(run, tmp_path, entry):
    """Every file of the run (manifest and config included) and strays: refused."""
    marker = tmp_path / "PWNED"
    _strays(run, marker)
    for path in _files(run):
        _plant(path, marker)
    message = _outcome(ENTRY_POINTS[entry], run, marker)
    assert message is not None and "manifest.json" in message


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_stray_files_the_manifest_does_not_name_are_ignored(run, tmp_path, entry):
    marker = tmp_path / "PWNED"
    _strays(run, marker)
    _plant(run / "config.yaml", marker)  # only `train` writes it, nothing reads it
    assert _outcome(ENTRY_POINTS[entry], run, marker) is None


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("target", ["model", "pool"])
def test_pickled_weights_are_refused_naming_the_file(run, tmp_path, entry, target):
    marker = tmp_path / "PWNED"
    path = _named(run)[target]
    _plant(path, marker)
    message = _outcome(ENTRY_POINTS[entry], run, marker)
    if target == "pool" and entry != "resume":
        assert message is None  # only --resume reads the self-play pool
    else:
        assert message is not None and str(path) in message


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_old_format_run_is_refused_without_reading_it(run, tmp_path, entry):
    """A format-1 run (SB3 zips, pickled) is refused with a line saying to retrain."""
    marker = tmp_path / "PWNED"
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["format"] = "attn-market-run/1"
    for name, learner in manifest["learners"].items():
        learner["model"] = f"{name}.zip"
        _plant(run / manifest["checkpoint"] / f"{name}.zip", marker)
    (run / "manifest.json").write_text(json.dumps(manifest))
    message = _outcome(ENTRY_POINTS[entry], run, marker)
    assert message is not None
    assert "manifest.json" in message and "retrain" in message


def _edit(run: Path, change) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    change(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))


ESCAPES = {
    "checkpoint-dotdot": lambda m: m.update(checkpoint="../elsewhere"),
    "checkpoint-absolute": lambda m: m.update(checkpoint="/tmp"),
    "model-dotdot": lambda m: m["learners"]["buyer"].update(
        model="../../../evil.safetensors"
    ),
    "model-absolute": lambda m: m["learners"]["buyer"].update(
        model="/etc/evil.safetensors"
    ),
    "pool-dotdot": lambda m: m["pool"].update(buyer=["../../evil.safetensors"]),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_manifest_paths_outside_the_run_are_refused(run, tmp_path, entry, escape):
    marker = tmp_path / "PWNED"
    _plant(tmp_path / "evil.safetensors", marker)
    _edit(run, ESCAPES[escape])
    message = _outcome(ENTRY_POINTS[entry], run, marker)
    assert message is not None and "manifest.json" in message
    assert "outside the run folder" in message or "plain .safetensors" in message


def test_symlinked_checkpoint_leading_out_is_refused(run, tmp_path):
    marker = tmp_path / "PWNED"
    outside = tmp_path / "outside"
    outside.mkdir()
    _plant(outside / "buyer.safetensors", marker)
    # a name of the run's own scheme, so only the link itself is wrong
    link = "checkpoints/000000999999-0"
    (run / link).symlink_to(outside, target_is_directory=True)
    _edit(run, lambda m: m.update(checkpoint=link))
    for call in ENTRY_POINTS.values():
        message = _outcome(call, run, marker)
        assert message is not None and f"{link!r} is a symlink" in message
        assert "could lead outside the run folder" in message
    _edit(run, lambda m: m.update(checkpoint="checkpoints/link"))
    for call in ENTRY_POINTS.values():
        message = _outcome(call, run, marker)
        assert message is not None and "not a checkpoints/<steps>-<i> folder" in message


BROKEN = {
    "list": ([1, 2], "must be a JSON object"),
    "no-learners": (lambda m: m.pop("learners"), "lacks key(s) 'learners'"),
    "no-checkpoint": (lambda m: m.pop("checkpoint"), "lacks key(s) 'checkpoint'"),
    "learner-no-policy": (
        lambda m: m["learners"]["buyer"].pop("policy"),
        "learner 'buyer' lacks key(s) 'policy'",
    ),
    "learner-not-object": (
        lambda m: m["learners"].update(buyer=[1]),
        "learner 'buyer' must be an object",
    ),
    "bad-class": (
        lambda m: m["learners"]["buyer"]["policy"]["kwargs"].update(
            activation_fn={"class": "os.system"}
        ),
        "is not allowed",
    ),
    "role-auctioneer": (
        lambda m: m["learners"]["buyer"].update(role="auctioneer"),
        "learner 'buyer' role must be one of buyer, seller, got 'auctioneer'",
    ),
    "action-role-auctioneer": (
        lambda m: m["learners"]["buyer"]["action"].update(role="auctioneer"),
        "learner 'buyer' action role must be one of buyer, seller",
    ),
    "bad-policy-class": (
        lambda m: m["learners"]["buyer"]["policy"].update({"class": "Popen"}),
        "policy class must be",
    ),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_malformed_manifest_is_one_clear_line(run, tmp_path, entry, broken):
    change, expected = BROKEN[broken]
    if callable(change):
        _edit(run, change)
    else:
        (run / "manifest.json").write_text(json.dumps(change))
    message = _outcome(ENTRY_POINTS[entry], run, tmp_path / "PWNED")
    assert message is not None and "manifest.json" in message
    assert expected in message


OTHER_MARKETS = {
    "gsp-5x3": (
        EnvConfig(mechanism="gsp", n_buyers=5, n_slots=3),
        "trained in mechanism 'first_price'",
    ),
    "first-price-n2": (
        EnvConfig(mechanism="first_price", n_buyers=2),
        "with agents ['buyer_0', 'buyer_1', 'buyer_2']",
    ),
}


@pytest.mark.parametrize("market", sorted(OTHER_MARKETS))
def test_evaluate_refuses_a_run_of_another_market(run, tmp_path, market):
    from runner.evaluate import evaluate

    env, expected = OTHER_MARKETS[market]
    cfg = dataclasses.replace(config(), env=env)
    message = _outcome(
        lambda r: evaluate(cfg, r, episodes=4, samples=5), run, tmp_path / "PWNED"
    )
    assert message is not None and "manifest.json" in message
    assert expected in message and "the run's own config.yaml" in message


def test_evaluate_refuses_a_learner_seat_outside_the_market(run, tmp_path):
    _edit(run, lambda m: m["learners"]["buyer"].update(seats=["buyer_7"]))
    message = _outcome(_evaluate, run, tmp_path / "PWNED")
    assert message is not None and "seats ['buyer_7'] are not agents" in message


def test_cli_evaluate_refuses_a_planted_run_in_one_line(run, tmp_path):
    import yaml

    marker = tmp_path / "PWNED"
    path = _named(run)["model"]
    _plant(path, marker)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config().to_dict()))
    out = subprocess.run(
        [
            *(sys.executable, "-m", "attn_market.cli", "evaluate", str(cfg)),
            *("--policy", str(run), "--json", "--samples", "20", "--episodes", "16"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and str(path) in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not marker.exists()


# -- resume: exact state, and a refused resume leaves the run alone -------------------


def test_resume_restores_weights_and_optimizer_exactly(tmp_path):
    import torch

    from training.sb3 import Trainer

    first = Trainer(config(), tmp_path / "run", progress=False)
    first.run()
    again = Trainer(config(total_timesteps=768), tmp_path / "run", resume=True)
    a, b = first.learners[0].model, again.learners[0].model
    assert b.num_timesteps == a.num_timesteps and b._n_updates == a._n_updates
    for key, value in a.policy.state_dict().items():
        assert torch.equal(value, b.policy.state_dict()[key]), key
    sa, sb = a.policy.optimizer.state_dict(), b.policy.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i, state in sa["state"].items():
        for k, v in state.items():
            assert torch.equal(v, sb["state"][i][k]), (i, k)
    assert again.learners[0].pool.files == first.learners[0].pool.files


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"squash": "clip"}, "action map changed"),
        ({"share": "none"}, "cannot resume"),
        ({"algo": "sac", "algo_params": {}}, "trained with algo ppo"),
    ],
)
def test_refused_resume_keeps_config_yaml(run, change, message):
    from training import train

    before = (run / "config.yaml").read_bytes()
    manifest = (run / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match=message):
        train(config(total_timesteps=768, **change), run, resume=True, progress=False)
    assert (run / "config.yaml").read_bytes() == before
    assert (run / "manifest.json").read_bytes() == manifest


def test_refused_resume_of_broken_weights_keeps_config_yaml(run, tmp_path):
    before = (run / "config.yaml").read_bytes()
    _plant(_named(run)["model"], tmp_path / "PWNED")
    with pytest.raises(ValueError, match=r"buyer\.safetensors"):
        _resume(run)
    assert (run / "config.yaml").read_bytes() == before


# -- writes that never clobber --------------------------------------------------------


def _not_regular(tmp_path: Path) -> dict[str, Path]:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.png"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    return {"symlink": link, "dangling": dangling, "fifo": fifo, "folder": folder}


@pytest.mark.parametrize("kind", ["symlink", "dangling", "fifo", "folder"])
def test_atomic_save_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = _not_regular(tmp_path)[kind]
    before = os.lstat(path)
    with pytest.raises(ValueError, match="not a regular file") as err:
        atomic_write_text(path, "clobbered")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert (tmp_path / "victim.txt").read_text() == "keep me"
    assert not (tmp_path / "nowhere.png").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp


def test_plots_refuse_what_is_not_a_regular_file(tmp_path):
    from attn_env.figures import new_figure, save_png

    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1])
    for path in _not_regular(tmp_path).values():
        with pytest.raises(ValueError, match="not a regular file"):
            save_png(fig, path)
    assert (tmp_path / "victim.txt").read_text() == "keep me"
    ok = save_png(fig, tmp_path / "ok.png")
    assert ok.read_bytes()[:4] == b"\x89PNG"


def test_atomic_save_replaces_a_regular_file_with_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        target = tmp_path / "new" / "sub" / "out.txt"
        atomic_write_text(target, "one")
        atomic_save(target, lambda tmp: tmp.write_text("two"))
        assert target.read_text() == "two"
        assert target.stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o750
        assert (tmp_path / "new" / "sub").stat().st_mode & 0o777 == 0o750
    finally:
        os.umask(old)


def test_a_model_folder_with_pickled_weights_is_refused(tmp_path):
    # use_safetensors=True: a folder whose only weights are a pickle never loads
    import shutil

    from attn_env.valuations.model import default_model_dir, load_model

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    folder = tmp_path / "model"
    shutil.copytree(default_model_dir(), folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    with pytest.raises((OSError, ValueError), match="safetensors"):
        load_model(model_dir=folder, device="cpu")
    assert not marker.exists()
