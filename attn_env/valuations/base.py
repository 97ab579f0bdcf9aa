"""The valuation-source interface: where a round's theta, r and alpha come from.

The environment owns one seeded ``numpy.random.Generator`` and asks its source
for a batch of draws; a source never keeps its own generator, so seeding the
environment seeds everything.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import ConfigError

__all__ = [
    "Draw",
    "ValuationSource",
    "affiliated_units",
    "draw_values",
    "stratified_uniforms",
]

VALUE_DISTS = ("uniform", "beta", "lognormal")


@dataclass(frozen=True)
class Draw:
    """One round of ``B`` markets.

    Attributes:
        theta: ``float64 [B, n]`` private value per unit of attention of each buyer.
        relevance: ``float64 [B, n]`` relevance ``r_i`` of buyer i's candidate (1 in
            ``uniform``).
        alpha: ``float64 [B, K]`` attention mass of each slot, sorted descending
            (1 in ``uniform``).
        group: ``int64 [B, n]`` label of buyer i's ad, an index into the
            source's ``group_names`` (``attention``: the candidate's vertical);
            ``None`` for a source without labels.
    """

    theta: NDArray[np.float64]
    relevance: NDArray[np.float64]
    alpha: NDArray[np.float64]
    group: NDArray[np.int64] | None = None

    @property
    def unit_value(self) -> NDArray[np.float64]:
        """``theta * r``: the truthful bid per unit of attention, ``[B, n]``."""
        return self.theta * self.relevance


@runtime_checkable
class ValuationSource(Protocol):
    """Anything that draws a batch of rounds from the environment's generator."""

    name: str

    def draw(
        self, rng: np.random.Generator, batch: int, n_buyers: int, n_slots: int
    ) -> Draw:
        """Draw ``batch`` independent rounds."""
        ...


def draw_values(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dist: str = "uniform",
    low: float = 0.0,
    high: float = 1.0,
) -> NDArray[np.float64]:
    """Private values in ``[low, high]`` from a named distribution.

    ``uniform`` is U[low, high]; ``beta`` is Beta(2, 2) scaled to the range;
    ``lognormal`` is LogNormal(0, 0.5) clipped to the range (documented clip: values
    are bounded so that observation spaces stay bounded). ``low == high`` is a
    fixed value: every draw is ``low`` (the generator advances all the same).
    """
    if dist not in VALUE_DISTS:
        raise ConfigError(
            f"unknown value distribution {dist!r}; known: {', '.join(VALUE_DISTS)}"
        )
    if not (np.isfinite(low) and np.isfinite(high) and high >= low):
        raise ConfigError(
            f"value range must satisfy low <= high, got low={low!r}, high={high!r}"
        )
    if dist == "uniform":
        return rng.uniform(low, high, size=shape)
    if dist == "beta":
        return low + (high - low) * rng.beta(2.0, 2.0, size=shape)
    return np.clip(
        low + rng.lognormal(0.0, 0.5, size=shape) * (high - low) / 4.0, low, high
    )


def affiliated_units(u: NDArray[np.float64], common: float) -> NDArray[np.float64]:
    """Affiliated unit values ``w c + (1 - w) e_i`` from uniforms ``u [..., n + 1]``
    (column 0 the common ``c``, the others each buyer's ``e_i``; ``w = common``):
    the uniform source's ``common`` and the solver's ``common_noise`` law."""
    return common * u[..., :1] + (1.0 - common) * u[..., 1:]


SOBOL_MAX_DIM = 21_201
"Most dimensions scipy's Sobol sequence has (opponents beyond: Latin hypercube)."


def stratified_uniforms(
    dim: int, samples: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``[samples, dim]`` scrambled Sobol points (randomised quasi-Monte Carlo).

    Stratified jointly over all columns, not only column by column as a Latin
    hypercube is: the payoff of a bid depends on the opponents' order
    statistics, a joint quantity, and its error falls nearly as ``1 / samples``
    instead of ``1 / sqrt(samples)``.
    """
    from scipy.stats import qmc

    if dim > SOBOL_MAX_DIM:  # per column only: a Latin hypercube
        strata = [rng.permutation(samples) + rng.random(samples) for _ in range(dim)]
        return np.column_stack(strata) / samples
    with warnings.catch_warnings():
        # "balance properties" when samples is not a power of 2: a note, and the
        # first ``samples`` points of a scrambled sequence are still stratified
        warnings.simplefilter("ignore", UserWarning)
        return qmc.Sobol(dim, scramble=True, seed=rng).random(samples)
