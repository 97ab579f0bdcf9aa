"""Fixed bidding rules: truthful, analytic BNE, shading, budget pacing, trained policy.

Every agent plays one agent name in ``N`` markets at once (``agents.base.Agent``):
``act(obs [N, obs_dim]) -> [N, 1]`` float32. The same object bids as a buyer or
asks as a seller, row by row, from the role flag ``obs[:, ROLE]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from agents.base import BUDGET, LAST_PAY, ROUND, VALUE, as_actions, is_seller
from agents.equilibria import chatterjee_samuelson, first_price_bne, truthful

__all__ = ["BNEAgent", "PacingAgent", "PolicyAgent", "ShadingAgent", "TruthfulAgent"]


class _Stateless:
    """Agents without adaptive state: ``reset`` and ``observe`` do nothing."""

    market_params: tuple[str, ...] = ()

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Nothing to clear."""

    def observe(self, feedback: dict[str, Any]) -> None:
        """Fixed strategies ignore feedback."""


class TruthfulAgent(_Stateless):
    """Bid the value per unit (buyers), ask the cost (sellers)."""

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        return as_actions(obs[:, VALUE])


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
            raise ValueError(f"shade must be in [0, 1], got {shade!r}")
        self.shade, self.max_price = float(shade), float(max_price)

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        v = obs[:, VALUE].astype(np.float64)
        ask = v + (1.0 - self.shade) * np.maximum(self.max_price - v, 0.0)
        return as_actions(np.where(is_seller(obs), ask, self.shade * v))


_TRUTHFUL_BNE = ("second_price", "vcg", "mcafee", "assignment")
"Mechanisms where truthful bidding is (dominant-strategy) equilibrium."


class BNEAgent(_Stateless):
    """The analytic Bayes–Nash equilibrium strategy, where one is known.

    - ``first_price``, values U[0, h]: ``E[Y | Y < v]``, ``Y`` the ``k``-th highest
      of the other values (``(n-1)/n * v`` for one slot; with ``reserve`` for one
      slot, see ``agents.equilibria.first_price_bne``).
    - ``second_price``, ``vcg``, ``mcafee``, ``assignment``: truthful (dominant).
    - ``k_double`` with one buyer and one seller, values and costs U[0, 1]:
      Chatterjee–Samuelson linear strategies.

    Anything else raises ``ValueError`` naming the mechanism. The market parameters
    are filled from the config by ``agents.for_market``.
    """

    market_params = (
        "mechanism",
        "mechanism_params",
        "n_buyers",
        "n_sellers",
        "n_slots",
        "value_dist",
        "value_low",
        "cost_low",
        "cost_high",
        "value_high",
    )

    def __init__(
        self,
        mechanism: str,
        n_buyers: int = 2,
        n_sellers: int = 0,
        n_slots: int = 1,
        mechanism_params: dict[str, Any] | None = None,
        value_dist: str = "uniform",
        value_low: float = 0.0,
        value_high: float = 1.0,
        cost_low: float = 0.0,
        cost_high: float = 1.0,
    ) -> None:
        params = dict(mechanism_params or {})
        self.mechanism = mechanism
        self._buyer = self._seller = truthful
        if mechanism in _TRUTHFUL_BNE:
            return
        if value_dist != "uniform" or value_low != 0.0:
            raise ValueError(
                f"BNE of {mechanism!r} is known for values U[0, h]; got "
                f"value_dist={value_dist!r}, value_low={value_low!r}"
            )
        if mechanism == "first_price":
            if n_buyers < 1:
                raise ValueError(f"n_buyers must be >= 1, got {n_buyers!r}")
            self._buyer = first_price_bne(
                int(n_buyers),
                int(n_slots),
                high=float(value_high),
                reserve=float(params.get("reserve", 0.0)),
            )
        elif mechanism == "k_double":
            if n_buyers != 1 or n_sellers not in (0, 1):
                raise ValueError(
                    "k_double BNE (Chatterjee–Samuelson) is known for one buyer and "
                    f"one seller, got n_buyers={n_buyers}, n_sellers={n_sellers}"
                )
            if (value_high, cost_low, cost_high) != (1.0, 0.0, 1.0):
                raise ValueError(
                    "k_double BNE is known for values and costs U[0, 1], got "
                    f"value_high={value_high}, costs U[{cost_low}, {cost_high}]"
                )
            k = float(params.get("k", 0.5))
            self._buyer = chatterjee_samuelson(k, "buyer")
            self._seller = chatterjee_samuelson(k, "seller")
        else:
            raise ValueError(
                f"no analytic BNE is known for mechanism {mechanism!r}; known for: "
                f"first_price, k_double (1x1), {', '.join(_TRUTHFUL_BNE)}"
            )

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
            raise ValueError(
                f"unknown pacing update {update!r}; known: dual, multiplicative"
            )
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds!r}")
        if eta < 0 or mu0 < 0 or mu_max < mu0:
            raise ValueError(
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


class PolicyAgent(_Stateless):
    """A trained policy (``attn-market train``) as a fixed agent.

    ``training.load_policy(path)`` is imported on construction only, so that the
    agents package never imports torch by itself. The loaded policy maps
    observations to absolute bids or asks, deterministically, choosing its
    buyer or seller model by the role flag.

    Args:
        path: the run folder written by ``attn-market train``.
        agent: use this learner's own model (runs trained with ``share: none``)
            instead of the model of the observation's role.
    """

    def __init__(self, path: str, agent: str | None = None) -> None:
        from training import load_policy

        self.path, self.agent = path, agent
        policy = load_policy(path)
        self.policy = policy.for_agent(agent) if agent is not None else policy

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        out = np.asarray(self.policy.act(obs), dtype=np.float32)
        return out.reshape(obs.shape[0], -1)[:, :1]
