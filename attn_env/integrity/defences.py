"""Mechanisms for manipulation experiments: random reserves, separate tie-breaks.

:func:`hardened` builds a registered mechanism whose tie-breaks (and a CDA's
arrival orders) come from its own seeded generator, never the environment's.
The environment's generator then draws only values and costs, so two markets
on one seed draw the same values whatever their bidders do: a shill's zero
bid tying with an empty seat's no longer shifts every later draw. That is what
common random numbers need; the outcome of each market is distributed as with
the plain mechanism.

With ``random_reserve=(low, high)`` the reserve is drawn ``U[low, high]`` afresh
for every round (one draw shared by the round's batch of markets, from a third
generator): a shill or ring cannot learn a fixed floor to bid against. Tie
randomisation needs no option: every mechanism breaks ties at random.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attn_env import mechanisms
from attn_env.checks import is_real
from attn_env.mechanisms import Mechanism

__all__ = ["hardened"]


def hardened(
    name: str,
    params: dict[str, Any],
    seed: int,
    random_reserve: tuple[float, float] | None = None,
) -> Mechanism:
    """Mechanism ``name`` with its own tie-break stream and an optional random reserve.

    Args:
        name: a registered mechanism (``attn_env.mechanisms.names()``).
        params: its keyword parameters (``reserve`` is replaced each round under
            ``random_reserve``).
        seed: seed of its tie-break and reserve generators.
        random_reserve: ``(low, high)`` with ``0 <= low <= high``, or ``None``.
    """
    base = mechanisms.mechanism_class(name)
    if random_reserve is not None:
        low, high = random_reserve
        if not (is_real(low) and is_real(high) and 0.0 <= low <= high):
            raise ValueError(
                f"random_reserve must be (low, high) with 0 <= low <= high, "
                f"got {random_reserve!r}"
            )
    reserves = np.random.default_rng([seed, 2])

    class Hardened(base):  # type: ignore[misc, valid-type]
        def _gen(self, rng: np.random.Generator | None) -> np.random.Generator:
            return self._rng  # never the env's stream: common random numbers

        def clear(self, *args: Any, **kwargs: Any) -> Any:
            if random_reserve is not None:
                self.reserve = float(reserves.uniform(*random_reserve))
            return super().clear(*args, **kwargs)

    Hardened.__name__ = Hardened.__qualname__ = base.__name__
    return Hardened(**{**params, "seed": seed})
