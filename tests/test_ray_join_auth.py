"""Joining a Ray cluster by address when ``~/.ray/auth_token`` belongs to
another cluster: ``training.ray_start.init_ray`` must find the cluster's own auth
mode, or actors (Tune trials, RLlib env runners) are cancelled before they start.

Ray keeps its auth mode for the life of a process, so the check runs in a fresh
one (as ``attn-market sweep --address`` does), not in the test worker where
other tests have started Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import os, sys, ray
from ray import cluster_utils
sys.path[:0] = [{root!r}]
from training.ray_start import _actors_start, init_ray
cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
try:
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    init_ray(ray, cluster.address, runners=1)
    alive = [n for n in ray.nodes() if n["Alive"]]
    print(os.environ.get("RAY_AUTH_MODE"), _actors_start(ray, timeout=60), len(alive))
    ray.shutdown()
finally:
    cluster.shutdown()
"""


def test_a_stale_token_file_does_not_stop_actors_on_a_cluster_without_auth(tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("0" * 64)  # another cluster's token
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(root=str(ROOT))],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["disabled", "True", "2"]
