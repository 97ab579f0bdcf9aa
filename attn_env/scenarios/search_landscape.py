"""What each advertiser could have had: the landscape of its auctions, the others'
bids held as they were.

For every entrant m of every impression, with the other entrants' scores
``o_1 >= o_2 >= ...`` (their final bids x quality), slot k costs the least a
bid can pay for it (docs/search_day.md, "Hindsight"):

- GSP, first price, second price: ``max(o_k / q_m, reserve)`` per click (a
  first-price bid just above the threshold pays about that);
- VCG: ``sum_{j>=k} (pos_j - pos_{j+1}) max(o_j / q_m, reserve) / pos_k`` per
  unit of position, the externality on the entrants below;

and brings ``ctr_top * e_k * r_m`` clicks (``e_k`` as in the auction, with the
entrants above in the cascade model) and ``clicks * pConv`` conversions.

Two summaries are accumulated per advertiser over a day:

- :func:`grid_totals`: spend and conversions at each multiplier of a grid (what
  a fixed lambda would have bought): OnlineLP's forecast and the best fixed
  lambda in hindsight;
- :func:`dual_totals`: ``D(mu) = sum_i max(0, max_k conv_ik - mu * cost_ik)``,
  from which weak LP duality bounds the conversions any policy could buy with
  spend S: ``C(S) <= mu * S + D(mu)`` for every ``mu >= 0``
  (:func:`score_bound`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.errors import ConfigError
from attn_env.scenarios.search_auction import SearchAuction
from attn_env.scenarios.search_state import auctionnet_score

__all__ = [
    "LAMBDA_GRID",
    "MU_GRID",
    "Options",
    "dual_totals",
    "grid_totals",
    "hindsight_lambda",
    "score_bound",
    "slot_options",
]

LANDSCAPE_MECHANISMS = ("gsp", "first_price", "second_price", "vcg")
"Mechanisms whose slot prices the landscape knows."
LAMBDA_GRID = np.geomspace(0.05, 8.0, 40)
"Multipliers of :func:`grid_totals`."
MU_GRID = np.concatenate([[0.0], np.geomspace(0.01, 100.0, 60)])
"Dual prices of :func:`dual_totals`, in units of 1 / target CPA."


@dataclass(frozen=True)
class Options:
    """The slots each entrant could have taken ``[B, M, K]`` and who it is."""

    adv: NDArray[np.int64]
    "Advertiser of each entrant ``[B, M]``."
    valid: NDArray[np.bool_]
    others: NDArray[np.float64]
    "The other entrants' k-th score ``[B, M, K]``."
    cost: NDArray[np.float64]
    "Least spend for slot k ``[B, M, K]``."
    conv: NDArray[np.float64]
    "Conversions in slot k ``[B, M, K]``."
    price: NDArray[np.float64]
    "Least price per click for slot k ``[B, M, K]``."
    clicks: NDArray[np.float64]
    unit_bid: NDArray[np.float64]
    "Bid per click at lambda = 1, ``V * pConv`` ``[B, M]``."
    quality: NDArray[np.float64]
    "Quality score ``[B, M]``."


def slot_options(
    auction: SearchAuction, queries: NDArray[np.int64], bids: NDArray[np.float64]
) -> Options:
    """The :class:`Options` of every entrant of ``queries`` cleared with ``bids``."""
    name = mechanisms.name_of(auction.mech)
    if name not in LANDSCAPE_MECHANISMS:
        raise ConfigError(
            f"the landscape (OnlineLP, hindsight bounds) knows the prices of "
            f"{', '.join(LANDSCAPE_MECHANISMS)}, not of mechanism {name!r}"
        )
    k_slots = auction.n_slots
    q = auction.quality[queries]
    r = auction.pages.relevance[queries]
    pos = auction.pages.pos[queries]
    valid = auction.valid[queries]
    score = bids * q
    b, width = score.shape
    pad = np.zeros((b, max(k_slots + 1 - width, 0)))
    score_p = np.concatenate([score, pad], axis=1)
    r_p = np.concatenate([r, pad], axis=1)
    order = np.argsort(-score_p, axis=1, kind="stable")[:, : k_slots + 1]
    top = np.take_along_axis(score_p, order, axis=1)
    top_r = np.take_along_axis(r_p, order, axis=1)
    rank = np.full(score_p.shape, k_slots + 1)
    np.put_along_axis(rank, order, np.arange(k_slots + 1)[None, :], axis=1)
    rank = rank[:, :width]
    j = np.arange(k_slots)
    below = j[None, None, :] >= rank[:, :, None]
    others = np.where(below, top[:, None, j + 1], top[:, None, j])
    others_r = np.where(below, top_r[:, None, j + 1], top_r[:, None, j])
    reserve = auction.mech.reserve
    thr = np.maximum(others / q[:, :, None], reserve)
    if name == "vcg":
        pos_next = np.concatenate([pos[:, 1:], np.zeros((b, 1))], axis=1)
        step = (pos - pos_next)[:, None, :] * thr
        tail = np.cumsum(step[:, :, ::-1], axis=2)[:, :, ::-1]
        price = tail / pos[:, None, :]
    else:
        price = thr
    ctr = auction.econ.ctr_top
    if auction.cascade:
        exam = np.ones_like(others_r)
        exam[:, :, 1:] = np.cumprod(1.0 - ctr * others_r, axis=2)[:, :, :-1]
    else:
        exam = np.broadcast_to(pos[:, None, :], others.shape)
    clicks = ctr * exam * r[:, :, None]
    conv = clicks * auction.pconv[queries][:, :, None]
    return Options(
        adv=auction.adv_idx[queries],
        valid=valid,
        others=others,
        cost=price * clicks,
        conv=conv,
        price=price,
        clicks=clicks,
        unit_bid=auction.click_value[queries],
        quality=q,
    )


def grid_totals(
    auction: SearchAuction, opts: Options, grid: NDArray = LAMBDA_GRID
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Spend and conversions ``[N, G]`` each advertiser would have had at each
    multiplier of the ascending ``grid`` (first price pays its bid, the others
    the slot's price).

    Without a pass per multiplier: entrant m holds slot
    ``#{j : lambda*_j > lambda}`` where ``lambda*_j = o_j / (V pConv q)``, so
    its outcome as a function of the grid index is a step function; each step
    ``x_j - x_{j+1}`` enters a difference array at the first grid index past
    ``lambda*_j`` (and past the reserve), and one cumulative sum per
    advertiser gives every multiplier's totals.
    """
    n = auction.adv.n
    grid = np.asarray(grid, dtype=np.float64)
    g = len(grid)
    ok = opts.valid & (opts.unit_bid > 0)
    unit = np.where(ok, opts.unit_bid, 1.0)
    need = opts.others / (unit * opts.quality)[:, :, None]  # lambda*_j [B, M, K]
    enter = np.searchsorted(grid, need, side="left")
    start = np.maximum(
        enter[:, :, -1], np.searchsorted(grid, auction.mech.reserve / unit, side="left")
    )
    at = np.maximum(enter, start[:, :, None])  # [B, M, K]
    first_price = mechanisms.name_of(auction.mech) == "first_price"
    pay = opts.clicks * unit[:, :, None] if first_price else opts.cost

    def steps(x: NDArray) -> NDArray:
        nxt = np.concatenate([x[:, :, 1:], np.zeros_like(x[:, :, :1])], axis=2)
        return x - nxt

    idx = (opts.adv[:, :, None] * (g + 1) + at)[ok]
    totals = []
    for x in (pay, opts.conv):
        diff = np.bincount(idx.ravel(), steps(x)[ok].ravel(), n * (g + 1))
        totals.append(np.cumsum(diff.reshape(n, g + 1), axis=1)[:, :g])
    spend, conv = totals
    if first_price:
        spend = spend * grid[None, :]
    return spend, conv


def dual_totals(
    auction: SearchAuction, opts: Options, mu_grid: NDArray = MU_GRID
) -> NDArray[np.float64]:
    """``D [N, G]``: sum over each advertiser's impressions of
    ``max(0, max_k conv_k - mu * cost_k)``, ``mu = mu_grid / target CPA``."""
    n = auction.adv.n
    tcpa = auction.adv.target_cpa[opts.adv]  # [B, M]
    mu = mu_grid[None, None, :] / tcpa[:, :, None]  # [B, M, G]
    gain = opts.conv[:, :, :, None] - mu[:, :, None, :] * opts.cost[:, :, :, None]
    best = np.maximum(gain.max(axis=2), 0.0)  # [B, M, G]
    return _per_advertiser(opts.adv, opts.valid, best, n)


def _per_advertiser(adv, valid, x, n) -> NDArray[np.float64]:
    """Sum ``x [B, M, G]`` over the entrants of each advertiser: ``[N, G]``."""
    g = x.shape[2]
    idx = (adv[valid][:, None] * g + np.arange(g)[None, :]).ravel()
    return np.bincount(idx, x[valid].ravel(), n * g).reshape(n, g)


def score_bound(
    dual: NDArray[np.float64],
    budget: NDArray[np.float64],
    target_cpa: NDArray[np.float64],
    mu_grid: NDArray = MU_GRID,
    points: int = 512,
) -> NDArray[np.float64]:
    """An upper bound ``[N]`` on the AuctionNet score any bidding could reach.

    Conversions bought with spend S are at most ``C(S) = min_g mu_g S + D_g``
    (weak duality), and on ``[S_i, S_{i+1}]`` the score is at most
    ``C(S_{i+1}) * min(1, (T * C(S_{i+1}) / S_i) ** 2)``.
    """
    n = len(budget)
    frac = np.linspace(0.0, 1.0, points + 1)
    s = budget[:, None] * frac[None, :]  # [N, P+1]
    mu = mu_grid[None, :] / target_cpa[:, None]  # [N, G]
    c = (mu[:, None, :] * s[:, :, None] + dual[:, None, :]).min(axis=2)  # [N, P+1]
    hi = c[:, 1:]
    lo_s = s[:, :-1]
    ratio = np.divide(
        target_cpa[:, None] * hi, lo_s, out=np.ones_like(hi), where=lo_s > 0
    )
    bound = hi * np.minimum(1.0, ratio**2)
    return bound.max(axis=1) if n else np.zeros(0)


def hindsight_lambda(
    spend: NDArray[np.float64],
    conv: NDArray[np.float64],
    budget: NDArray[np.float64],
    target_cpa: NDArray[np.float64],
    grid: NDArray = LAMBDA_GRID,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Best fixed multiplier per advertiser on the realised day, and its score.

    ``spend, conv [T, N, G]`` per period and multiplier; a multiplier whose
    spend passes the budget stops there (the period's totals pro rata).
    """
    cum = np.cumsum(spend, axis=0)
    prev = cum - spend
    room = np.clip(budget[None, :, None] - prev, 0.0, None)
    frac = np.divide(room, spend, out=np.ones_like(spend), where=spend > room)
    frac = np.clip(frac, 0.0, 1.0)
    tot_s = (spend * frac).sum(axis=0)
    tot_c = (conv * frac).sum(axis=0)
    score = auctionnet_score(tot_c, tot_s, target_cpa[:, None])
    best = score.argmax(axis=1)
    rows = np.arange(len(budget))
    return grid[best], score[rows, best]
