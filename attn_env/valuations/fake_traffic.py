"""Fake attention: bot traffic inflating some ads' measured r, or the slots' alpha.

Any source can carry it, through ``valuation_params``::

    valuation_params: {fake_traffic: {ads: [0], boost: 2.0}}             # r of ad 0
    valuation_params: {fake_traffic: {share: 0.25, boost: 1.5}}          # first quarter
    valuation_params: {fake_traffic: {target: alpha, boost: 1.3}}        # every slot

With ``target: relevance`` (default) the targeted ads' relevance r (their
measured click or attention rate) is multiplied by ``boost``: their advertisers
see a value per unit of ``theta * r * boost`` and bid on it, though only
``theta * r`` is real. With ``target: alpha`` every slot's attention mass is
multiplied by ``boost``: buyers pay for attention bots produced. The targeted
ads are the buyer columns ``ads``, or the first ``max(1, round(share * n))``.

The wrapper draws nothing itself (the inner source's draws are untouched), so a
market with and without fake traffic on the same seed draws the same values:
:func:`true_draw` recovers the real r and alpha from the measured ones.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import ConfigError
from attn_env.valuations.base import Draw, ValuationSource

__all__ = [
    "TARGETS",
    "FakeTrafficSource",
    "check_fake_traffic",
    "fake_ads",
    "true_draw",
]

TARGETS = ("relevance", "alpha")
_KEYS = ("ads", "share", "boost", "target")


def check_fake_traffic(spec: Any) -> dict[str, Any]:
    """The validated ``fake_traffic`` options (``ValueError`` naming a bad one)."""
    if not isinstance(spec, dict):
        raise ConfigError(
            f"fake_traffic must be a mapping with keys {', '.join(_KEYS)}, got {spec!r}"
        )
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"fake_traffic: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(_KEYS)}"
        )
    out = {"ads": None, "share": None, "boost": 2.0, "target": "relevance", **spec}
    if out["ads"] is not None and out["share"] is not None:
        raise ConfigError("fake_traffic: give ads or share, not both")
    ads = out["ads"]
    if ads is not None and not (
        isinstance(ads, list | tuple)
        and ads
        and all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in ads)
    ):
        raise ConfigError(
            f"fake_traffic.ads must be a non-empty list of buyer indices, got {ads!r}"
        )
    share = out["share"]
    if share is not None and not (_real(share) and 0.0 < share <= 1.0):
        raise ConfigError(f"fake_traffic.share must be in (0, 1], got {share!r}")
    if not (_real(out["boost"]) and out["boost"] > 0.0):
        raise ConfigError(
            f"fake_traffic.boost must be a number > 0, got {out['boost']!r}"
        )
    if out["target"] not in TARGETS:
        raise ConfigError(
            f"fake_traffic.target must be one of {', '.join(TARGETS)}, "
            f"got {out['target']!r}"
        )
    return out


def _real(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def fake_ads(spec: dict[str, Any], n_buyers: int) -> list[int]:
    """The buyer columns whose r the bots inflate (``[]`` under ``target: alpha``)."""
    spec = check_fake_traffic(spec)
    if spec["target"] == "alpha":
        return []
    if spec["ads"] is None:
        share = 0.25 if spec["share"] is None else spec["share"]
        return list(range(max(1, round(share * n_buyers))))
    bad = [a for a in spec["ads"] if a >= n_buyers]
    if bad:
        raise ConfigError(
            f"fake_traffic.ads must be buyer indices in [0, {n_buyers}), got {bad}"
        )
    return sorted(set(spec["ads"]))


class FakeTrafficSource:
    """Wrap a valuation source so that bots inflate measured r or alpha.

    Args:
        inner: the source of the real draws.
        **spec: ``ads``, ``share``, ``boost``, ``target`` (module docstring).
    """

    def __init__(self, inner: ValuationSource, **spec: Any) -> None:
        self.inner = inner
        self.spec = check_fake_traffic(spec)
        self.name = inner.name
        # the draws keep the inner labels, so fairness by vertical still reads them
        self.group_names: tuple[str, ...] = tuple(getattr(inner, "group_names", ()))

    def draw(
        self, rng: np.random.Generator, batch: int, n_buyers: int, n_slots: int
    ) -> Draw:
        """The inner draw with the bots' inflation applied (no extra randomness)."""
        d = self.inner.draw(rng, batch, n_buyers, n_slots)
        boost = float(self.spec["boost"])
        if self.spec["target"] == "alpha":
            return dataclasses.replace(d, alpha=d.alpha * boost)
        r = np.array(d.relevance, dtype=np.float64)
        r[:, fake_ads(self.spec, n_buyers)] *= boost
        return dataclasses.replace(d, relevance=r)


def true_draw(
    spec: dict[str, Any], relevance: NDArray, alpha: NDArray
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The real ``(relevance [B, n], alpha [B, K])`` behind measured ones."""
    spec = check_fake_traffic(spec)
    r = np.array(relevance, dtype=np.float64)
    a = np.array(alpha, dtype=np.float64)
    if spec["target"] == "alpha":
        return r, a / spec["boost"]
    r[:, fake_ads(spec, r.shape[1])] /= spec["boost"]
    return r, a
