"""The self-play pool board of the RLlib backend, and pushing pools to env runners.

After every PPO iteration the trainer pushes each self-play pool (numpy
weights) to the env of every env runner and to a Ray actor, the pool board,
from which an env runner that Ray restarts mid-run fills its empty pools.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pool_board", "push_pools"]


def pool_board(ray, name: str):
    """A Ray actor holding the latest pools, for env runners Ray (re)starts later.

    The trainer pushes each pool to the running env runners directly; one that
    Ray restarts mid-run builds a fresh env with empty pools, which pulls them
    from this board (by ``name``) at its first reset.
    """

    @ray.remote(num_cpus=0)
    class PoolBoard:
        def __init__(self) -> None:
            self.payload: dict[str, Any] = {}

        def put(self, payload: dict[str, Any]) -> None:
            self.payload = payload

        def get(self) -> dict[str, Any]:
            return self.payload

    return PoolBoard.options(name=name).remote()


def push_pools(algo, pools: dict[str, Any], board: Any = None) -> None:
    """Send every self-play pool (numpy weights) to the env of every env runner,
    and to the pool ``board`` (for runners started later)."""
    if not pools:
        return
    payload = {
        name: [
            (
                file,
                {k: v.detach().cpu().numpy() for k, v in m.policy.state_dict().items()},
            )
            for file, m in zip(pool.files, pool.members, strict=True)
        ]
        for name, pool in pools.items()
    }

    def push(runner) -> list[dict[str, int]]:
        env = getattr(runner, "env", None)
        if env is None:  # a local runner without env (remote runners sample)
            return []
        return [
            {name: e.unwrapped.set_pool(name, ms) for name, ms in payload.items()}
            for e in getattr(env, "envs", [env])
        ]

    if board is not None:
        import ray

        ray.get(board.put.remote(payload))
    sizes = algo.env_runner_group.foreach_env_runner(push, local_env_runner=True)
    if not any(sizes):
        raise RuntimeError("no RLlib env runner took the self-play pool")
