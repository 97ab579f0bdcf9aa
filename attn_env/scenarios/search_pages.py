"""Who enters each query's auction, with what relevance, on what page.

Everything here is read once from the attention bank (no model call per
impression):

- **Eligible advertisers.** The bank holds, for every query, a candidate set
  of ads. An advertiser enters the query's auction when it owns at least one
  ad of that set, with its most relevant one: ``r[q, a] = max`` of the mapped
  relevance over its ads there.
- **Position factors.** ``pos[q, k] = alpha_k / alpha_1`` of the query's
  K-slot pages in the bank (the attention the query's tokens pay to slot k),
  averaged over the bank's page layouts; sorted descending, ``pos[q, 0] = 1``.
  With ``click_model: pbm`` the configured examination curve replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import ConfigError
from attn_env.valuations.bank import Bank, map_relevance

__all__ = ["Pages", "read_pages"]


@dataclass(frozen=True)
class Pages:
    """Per-query auction entrants and position factors.

    ``eligible [Q, M]`` advertiser index (-1 pads), ``relevance [Q, M]`` their
    r in [0, 1] (0 at pads), ``pos [Q, K]`` position factors.
    """

    eligible: NDArray[np.int64]
    relevance: NDArray[np.float64]
    pos: NDArray[np.float64]

    @property
    def n_queries(self) -> int:
        """Queries Q."""
        return int(self.eligible.shape[0])


def read_pages(
    bank: Bank,
    ad_owner: NDArray[np.int64],
    n_slots: int,
    relevance: str = "logistic",
    pbm: list[float] | None = None,
) -> Pages:
    """The :class:`Pages` of a bank, for ads owned as ``ad_owner`` says.

    Args:
        bank: a bank over the day's queries (rows) and ads (candidate indices).
        ad_owner: owner advertiser of each ad (corpus index), -1 for none.
        n_slots: slots K per page; at most the bank's largest page.
        relevance: ``logistic`` or ``max`` (:func:`map_relevance`).
        pbm: an examination curve to use instead of measured attention.
    """
    if n_slots > bank.max_slots:
        raise ConfigError(
            f"auction.slots is {n_slots} but the attention bank holds pages of at "
            f"most {bank.max_slots} slots"
        )
    r = map_relevance(np.asarray(bank.relevance_raw), relevance)
    owners = np.asarray(ad_owner)[np.asarray(bank.candidates)]  # [Q, C]
    n_q, n_c = owners.shape
    # best ad per (query, owner): sort each row by (owner, -r) and keep firsts
    key = np.where(owners >= 0, owners, np.iinfo(np.int64).max)
    order = np.lexsort((-r, key), axis=1)
    own_s = np.take_along_axis(owners, order, axis=1)
    r_s = np.take_along_axis(r, order, axis=1)
    first = np.ones_like(own_s, dtype=bool)
    first[:, 1:] = own_s[:, 1:] != own_s[:, :-1]
    keep = first & (own_s >= 0)
    width = max(int(keep.sum(axis=1).max(initial=0)), 1)
    col = np.cumsum(keep, axis=1) - 1
    eligible = np.full((n_q, width), -1, dtype=np.int64)
    rel = np.zeros((n_q, width))
    rows = np.broadcast_to(np.arange(n_q)[:, None], (n_q, n_c))
    eligible[rows[keep], col[keep]] = own_s[keep]
    rel[rows[keep], col[keep]] = r_s[keep]
    if pbm is not None:
        pos = np.broadcast_to(
            np.asarray(pbm[:n_slots], dtype=np.float64), (n_q, n_slots)
        )
    else:
        alpha = np.asarray(bank.alpha, dtype=np.float64)[:, :, n_slots - 1, :n_slots]
        alpha = -np.sort(-alpha, axis=2)
        pos = (alpha / alpha[:, :, :1]).mean(axis=1)
    return Pages(eligible=eligible, relevance=rel, pos=np.ascontiguousarray(pos))
