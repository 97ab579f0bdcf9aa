"""Fixed bidding rules: truthful, analytic BNE, shading, budget pacing.

Every agent plays one agent name in ``N`` markets at once (``attn_env.players.Agent``):
``act(obs [N, obs_dim]) -> [N, 1]`` float32. The same object bids as a buyer or
asks as a seller, row by row, from the role flag ``obs[:, ROLE]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.config import EnvConfig
from attn_env.checks import check_real
from attn_env.equilibria import bne_reason, bne_strategy, roi_strategy, truthful
from attn_env.errors import UserError
from attn_env.observation import BUDGET, LAST_PAY, ROUND, VALUE, as_actions, is_seller
from attn_env.players import TruthfulAgent

__all__ = ["BNEAgent", "PacingAgent", "ShadingAgent", "TruthfulAgent"]


class _Stateless:
    """Agents without adaptive state: ``reset`` and ``observe`` do nothing."""

    market_params: tuple[str, ...] = ()

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Nothing to clear."""

    def observe(self, feedback: dict[str, Any]) -> None:
        """Fixed strategies ignore feedback."""


class ShadingAgent(_Stateless):
    """A fixed fraction of the surplus kept back.

    Buyers bid ``shade * value``; sellers ask
    ``cost + (1 - shade) * (max_price - cost)``, the mirror image, so ``shade = 1``
    is truthful on both sides and ``shade = 0`` bids 0 / asks the top of the range.

    Args:
        shade: fraction in ``[0, 1]``.
        max_price: top of the price range (from the market: the env's ``max_bid``).
    """

    market_params = ("max_price",)

    def __init__(self, shade: float = 0.8, max_price: float = 1.0) -> None:
        if not 0.0 <= shade <= 1.0:
            raise UserError(f"shade must be in [0, 1], got {shade!r}")
        self.shade, self.max_price = float(shade), float(max_price)

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        v = obs[:, VALUE].astype(np.float64)
        ask = v + (1.0 - self.shade) * np.maximum(self.max_price - v, 0.0)
        return as_actions(np.where(is_seller(obs), ask, self.shade * v))


class BNEAgent(_Stateless):
    """The analytic Bayes–Nash equilibrium of the market, where one is known.

    Plays :func:`attn_env.equilibria.bne_strategy` for its role (the source that
    ``evaluate`` measures against too): first price (``(n-1)/n * v`` for one
    slot, with a reserve or ``K`` equal slots), truthful where that is dominant
    (second price, VCG, GSP with one slot, assignment, McAfee), and the
    Chatterjee–Samuelson linear strategies of the bilateral ``k``-double
    auction; with an ROI target, :func:`attn_env.equilibria.roi_strategy`.
    Anything else raises ``ValueError`` saying what is known.

    Args:
        env: the market (filled in by ``agents.for_market``).
        roi_target: ROI-constrained buyers (the config's ``solve.roi_target``,
            filled in by ``runner.seats``).
    """

    market_params = ("env",)

    def __init__(self, env: EnvConfig, roi_target: float | None = None) -> None:
        if not isinstance(env, EnvConfig):
            raise UserError(f"env must be an EnvConfig, got {env!r}")
        if roi_target is None:
            buyer = bne_strategy(env, "buyer")
        else:
            buyer = roi_strategy(
                env, "buyer", check_real(roi_target, "roi_target", 0.0)
            )
        if buyer is None and roi_target is not None:
            raise UserError(
                f"no analytic ROI-constrained BNE for this market (roi_target "
                f"{roi_target!r}): known for one-slot first and second price "
                "without a reserve, symmetric risk-neutral buyers with values "
                "U[0, h]; kind: equilibrium plays the solver's answer"
            )
        if buyer is None:
            raise UserError(f"no analytic BNE for this market: {bne_reason(env)}")
        self._buyer = buyer
        self._seller = bne_strategy(env, "seller") or truthful

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        v = obs[:, VALUE].astype(np.float64)
        return as_actions(np.where(is_seller(obs), self._seller(v), self._buyer(v)))


class PacingAgent:
    """Budget pacing: bid ``value / (1 + mu)``, ``mu`` steered to spend evenly.

    Before each round ``t > 0`` the multiplier moves by last round's spend (own
    payment, ``obs[LAST_PAY]``) against the even-spending target
    ``rho = budget_left / (rounds - t)``:

    - ``update="dual"`` (dual gradient descent, Balseiro & Gur 2019):
      ``mu <- clip(mu + eta * (spend - rho), 0, mu_max)``;
    - ``update="multiplicative"``: ``1 + mu <- (1 + mu) * exp(eta * (spend - rho))``.

    ``mu`` restarts at ``mu0`` in the first round of an episode (``obs[ROUND] == 0``),
    so the agent follows the vector env's autoresets by itself. The bid never
    exceeds the budget left. With no budget (``budget=None``) it bids truthfully;
    sellers always ask their cost.

    Args:
        rounds: rounds per episode (from the market).
        budget: the episode budget (from the market); ``None`` means unlimited.
        eta: step size.
        mu0: initial multiplier.
        mu_max: cap on the multiplier (dual update).
        update: ``"dual"`` or ``"multiplicative"``.
    """

    market_params = ("rounds", "budget")
    _UPDATES = ("dual", "multiplicative")

    def __init__(
        self,
        rounds: int = 1,
        budget: float | None = None,
        eta: float = 1.0,
        mu0: float = 0.0,
        mu_max: float = 10.0,
        update: str = "dual",
    ) -> None:
        if update not in self._UPDATES:
            raise UserError(
                f"unknown pacing update {update!r}; known: dual, multiplicative"
            )
        if rounds < 1:
            raise UserError(f"rounds must be >= 1, got {rounds!r}")
        if eta < 0 or mu0 < 0 or mu_max < mu0:
            raise UserError(
                f"need eta >= 0 and 0 <= mu0 <= mu_max, got eta={eta}, mu0={mu0}, "
                f"mu_max={mu_max}"
            )
        self.rounds, self.budget = int(rounds), budget
        self.eta, self.mu0, self.mu_max, self.update = (
            float(eta),
            float(mu0),
            float(mu_max),
            update,
        )
        self.mu = np.zeros(0)

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        self.mu = np.full(num_envs, self.mu0)

    def observe(self, feedback: dict[str, Any]) -> None:
        """Pacing reads its own spend from the next observation; nothing to do here."""

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        n = obs.shape[0]
        if self.mu.shape != (n,):
            self.mu = np.full(n, self.mu0)
        value = obs[:, VALUE].astype(np.float64)
        if self.budget is None:
            return as_actions(value)
        left = np.maximum(obs[:, BUDGET].astype(np.float64), 0.0)
        t = np.rint(obs[:, ROUND] * self.rounds)
        first = t <= 0
        rho = left / np.maximum(self.rounds - t, 1.0)
        step = self.eta * (obs[:, LAST_PAY] - rho)
        if self.update == "dual":
            mu = np.clip(self.mu + step, 0.0, self.mu_max)
        else:
            mu = np.clip((1.0 + self.mu) * np.exp(step) - 1.0, 0.0, self.mu_max)
        self.mu = np.where(first, self.mu0, mu)
        bid = np.minimum(value / (1.0 + self.mu), left)
        return as_actions(np.where(is_seller(obs), value, bid))
