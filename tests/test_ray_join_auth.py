"""Joining a Ray cluster by address when ``~/.ray/auth_token`` belongs to
another cluster: ``training.ray_start.init_ray`` must find the cluster's own auth
mode, or actors (Tune trials, RLlib env runners) are cancelled before they start."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.integration


def test_a_stale_token_file_does_not_stop_actors_on_a_cluster_without_auth(
    tmp_path, monkeypatch
):
    from training.ray_start import _actors_start, init_ray

    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("0" * 64)  # another cluster's token
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("RAY_AUTH_MODE", "unset")  # recorded, so the test restores it
    monkeypatch.delenv("RAY_AUTH_MODE")
    cluster = cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        init_ray(ray, cluster.address, runners=1)
        try:
            assert os.environ["RAY_AUTH_MODE"] == "disabled"
            assert _actors_start(ray, timeout=60)
            assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()
