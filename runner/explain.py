"""``explain``: the explanation records of one market of a simulated run.

Market ``I`` is the ``I``-th market round of ``simulate`` with the same config
(episode-major: episode ``I // rounds``, round ``I % rounds``). The run is
replayed with ``simulate``'s seed and batch size only up to the batch of
episodes holding it, so the market is the one ``simulate`` played, and
:func:`attn_env.integrity.explain.explain_market` explains it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from attn_env.config import ExperimentConfig
from attn_env.integrity.explain import explain_market
from runner.simulate import play_log

__all__ = ["MarketRecorder", "explain"]

_MAX_ENVS = 1024  # simulate's default batch of markets


class MarketRecorder:
    """Keeps the infos of market ``column`` in round ``round`` of batch ``batch``."""

    def __init__(self, batch: int, column: int, round_: int) -> None:
        self.target = (batch, column, round_)
        self._batch = self._round = 0
        self.info: dict[str, Any] | None = None

    def start(self, env: Any) -> None:
        self.env = env

    def add_round(self, info: Mapping[str, Any]) -> None:
        batch, column, round_ = self.target
        if (self._batch, self._round) == (batch, round_):
            self.info = {
                k: np.asarray(v)[column].copy()
                for k, v in info.items()
                if isinstance(v, np.ndarray) and v.ndim >= 1
            }
        self._round += 1

    def end_batch(self, keep: int) -> None:
        self._batch += 1
        self._round = 0


def explain(
    config: ExperimentConfig, market: int, progress: bool = False
) -> dict[str, Any]:
    """Explain market ``market`` of ``simulate``'s run of ``config``.

    Returns:
        ``market``, ``episode``, ``round``, ``mechanism``, ``seed``,
        ``clearing_price`` (``nan``: nothing traded), ``lottery`` (the exposure
        floor's lottery allocated it), ``alpha`` (the page) and ``records``
        (one per agent, :func:`~attn_env.integrity.explain.explain_market`;
        with a ``vertical`` where the source labels ads).

    Raises:
        ValueError: ``market`` outside ``[0, episodes x rounds)``.
    """
    episodes, rounds = config.episodes, config.env.rounds
    total = episodes * rounds
    if isinstance(market, bool) or not isinstance(market, int | np.integer):
        raise ValueError(f"market must be an integer, got {market!r}")
    if not 0 <= market < total:
        raise ValueError(
            f"market must be in [0, {total - 1}] (episodes x rounds of the config), "
            f"got {market}"
        )
    episode, round_ = divmod(int(market), rounds)
    num_envs = min(episodes, _MAX_ENVS)
    batch, column = divmod(episode, num_envs)
    rec = MarketRecorder(batch, column, round_)
    _, about = play_log(
        config,
        episodes=min(episodes, (batch + 1) * num_envs),
        num_envs=num_envs,
        progress=progress,
        recorders=[rec],
    )
    info, env = rec.info, rec.env
    assert info is not None  # the run played the target batch
    n = env.spec.n_buyers
    lottery = bool(info.get("lottery", False))
    records = explain_market(
        env.core.mechanism,
        env.agents,
        n,
        info["bid"],
        info["value"],
        info["alloc"],
        info["payment"],
        info["alpha"],
        info["active"],
        lottery=lottery,
    )
    names = tuple(getattr(env.core.source, "group_names", ()))
    if "group" in info and names:
        for i, r in enumerate(records[:n]):
            r["vertical"] = names[int(info["group"][i])]
    return {
        "market": int(market),
        "episode": episode,
        "round": round_,
        "mechanism": about["mechanism"],
        "seed": config.seed,
        "clearing_price": float(info["clearing_price"]),
        "lottery": lottery,
        "alpha": [float(a) for a in info["alpha"]],
        "records": records,
    }
