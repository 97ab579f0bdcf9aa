"""The agent protocol and the one driver of fixed agents.

:class:`Agent` is what the market expects of a bidder that is not being trained
right now: a rule (truthful, ZI-C, ...), a trained policy, a frozen opponent.
:class:`Seats` drives one such agent per column of a batched market: every
loop that plays fixed agents (``simulate``, the single-agent view, the
trainers' opponents) goes through it, so feedback is built and delivered in one
place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from attn_env.observation import VALUE, as_actions

__all__ = ["Agent", "Seats", "TruthfulAgent", "feedback_for"]


@runtime_checkable
class Agent(Protocol):
    """A strategy for one agent name, vectorised over ``N`` markets."""

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Start new episodes in ``num_envs`` markets (clears any adaptive state)."""
        ...

    def act(
        self, obs: NDArray[np.float32], rng: np.random.Generator
    ) -> NDArray[np.float32]:
        """Bids (buyers) or asks (sellers) per unit: ``obs [N, obs_dim] -> [N, 1]``."""
        ...

    def observe(self, feedback: dict[str, Any]) -> None:
        """Public feedback after a round (see :func:`feedback_for`).

        Adaptive agents (ZIP, GD, pacing) learn from it; the others ignore it.
        """
        ...


class TruthfulAgent:
    """Bid the value per unit (buyers), ask the cost (sellers): the default player."""

    market_params: tuple[str, ...] = ()

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Nothing to clear."""

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        return as_actions(obs[:, VALUE])

    def observe(self, feedback: dict[str, Any]) -> None:
        """A fixed rule ignores feedback."""


def feedback_for(info: dict[str, Any], j: int, n_buyers: int) -> dict[str, Any]:
    """A round's public feedback for agent column ``j`` (``Agent.observe``'s input).

    ``clearing_price [N]`` (``nan`` where nothing traded), ``bids [N, n]``,
    ``asks [N, m]``, ``alloc [N, n]``, ``seller_alloc [N, m]``, ``active [N, n]``
    and ``seller_active [N, m]`` (who could trade: orders of inactive traders, out
    of budget or already traded in a CDA period, were not in the market),
    ``traded [N, n + m]`` and the agent's own ``own_alloc``, ``own_pay``,
    ``own_value``, ``own_action`` ``[N]``. Where the market publishes feedback
    (env option ``feedback``, ``attn_env.feedback``), ``published [N]`` is the
    value published to this agent; under ``feedback: none`` the key is absent.

    Args:
        info: the info arrays of ``MarketCore.step`` (or the vector env's).
        j: the agent's column (buyers first, then sellers).
        n_buyers: number of buyer columns.
    """
    n = n_buyers
    out = {
        "clearing_price": info["clearing_price"],
        "bids": info["bid"][:, :n],
        "asks": info["bid"][:, n:],
        "alloc": info["alloc"][:, :n],
        "seller_alloc": info["alloc"][:, n:],
        "active": info["active"][:, :n],
        "seller_active": info["active"][:, n:],
        "traded": info["traded"],
        "own_alloc": info["alloc"][:, j],
        "own_pay": info["payment"][:, j],
        "own_value": info["value"][:, j],
        "own_action": info["bid"][:, j],
    }
    if "published" in info:
        out["published"] = info["published"][:, j]
    return out


class Seats:
    """Fixed agents in the columns of a batched market, ``None`` for open seats.

    Args:
        players: one entry per agent column (buyers first, then sellers); ``None``
            marks a seat someone else fills (a learner).
        n_buyers: number of buyer columns.

    Raises:
        ValueError: a player that does not follow :class:`Agent`.
    """

    def __init__(self, players: Sequence[Agent | None], n_buyers: int) -> None:
        for j, p in enumerate(players):
            if p is not None and not isinstance(p, Agent):
                raise UserError(
                    f"player of column {j} must follow attn_env.players.Agent "
                    f"(reset/act/observe), got {p!r}"
                )
        self.players = list(players)
        self.n_buyers = int(n_buyers)

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Start new episodes for every player."""
        for p in self.players:
            if p is not None:
                p.reset(num_envs, rng)

    def act(
        self, obs: NDArray[np.float32], rng: np.random.Generator
    ) -> NDArray[np.float32]:
        """Bids/asks ``[N, A, 1]`` for every seat with a player (zeros elsewhere).

        Args:
            obs: ``[N, A, obs_dim]`` observations of every column.
            rng: the players' generator (consumed column by column).
        """
        out = np.zeros((obs.shape[0], obs.shape[1], 1), dtype=np.float32)
        for j, p in enumerate(self.players):
            if p is not None:
                out[:, j, :] = np.asarray(
                    p.act(obs[:, j, :], rng), dtype=np.float32
                ).reshape(-1, 1)
        return out

    def observe(self, info: dict[str, Any]) -> None:
        """Deliver a round's feedback to every player."""
        for j, p in enumerate(self.players):
            if p is not None:
                p.observe(feedback_for(info, j, self.n_buyers))
