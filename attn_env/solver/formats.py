"""Formats and bidder classes beyond the symmetric position auctions.

- :class:`AllPay`: the all-pay auction of one slot (the highest bid wins, every
  bidder at or above the reserve pays its bid), a one-sided mechanism that the
  environment clears like any other (pass an instance, ``EnvConfig(mechanism=
  AllPay())``, or ``mechanisms.register("all_pay", AllPay)`` in a plugin). It
  is not registered by default: the library's mechanism list is unchanged.
  The solver recognises it and computes its payoffs exactly (rule
  ``all_pay``); a subclass goes through its own ``clear``, as any user
  mechanism does.
- :class:`WarOfAttrition`: one slot, the highest bid wins and every bidder
  pays the least of its bid and the highest other bid; not registered by
  default either (the plug-in :mod:`attn_env.solver.formats_plugin` names
  both), solved by the generic path.
- :func:`independent_payoffs`: exact payoffs of one bidder against opponents
  that bid from *different* distributions (asymmetric classes), for the
  one-slot pay-your-bid rules (``first_price``, ``all_pay``). With opponent
  ``j`` below the bid ``c`` with probability ``lo_j`` and tied with it with
  ``eq_j``, the bidder wins when nobody is above and then one of the ``E + 1``
  tied bidders uniformly, so

  ``P(win) = E[1{H = 0} / (E + 1)] = int_0^1 prod_j (lo_j + eq_j t) dt``

  (``int_0^1 t^e dt = 1 / (e + 1)``), a polynomial of degree ``N`` in ``t``,
  integrated exactly by Gauss–Legendre quadrature on ``N // 2 + 1`` nodes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import UserError
from attn_env.mechanisms.outcome import Outcome
from attn_env.mechanisms.position import FirstPrice

__all__ = ["INDEPENDENT_RULES", "AllPay", "WarOfAttrition", "independent_payoffs"]

INDEPENDENT_RULES = ("first_price", "all_pay")
"One-slot rules with exact payoffs against non-identical opponents."


class _LosersPay(FirstPrice):
    """First price's allocation of one slot with another payment rule: every
    bidder at or above the reserve pays :meth:`payments`, winning or not."""

    one_slot = ""

    def clear(
        self,
        bids: ArrayLike,
        weights: ArrayLike | None = None,
        quality: ArrayLike | None = None,
        rng: np.random.Generator | None = None,
    ) -> Outcome:
        """First price's allocation; each bid at or above the reserve pays
        :meth:`payments`, the others nothing."""
        out = super().clear(bids, weights=weights, quality=quality, rng=rng)
        b = np.asarray(bids, dtype=np.float64).reshape(out.pay.shape)
        pay = np.where(b >= self.reserve, self.payments(b), 0.0)
        return replace(out, pay=pay, price=pay)

    def payments(self, bids: NDArray[np.float64]) -> NDArray[np.float64]:
        """``[B, n]`` what each bid pays (where it is at least the reserve)."""
        raise NotImplementedError


class AllPay(_LosersPay):
    """All-pay auction of one slot: the highest bid (at least the reserve) wins the
    slot, ties at random; every bidder at or above the reserve pays its bid."""

    name = "all_pay"

    def payments(self, bids: NDArray[np.float64]) -> NDArray[np.float64]:
        return bids


class WarOfAttrition(_LosersPay):
    """War of attrition for one slot: the highest bid (at least the reserve)
    wins, ties at random; every bidder at or above the reserve pays the least
    of its bid and the highest other bid (a loser quits at its bid and pays
    it; the winner pays when the last rival quits), and at least the reserve
    (the least price, as elsewhere). Bids are times to hold on, unbounded in
    theory: the env's ``max_bid`` caps them.

    Two bidders with values ``U[0, 1]`` have the closed form
    ``attn_env.equilibria.war_of_attrition_bne`` (``-v - log(1 - v)``); under
    a cap the types near 1 pool at it, and the solver (generic path) finds
    the closed form below them. SODA's steps stay scaled per value here: the
    unscaled steps all-pay needs did worse (utility loss 0.049 / 0.022 at
    3,000 / 6,000 iterations, against 0.026 / 0.019).
    """

    name = "war_of_attrition"

    def payments(self, bids: NDArray[np.float64]) -> NDArray[np.float64]:
        """``max(min(bid, highest other bid), reserve)``."""
        if bids.shape[1] == 1:
            other = np.zeros_like(bids)
        else:
            top = -np.partition(-bids, 1, axis=1)[:, :2]  # [B, 2] highest two
            other = np.where(bids >= top[:, :1], top[:, 1:], top[:, :1])
        return np.maximum(np.minimum(bids, other), self.reserve)


def independent_payoffs(
    rule: str,
    opponents: list[tuple[NDArray[np.float64], NDArray[np.float64], int]],
    alpha: float,
    reserve: float,
    cand: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Expected attention ``A [C]`` and payment ``P [C]`` of each candidate bid.

    Args:
        rule: one of :data:`INDEPENDENT_RULES` (one slot).
        opponents: ``(support [S], mass [S], count)`` per opponent class; the
            ``count`` opponents of a class bid independently from its law.
        alpha: the slot's attention.
        reserve: least bid that can win (a bid under it wins and pays nothing).
        cand: ``[C]`` candidate bids of the one bidder.
    """
    if rule not in INDEPENDENT_RULES:
        raise UserError(
            f"no exact payoffs against unequal opponents for {rule!r}; known: "
            f"{', '.join(INDEPENDENT_RULES)}"
        )
    cand = np.asarray(cand, dtype=np.float64)
    n_opp = sum(count for _, _, count in opponents)
    nodes, wts = np.polynomial.legendre.leggauss(n_opp // 2 + 1)
    t, wts = (nodes + 1.0) / 2.0, wts / 2.0  # on [0, 1]
    win = np.ones((len(cand), len(t)))
    for support, mass, count in opponents:
        if count == 0:
            continue
        support = np.asarray(support, dtype=np.float64)
        mass = np.asarray(mass, dtype=np.float64) / np.sum(mass)
        tol = 1e-12 * max(1.0, float(np.abs(support).max(initial=0.0)))
        lo = (mass[None, :] * (support[None, :] < cand[:, None] - tol)).sum(axis=1)
        eq = (mass[None, :] * (np.abs(support[None, :] - cand[:, None]) <= tol)).sum(
            axis=1
        )
        win *= (lo[:, None] + eq[:, None] * t[None, :]) ** count
    can_win = (cand >= reserve).astype(np.float64)
    alloc = alpha * can_win * (win @ wts)
    if rule == "first_price":
        return alloc, cand * alloc
    return alloc, can_win * cand
