"""Auto-bidders from the literature: each sets a bid multiplier per period.

Every bidder acts for a group of advertisers at once (``idx``), from the
:class:`~attn_env.scenarios.search_state.Day` it plays in; ``lam`` is the
multiplier of ``bid = lam * V * pConv``.

- :class:`Truthful`: ``lam = 1`` (bids the expected value of a click).
- :class:`Pacing`: adaptive multiplicative pacing (Balseiro & Gur, 2019):
  ``lam = 1 / (1 + mu)``; after each period ``mu`` moves by a step times the
  gap between what was spent and the period's share of the budget.
- :class:`PID`: a PID controller on log CPA around the target (the AuctionNet
  baseline), started at ``lam = T / V`` (bidding the target CPA), times the
  pacing factor of :class:`Pacing`, so it neither overshoots its target nor
  runs out of budget early.
- :class:`OnlineLP`: before each period, the landscape of its own auctions
  of the last period (the others' bids held) says what each multiplier of a
  grid would have bought; it takes the largest multiplier whose spend, scaled
  to the rest of the day, fits the budget left and whose cumulative CPA meets
  the target.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from attn_env.scenarios.search_landscape import LAMBDA_GRID
from attn_env.scenarios.search_state import Day

__all__ = [
    "KINDS",
    "PID",
    "AutoBidder",
    "OnlineLP",
    "Pacing",
    "Truthful",
    "make_bidder",
]


class AutoBidder:
    """A baseline bidder for a group of advertisers: ``reset`` at the start of a
    day, ``act`` before each period (multipliers ``[k]``), ``update`` after it."""

    needs_landscape = False
    "Whether ``update`` reads ``day.landscape`` (the last period's)."

    def reset(self, day: Day, idx: NDArray[np.int64]) -> None:
        self.idx = idx

    def act(self, day: Day) -> NDArray[np.float64]:
        raise NotImplementedError

    def update(self, day: Day) -> None:
        """Learn from the period just played (nothing, unless overridden)."""


class Truthful(AutoBidder):
    """``lam = 1`` every period."""

    def act(self, day: Day) -> NDArray[np.float64]:
        return np.ones(len(self.idx))


class Pacing(AutoBidder):
    """Adaptive pacing: ``lam = 1 / (1 + mu)``, ``mu`` tracks the budget plan."""

    def __init__(self, step: float = 0.5) -> None:
        self.step = step

    def reset(self, day: Day, idx: NDArray[np.int64]) -> None:
        super().reset(day, idx)
        self.mu = np.zeros(len(idx))

    def act(self, day: Day) -> NDArray[np.float64]:
        return 1.0 / (1.0 + self.mu)

    def update(self, day: Day) -> None:
        budget = day.market.advertisers.budget[self.idx]
        t = day.t - 1
        plan = budget * day.market.shares[t]
        spent = day.history[-1].spend[self.idx]
        per_period = budget / day.periods
        self.mu = np.maximum(0.0, self.mu + self.step * (spent - plan) / per_period)


class PID(Pacing):
    """PID on ``log(target CPA / realised CPA)``, times the pacing factor."""

    def __init__(
        self, kp: float = 0.4, ki: float = 0.05, kd: float = 0.1, step: float = 0.5
    ) -> None:
        super().__init__(step)
        self.kp, self.ki, self.kd = kp, ki, kd

    def reset(self, day: Day, idx: NDArray[np.int64]) -> None:
        super().reset(day, idx)
        adv = day.market.advertisers
        self.base = adv.target_cpa[idx] / adv.value[idx]
        self.integral = np.zeros(len(idx))
        self.err = np.zeros(len(idx))
        self.u = np.zeros(len(idx))

    def act(self, day: Day) -> NDArray[np.float64]:
        return self.base * np.exp(self.u) / (1.0 + self.mu)

    def update(self, day: Day) -> None:
        super().update(day)
        conv = day.conversions[self.idx]
        spend = day.spend[self.idx]
        tcpa = day.market.advertisers.target_cpa[self.idx]
        cpa = np.divide(spend, conv, out=tcpa.copy(), where=conv > 0)
        err = np.log(tcpa / np.maximum(cpa, 1e-12))
        self.integral = np.clip(self.integral + err, -20.0, 20.0)
        deriv = err - self.err
        self.err = err
        self.u = np.clip(
            self.kp * err + self.ki * self.integral + self.kd * deriv, -3, 3
        )


class OnlineLP(AutoBidder):
    """The largest multiplier of a grid that the last period says fits the
    budget left and the target CPA (``lam = T / V`` before any history)."""

    needs_landscape = True

    def reset(self, day: Day, idx: NDArray[np.int64]) -> None:
        super().reset(day, idx)
        adv = day.market.advertisers
        self.lam = adv.target_cpa[idx] / adv.value[idx]

    def act(self, day: Day) -> NDArray[np.float64]:
        return self.lam

    def update(self, day: Day) -> None:
        spend_g, conv_g = day.landscape  # [N, G] of the period just played
        spend_g, conv_g = spend_g[self.idx], conv_g[self.idx]
        m = day.market
        t = day.t - 1
        rest = m.shares[day.t :].sum() / max(m.shares[t], 1e-12)
        left = day.budget_left[self.idx][:, None]
        tcpa = m.advertisers.target_cpa[self.idx][:, None]
        spent = day.spend[self.idx][:, None]
        got = day.conversions[self.idx][:, None]
        fits = spend_g * rest <= left
        cpa_ok = spent + spend_g * rest <= tcpa * (got + conv_g * rest)
        ok = fits & cpa_ok
        # largest ok multiplier; none ok: the smallest of the grid
        pick = np.where(ok.any(axis=1), ok.shape[1] - 1 - ok[:, ::-1].argmax(axis=1), 0)
        if day.t < day.periods:
            self.lam = LAMBDA_GRID[pick]


KINDS = {"truthful": Truthful, "pacing": Pacing, "pid": PID, "onlinelp": OnlineLP}
"Baseline bidders by config name."


def make_bidder(kind: str) -> AutoBidder:
    """A fresh baseline bidder of ``kind`` (a name of :data:`KINDS`)."""
    return KINDS[kind]()
