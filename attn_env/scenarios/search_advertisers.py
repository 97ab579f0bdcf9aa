"""Advertisers of a search day: who sells in which vertical, owns which ads, and
what a conversion is worth to them.

Drawn from a seed (documented in docs/search_day.md, "Advertisers"):

- advertiser ``a`` sells in vertical ``a mod V`` (the corpus's verticals, in
  sorted order, so every vertical gets N / V advertisers) and, with probability
  ``second_vertical``, in one other vertical drawn uniformly;
- every ad of a vertical is owned by one of the advertisers selling there,
  drawn uniformly (ads of a vertical nobody sells in stay unowned);
- value per conversion ``V ~ LogNormal(log value_median, value_sigma)``;
- target CPA ``T = V * U(target_cpa)``;
- daily budget ``B = T * U(budget_conversions) * impressions / 500,000``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from attn_env.scenarios.search_config import AdvertiserConfig

__all__ = ["REFERENCE_IMPRESSIONS", "Advertisers", "draw_advertisers"]

REFERENCE_IMPRESSIONS = 500_000
"The day size that ``budget_conversions`` refers to."


@dataclass(frozen=True)
class Advertisers:
    """N advertisers as arrays (index = agent index)."""

    names: list[str]
    value: NDArray[np.float64]
    "Value per conversion ``[N]``."
    target_cpa: NDArray[np.float64]
    "Target cost per acquisition ``[N]``."
    budget: NDArray[np.float64]
    "Daily budget ``[N]``."
    verticals: list[tuple[str, ...]]
    "The verticals each advertiser sells in."
    ad_owner: NDArray[np.int64]
    "Owner of every ad of the corpus ``[n_ads]``, -1 for none."

    @property
    def n(self) -> int:
        """The number of advertisers."""
        return len(self.names)


def draw_advertisers(
    cfg: AdvertiserConfig,
    ad_verticals: list[str],
    impressions: int,
    rng: np.random.Generator,
) -> Advertisers:
    """Draw ``cfg.n`` advertisers over the verticals of ``ad_verticals``."""
    verts = sorted(set(ad_verticals))
    n = cfg.n
    own: list[tuple[str, ...]] = []
    for a in range(n):
        first = verts[a % len(verts)]
        pick = [first]
        if len(verts) > 1 and rng.random() < cfg.second_vertical:
            others = [v for v in verts if v != first]
            pick.append(others[int(rng.integers(len(others)))])
        own.append(tuple(pick))
    ad_vert = np.asarray(ad_verticals)
    owner = np.full(len(ad_verticals), -1, dtype=np.int64)
    for v in verts:
        sellers = np.array([a for a in range(n) if v in own[a]], dtype=np.int64)
        ads = np.flatnonzero(ad_vert == v)
        if len(sellers):
            owner[ads] = sellers[rng.integers(len(sellers), size=len(ads))]
    value = np.exp(np.log(cfg.value_median) + cfg.value_sigma * rng.standard_normal(n))
    target = value * rng.uniform(*cfg.target_cpa, size=n)
    scale = impressions / REFERENCE_IMPRESSIONS
    budget = target * rng.uniform(*cfg.budget_conversions, size=n) * scale
    return Advertisers(
        names=[f"advertiser_{a}" for a in range(n)],
        value=value,
        target_cpa=target,
        budget=budget,
        verticals=own,
        ad_owner=owner,
    )
