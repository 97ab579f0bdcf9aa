"""Tabular Q-learning bidder (``kind: qlearn``): the algorithmic-collusion agent.

The learner of Calvano et al. (AER 2020) and Banchio & Skrzypacz ("Artificial
Intelligence and Auction Design", 2022), batched over markets: row ``b`` of
every array is an independent learner, so ``N`` seeds of a repeated auction
learn in one numpy pass.

- **Actions**: a grid of ``n_bids`` bids under the value, ``value * k /
  n_bids``, ``k = 0..n_bids-1`` (a fixed value 1 and 20 bids: ``0, 0.05, ..,
  0.95``). Bidding the value itself is left out: it earns 0 whatever happens,
  so a learner that loses would be indifferent between it and any other bid.
- **State**: the last ``memory`` rounds' signals (0: stateless). A round's
  signal is a grid index and whether the learner won: the index of the value
  the auctioneer published to it (env option ``feedback``; it is rounded onto
  the bid grid), or of its own bid when nothing is published. ``2 * n_bids``
  signals, so ``(2 * n_bids) ** memory`` states.
- **Initial values** (Calvano et al.): in one-slot ``first_price`` and
  ``second_price`` auctions ``Q0[s, a]`` is the expected payoff of bid ``a``
  against rivals bidding uniformly on the grid, over ``1 - discount`` (in
  units of ``value_high``); elsewhere, or with ``q_init`` given, a constant.
- **Exploration**: epsilon-greedy, ``epsilon_t = epsilon * exp(-epsilon_decay *
  t)`` after ``t`` rounds of learning; greedy ties go to the lowest bid.
- **Update** after each round, with reward ``r = value * alloc - pay``:
  ``Q[s, a] += learning_rate * (r + discount * max Q[s'] - Q[s, a])``.
  Where the feedback is ``min_bid_to_win`` in a one-slot ``first_price`` or
  ``second_price`` auction (and ``counterfactual`` is on) the learner knows
  what every bid on its grid would have earned, with the others' bids fixed:
  it updates the whole row ``Q[s, :]`` at once (synchronous updating; a bid
  equal to the threshold counts as a tie won half the time), the channel by
  which Banchio & Skrzypacz find that publishing it restores competition.

The defaults are Calvano-style (learning rate 0.1, discount 0.95, exploration
from 1, initial values against uniform rivals). ``configs/collusion_*.yaml``
use Banchio & Skrzypacz's learner instead: ``learning_rate=0.05,
discount=0.99, epsilon=0.025, epsilon_decay=2e-4, q_init=100`` (equal
optimistic values ``1 / (1 - discount)``) and 500,000 rounds, with which second
price reaches the competitive bid (``docs/collusion.md``).

Learning happens in :meth:`QLearnAgent.observe`; the Q-tables persist across
episodes (the learner keeps learning until ``reset``). The agent reads only its
own outcome and the ``published`` value of the feedback, not the others' bids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from attn_env.mechanisms import name_of
from attn_env.observation import VALUE, as_actions

__all__ = ["QLearnAgent"]

_SYNCHRONOUS = ("first_price", "second_price")
"Mechanisms whose payoffs a bidder can compute from the minimum bid to win."
_GRID_TOL = 1e-4
"Bids travel as float32: positions on the grid closer than this are equal."


class QLearnAgent:
    """Epsilon-greedy tabular Q-learning on a bid grid, one learner per market.

    Args:
        n_bids: points of the bid grid (``>= 2``), shading factors ``k / n_bids``.
        learning_rate: step ``alpha`` of the update, in ``(0, 1]``.
        discount: ``gamma`` in ``[0, 1)``.
        epsilon: exploration rate at ``t = 0``, in ``[0, 1]``.
        epsilon_decay: ``beta >= 0`` of ``epsilon_t = epsilon * exp(-beta t)``.
        memory: rounds of signals in the state (``0..3``).
        counterfactual: update every bid's value where the feedback allows it
            (``min_bid_to_win``, one-slot ``first_price`` / ``second_price``).
        q_init: initial Q-value of every state and action (default: the
            payoff against uniform rivals, where it is known; else 0).
        mechanism, n_slots, n_buyers, value_high, feedback: the market (filled
            from the env config).
    """

    market_params = ("mechanism", "n_slots", "n_buyers", "value_high", "feedback")

    def __init__(
        self,
        n_bids: int = 20,
        learning_rate: float = 0.1,
        discount: float = 0.95,
        epsilon: float = 1.0,
        epsilon_decay: float = 5e-5,
        memory: int = 0,
        counterfactual: bool = True,
        q_init: float | None = None,
        mechanism: Any = "first_price",
        n_slots: int = 1,
        n_buyers: int = 2,
        value_high: float = 1.0,
        feedback: str = "none",
    ) -> None:
        checks = (
            ("n_bids", n_bids, isinstance(n_bids, int) and n_bids >= 2, "an int >= 2"),
            ("learning_rate", learning_rate, 0 < learning_rate <= 1, "in (0, 1]"),
            ("discount", discount, 0 <= discount < 1, "in [0, 1)"),
            ("epsilon", epsilon, 0 <= epsilon <= 1, "in [0, 1]"),
            ("epsilon_decay", epsilon_decay, epsilon_decay >= 0, ">= 0"),
            ("memory", memory, isinstance(memory, int) and 0 <= memory <= 3, "0..3"),
        )
        for name, value, ok, expected in checks:
            if isinstance(value, bool) or not ok:
                raise UserError(f"qlearn {name} must be {expected}, got {value!r}")
        self.n_bids, self.memory = n_bids, memory
        self.learning_rate, self.discount = float(learning_rate), float(discount)
        self.epsilon0, self.epsilon_decay = float(epsilon), float(epsilon_decay)
        self.n_signals = 2 * n_bids
        self.n_states = self.n_signals**memory
        name = name_of(mechanism)
        known = name in _SYNCHRONOUS and n_slots == 1
        self.synchronous = bool(
            counterfactual and feedback == "min_bid_to_win" and known
        )
        self.first_price = name == "first_price"
        if q_init is not None:
            self.q0 = np.full(n_bids, float(q_init))
        elif known:
            self.q0 = (
                self._payoff_vs_uniform(n_buyers - 1) * value_high / (1 - discount)
            )
        else:
            self.q0 = np.zeros(n_bids)
        self.reset(0, np.random.default_rng(0))

    # ------------------------------------------------------------------ state
    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Fresh learners in ``num_envs`` markets: Q = ``Q0``, ``t = 0``."""
        self.q = np.broadcast_to(self.q0, (num_envs, self.n_states, self.n_bids)).copy()
        self.state = np.zeros(num_envs, dtype=np.int64)
        self.t = 0
        self.last_change = np.zeros(num_envs, dtype=np.int64)
        self._last: tuple[NDArray[np.int64], ...] | None = None

    @property
    def epsilon(self) -> float:
        """Exploration rate of the next round."""
        return self.epsilon0 * float(np.exp(-self.epsilon_decay * self.t))

    def greedy(self) -> NDArray[np.int64]:
        """``[N]`` grid index of the greedy bid in each market's current state."""
        return self.q[np.arange(self.q.shape[0]), self.state].argmax(axis=1)

    # ------------------------------------------------------------------ play
    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        n = obs.shape[0]
        if self.q.shape[0] != n:
            self.reset(n, rng)
        explore = rng.random(n) < self.epsilon
        greedy = self.greedy()
        action = np.where(explore, rng.integers(0, self.n_bids, n), greedy)
        value = obs[:, VALUE].astype(np.float64)
        self._last = (action, value, greedy)
        return as_actions(value * action / self.n_bids)

    def observe(self, feedback: dict[str, Any]) -> None:
        """One Q-update per market from the round's own outcome and feedback."""
        if self._last is None:
            return
        action, value, before = self._last
        self._last = None
        rows = np.arange(action.shape[0])
        alloc = np.asarray(feedback["own_alloc"], dtype=np.float64)
        reward = value * alloc - np.asarray(feedback["own_pay"], dtype=np.float64)
        shown = feedback.get("published")
        if shown is None:
            index = action
            threshold = None
        else:
            threshold = _grid_position(
                np.asarray(shown, np.float64), value, self.n_bids
            )
            index = np.clip(np.rint(threshold), 0, self.n_bids - 1).astype(np.int64)
        signal = index + self.n_bids * (alloc > 0)
        s = self.state
        nxt = (s * self.n_signals + signal) % self.n_states
        future = self.discount * self.q[rows, nxt].max(axis=1)
        if self.synchronous and threshold is not None:
            payoff = self._counterfactual(threshold, value)
            payoff[rows, action] = reward
            row = self.q[rows, s]
            row += self.learning_rate * (payoff + future[:, None] - row)
            self.q[rows, s] = row
        else:
            q = self.q[rows, s, action]
            self.q[rows, s, action] = q + self.learning_rate * (reward + future - q)
            row = self.q[rows, s]
        changed = row.argmax(axis=1) != before
        self.last_change = np.where(changed, self.t, self.last_change)
        self.state = nxt
        self.t += 1

    def _counterfactual(
        self, threshold: NDArray[np.float64], value: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """``[N, n_bids]`` payoff of every grid bid against the others' fixed bids.

        ``threshold`` is the minimum bid to win on the grid's scale (index units):
        a higher bid wins, an equal one ties (won half the time).
        """
        k = np.arange(self.n_bids, dtype=np.float64)[None, :]
        gap = k - threshold[:, None]
        win = np.where(gap > _GRID_TOL, 1.0, np.where(gap >= -_GRID_TOL, 0.5, 0.0))
        price_index = k if self.first_price else threshold[:, None]
        return win * value[:, None] * (1.0 - price_index / self.n_bids)

    def _payoff_vs_uniform(self, rivals: int) -> NDArray[np.float64]:
        """``[n_bids]`` expected payoff per unit of value of each grid bid when the
        highest of ``rivals`` uniform grid bids is the threshold."""
        g = self.n_bids
        cdf = (np.arange(1, g + 1) / g) ** max(rivals, 0)
        p_max = np.diff(cdf, prepend=0.0)  # P(highest rival bid = index j)
        out = np.zeros(g)
        for j, p in enumerate(p_max):  # summed in this order: runs reproduce bitwise
            out += p * self._counterfactual(np.array([float(j)]), np.ones(1))[0]
        return out


def _grid_position(
    x: NDArray[np.float64], value: NDArray[np.float64], step: int
) -> NDArray[np.float64]:
    """``x`` on the bid grid's scale: ``x / value * step`` (0 where value is 0)."""
    safe = np.where(value > 0, value, 1.0)
    return np.where(value > 0, x / safe * step, 0.0)
