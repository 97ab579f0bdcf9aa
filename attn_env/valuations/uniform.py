"""The ``uniform`` source: theta from a distribution, r = alpha = 1.

Every theoretical result of DESIGN.md section 7 is checked in this source.
"""

from __future__ import annotations

import numpy as np

from attn_env.valuations.base import VALUE_DISTS, Draw, draw_values


class UniformSource:
    """theta ~ ``dist`` on ``[low, high]``; every slot holds one unit of attention."""

    name = "uniform"

    def __init__(
        self, dist: str = "uniform", low: float = 0.0, high: float = 1.0
    ) -> None:
        if dist not in VALUE_DISTS:
            raise ValueError(
                f"unknown value distribution {dist!r}; known: {', '.join(VALUE_DISTS)}"
            )
        self.dist, self.low, self.high = dist, float(low), float(high)

    def draw(
        self, rng: np.random.Generator, batch: int, n_buyers: int, n_slots: int
    ) -> Draw:
        theta = draw_values(rng, (batch, n_buyers), self.dist, self.low, self.high)
        return Draw(
            theta=theta,
            relevance=np.ones((batch, n_buyers)),
            alpha=np.ones((batch, n_slots)),
        )
