"""The ``uniform`` source: theta from a distribution, r = 1, alpha by position.

Every result of docs/design.md#known-answers is checked in this source. By
default every slot holds one unit of attention (alpha = 1); ``slot_weights``
gives the slots decaying click-through rates instead (an explicit list, or the
``dcg``, ``geometric`` and ``cascade`` curves of
:mod:`attn_env.valuations.positions`), the standard position-auction setting.
``common`` makes the buyers' values of one market affiliated (the solver's
``solve.prior: {kind: common_noise}``; the two are one setting).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attn_env.checks import is_real
from attn_env.errors import ConfigError
from attn_env.valuations.base import VALUE_DISTS, Draw, affiliated_units, draw_values
from attn_env.valuations.positions import PositionModel


class UniformSource:
    """theta ~ ``dist`` on ``[low, high]``; slot j holds ``alpha_j`` of attention.

    Args:
        dist: value distribution (``uniform``, ``beta``, ``lognormal``).
        low: bottom of the value range.
        high: top of the value range.
        slot_weights: the position model (``None``: every slot 1; see
            :class:`~attn_env.valuations.positions.PositionModel`).
        common: weight ``w`` in ``[0, 1)`` of a value shared by one market's
            buyers: ``theta_i = low + (high - low) (w c + (1 - w) e_i)`` with
            ``c`` and ``e_i`` independent ``U[0, 1]`` (affiliated values; 0:
            independent, drawn exactly as before). Uniform values only.
    """

    name = "uniform"

    def __init__(
        self,
        dist: str = "uniform",
        low: float = 0.0,
        high: float = 1.0,
        slot_weights: Any = None,
        common: float = 0.0,
    ) -> None:
        if dist not in VALUE_DISTS:
            raise ConfigError(
                f"unknown value distribution {dist!r}; known: {', '.join(VALUE_DISTS)}"
            )
        if not is_real(common) or not 0.0 <= common < 1.0:
            raise ConfigError(
                f"valuation_params.common must be a number in [0, 1), got {common!r}"
            )
        if common and dist != "uniform":
            raise ConfigError(
                f"valuation_params.common needs value_dist: uniform, got {dist!r}"
            )
        self.dist, self.low, self.high = dist, float(low), float(high)
        self.common = float(common)
        self.positions = PositionModel.parse(slot_weights)

    def draw(
        self, rng: np.random.Generator, batch: int, n_buyers: int, n_slots: int
    ) -> Draw:
        if self.common:
            unit = affiliated_units(rng.random((batch, n_buyers + 1)), self.common)
            theta = self.low + (self.high - self.low) * unit
        else:
            theta = draw_values(rng, (batch, n_buyers), self.dist, self.low, self.high)
        return Draw(
            theta=theta,
            relevance=np.ones((batch, n_buyers)),
            alpha=np.tile(self.positions.weights(n_slots), (batch, 1)),
        )
