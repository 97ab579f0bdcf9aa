"""Monte Carlo estimates over independent episodes: standard errors and differences.

Every market figure of :class:`attn_env.market_log.MarketLog` is a ratio of
totals over episodes, ``R = sum_e num_e / sum_e den_e`` (a per-episode mean is
the case ``den_e = 1``; efficiency is welfare over first-best welfare; the mean
price is payments over units). Episodes are the independent draws: rounds
within one episode may be linked (values held for the episode, budgets,
agents that adapt), so the unit of replication is the episode, never the round.

The standard error of ``R`` is the delta-method (ratio-estimator) one:
each episode's *influence* ``z_e = (num_e - R den_e) / mean(den)`` linearises
``R`` around its value, and ``se = std(z, ddof=1) / sqrt(E)``. For a plain mean
this is the textbook ``std(x, ddof=1) / sqrt(E)``.

Two designs played on the same episodes (common random numbers: the same seed
draws the same values when the markets have the same shape) give a *paired*
difference, whose standard error is that of ``z_A - z_B``; otherwise the
difference is unpaired and its standard error is Welch's
``sqrt(se_A^2 + se_B^2)``, with Welch–Satterthwaite degrees of freedom for the
confidence interval (Student t in both cases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["Difference", "Estimate", "difference"]

_TOL = 1e-12


@dataclass(frozen=True)
class Estimate:
    """A ratio of episode totals and its per-episode influence values.

    Attributes:
        value: the estimate ``sum(num) / sum(den)`` (``nan`` when ``sum(den)``
            is 0).
        influence: ``float64 [E]``, one linearised term per episode (all ``nan``
            when the value is).
    """

    value: float
    influence: NDArray[np.float64]

    @classmethod
    def ratio(cls, num: ArrayLike, den: ArrayLike) -> Estimate:
        """``sum(num) / sum(den)`` of per-episode totals ``num, den [E]``.

        Episodes with ``den_e = 0`` (no trade, nothing to gain) add nothing to
        either total and have influence 0.
        """
        num = np.asarray(num, dtype=np.float64)
        den = np.asarray(den, dtype=np.float64)
        if num.ndim != 1 or num.shape != den.shape:
            raise ValueError(
                f"num and den must be [E] arrays of one shape, got {num.shape} "
                f"and {den.shape}"
            )
        mean_den = den.mean() if den.size else 0.0
        if abs(mean_den) <= _TOL:
            return cls(math.nan, np.full(num.shape, math.nan))
        value = float(num.sum() / den.sum())
        return cls(value, (num - value * den) / mean_den)

    @classmethod
    def mean(cls, x: ArrayLike) -> Estimate:
        """The mean of per-episode values ``x [E]``."""
        x = np.asarray(x, dtype=np.float64)
        return cls.ratio(x, np.ones_like(x))

    @property
    def episodes(self) -> int:
        """Number of episodes ``E``."""
        return int(self.influence.size)

    @property
    def se(self) -> float:
        """Standard error over episodes (``nan`` with fewer than 2 episodes)."""
        return _se(self.influence)

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Two-sided Student-t interval ``value -/+ t(E - 1) se`` (``nan`` ends
        with fewer than 2 episodes)."""
        half = _t_half(self.se, float(self.episodes - 1), confidence)
        return (self.value - half, self.value + half)


def _se(z: NDArray[np.float64]) -> float:
    if z.size < 2 or not np.all(np.isfinite(z)):
        return math.nan
    return float(z.std(ddof=1) / math.sqrt(z.size))


def _t_half(se: float, df: float, confidence: float) -> float:
    """Half-width ``t(df) se`` of a two-sided Student-t interval at ``confidence``
    (0 when ``se`` is 0, ``nan`` when ``se`` or ``df`` is undefined)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if math.isfinite(se) and math.isfinite(df) and df > 0:
        from scipy.stats import t

        return float(t.ppf(0.5 + confidence / 2, df)) * se
    return 0.0 if se == 0.0 else math.nan


@dataclass(frozen=True)
class Difference:
    """``A - B`` of two estimates, with its standard error and confidence interval.

    Attributes:
        diff: ``A.value - B.value``.
        se: paired standard error when ``paired``, else Welch's.
        se_unpaired: Welch's ``sqrt(se_A^2 + se_B^2)`` (what pairing is compared
            against).
        df: degrees of freedom of the t interval (``E - 1`` paired, Welch's
            otherwise).
        ci_low, ci_high: the two-sided confidence interval ``diff -/+ t se``.
        paired: whether the episodes were paired (common random numbers).
    """

    diff: float
    se: float
    se_unpaired: float
    df: float
    ci_low: float
    ci_high: float
    paired: bool


def difference(
    a: Estimate, b: Estimate, paired: bool, confidence: float = 0.95
) -> Difference:
    """``a - b`` with a Student-t confidence interval.

    Args:
        a, b: estimates; when ``paired`` they must come from the same episodes
            (episode ``e`` of ``a`` drew what episode ``e`` of ``b`` drew).
        paired: use the paired standard error (``std(z_a - z_b) / sqrt(E)``);
            otherwise Welch's.
        confidence: level of the interval, in (0, 1).
    """
    if paired and a.episodes != b.episodes:
        raise ValueError(
            f"paired estimates need the same episodes, got {a.episodes} and "
            f"{b.episodes}"
        )
    diff = a.value - b.value
    se_a, se_b = a.se, b.se
    se_unpaired = math.sqrt(se_a**2 + se_b**2)
    if paired:
        se, df = _se(a.influence - b.influence), float(a.episodes - 1)
    else:
        se = se_unpaired
        # Welch–Satterthwaite; a design without spread adds no degrees of freedom
        parts = [s**4 / (e - 1) for s, e in ((se_a, a.episodes), (se_b, b.episodes))]
        df = se**4 / sum(parts) if sum(parts) > 0 else math.nan
    half = _t_half(se, df, confidence)
    return Difference(
        diff, se, se_unpaired, df, diff - half, diff + half, paired=bool(paired)
    )
