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
from attn_env.errors import UserError
from attn_env.integrity.explain import explain_market, page_attention
from attn_env.mechanisms import name_of
from runner.simulate import MAX_NUM_ENVS, play_log

__all__ = ["MarketRecorder", "explain"]


class MarketRecorder:
    """Keeps market ``market`` of a run (a ``runner.simulate`` recorder).

    Build it with :meth:`for_market`; after the run :meth:`explanation`
    explains the market.
    """

    def __init__(
        self, market: int, episode: int, round_: int, batch: int, column: int
    ) -> None:
        self.market, self.episode, self.round = market, episode, round_
        self.target = (batch, column, round_)
        self._batch = self._round = 0
        self.info: dict[str, Any] | None = None

    @classmethod
    def for_market(cls, config: ExperimentConfig, market: int) -> MarketRecorder:
        """The recorder of market ``market`` of ``simulate``'s run of ``config``.

        Raises:
            UserError: ``market`` outside ``[0, episodes x rounds)``.
        """
        episodes, rounds = config.episodes, config.env.rounds
        total = episodes * rounds
        if isinstance(market, bool) or not isinstance(market, int | np.integer):
            raise UserError(f"market must be an integer, got {market!r}")
        if not 0 <= market < total:
            raise UserError(
                f"market must be in [0, {total - 1}] (episodes x rounds of the "
                f"config), got {market}"
            )
        episode, round_ = divmod(int(market), rounds)
        batch, column = divmod(episode, min(episodes, MAX_NUM_ENVS))
        return cls(int(market), episode, round_, batch, column)

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

    def explanation(self) -> dict[str, Any]:
        """The market's explanation (see :func:`explain`)."""
        info, env = self.info, self.env
        if info is None:
            raise RuntimeError(f"market {self.market} was not played in this run")
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
                r["group"] = names[int(info["group"][i])]
        return {
            "market": self.market,
            "episode": self.episode,
            "round": self.round,
            "mechanism": name_of(env.core.mechanism),
            "clearing_price": float(info["clearing_price"]),
            "lottery": lottery,
            "alpha": [float(a) for a in info["alpha"]],
            "page_attention": None
            if env.spec.family == "two_sided"
            else page_attention(info["alpha"], n),
            "records": records,
        }


def explain(
    config: ExperimentConfig, market: int, progress: bool = False
) -> dict[str, Any]:
    """Explain market ``market`` of ``simulate``'s run of ``config``.

    Returns:
        ``market``, ``episode``, ``round``, ``mechanism``, ``seed``,
        ``clearing_price`` (``nan``: nothing traded), ``lottery`` (the exposure
        floor's lottery allocated it), ``alpha`` (the page), ``page_attention``
        (its top slots' sum, what ``attention_share`` divides by; ``None`` in
        two-sided markets) and ``records`` (one per agent,
        :func:`~attn_env.integrity.explain.explain_market`, where ``payment =
        price x attention``; with the ad's ``group`` where the source labels
        ads).

    Raises:
        UserError: ``market`` outside ``[0, episodes x rounds)``.
    """
    rec = MarketRecorder.for_market(config, market)
    num_envs = min(config.episodes, MAX_NUM_ENVS)
    play_log(
        config,
        episodes=min(config.episodes, (rec.target[0] + 1) * num_envs),
        num_envs=num_envs,
        progress=progress,
        recorders=[rec],
    )
    return {**rec.explanation(), "seed": config.seed}
