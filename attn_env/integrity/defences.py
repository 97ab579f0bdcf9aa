"""Mechanisms for manipulation experiments: random reserves, separate tie-breaks.

:func:`hardened` builds a registered mechanism whose tie-breaks (and a CDA's
arrival orders) come from its own seeded generator, never the environment's.
The environment's generator then draws only values and costs, so two markets
on one seed draw the same values whatever their bidders do: a shill's zero
bid tying with an empty seat's no longer shifts every later draw. That is what
common random numbers need; the outcome of each market is distributed as with
the plain mechanism.

With ``random_reserve=(low, high)`` every market of every round draws its own
reserve, uniform over :data:`LEVELS` levels spread evenly over ``[low, high]``
(from a third generator): a shill or ring cannot learn a fixed floor to bid
against. Tie
randomisation needs no option: every mechanism breaks ties at random.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import mechanisms
from attn_env.checks import is_real
from attn_env.errors import UserError
from attn_env.mechanisms import Mechanism, Outcome

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
            raise UserError(
                f"random_reserve must be (low, high) with 0 <= low <= high, "
                f"got {random_reserve!r}"
            )
    reserves = np.random.default_rng([seed, 2])

    class Hardened(base):  # type: ignore[misc, valid-type]
        def _gen(self, rng: np.random.Generator | None) -> np.random.Generator:
            return self._rng  # never the env's stream: common random numbers

        def clear(self, *args: Any, **kwargs: Any) -> Outcome:
            if random_reserve is None:
                return super().clear(*args, **kwargs)
            return _by_level(
                super().clear, args, kwargs, reserves, random_reserve, self
            )

    Hardened.__name__ = Hardened.__qualname__ = base.__name__
    return Hardened(**{**params, "seed": seed})


LEVELS = 8
"Reserve levels of a random reserve: midpoints of ``LEVELS`` equal bins."


def _by_level(
    clear: Any,
    args: tuple,
    kwargs: dict[str, Any],
    rng: np.random.Generator,
    bounds: tuple[float, float],
    mech: Mechanism,
) -> Outcome:
    """Clear each market at its own reserve, drawn from :data:`LEVELS` levels.

    The batch is split by level (at most ``LEVELS`` calls); every array argument
    with the batch as leading axis is split with it, and the outcomes are
    stitched back row by row.
    """
    B = np.asarray(args[0]).shape[0]
    low, high = bounds
    level = rng.integers(LEVELS, size=B)
    parts: list[tuple[NDArray[np.int64], Outcome]] = []
    for k in np.unique(level):
        rows = np.flatnonzero(level == k)

        def cut(x: Any, rows: NDArray[np.int64] = rows) -> Any:
            if isinstance(x, np.ndarray) and x.ndim >= 1 and x.shape[0] == B:
                return x[rows]
            return x

        mech.reserve = float(low + (high - low) * (k + 0.5) / LEVELS)
        out = clear(*map(cut, args), **{key: cut(v) for key, v in kwargs.items()})
        parts.append((rows, out))
    mech.reserve = float(low + high) / 2.0
    return _stitch(parts, B)


def _stitch(parts: list[tuple[NDArray[np.int64], Outcome]], B: int) -> Outcome:
    """One outcome of ``B`` rows from outcomes of row subsets."""

    def join(arrays: list[Any]) -> Any:
        if arrays[0] is None:
            return None
        first = np.asarray(arrays[0])
        out = np.empty((B, *first.shape[1:]), dtype=first.dtype)
        for (rows, _), a in zip(parts, arrays, strict=True):
            out[rows] = a
        return out

    outs = [o for _, o in parts]
    fields = {
        f.name: join([getattr(o, f.name) for o in outs])
        for f in dataclasses.fields(Outcome)
        if f.name != "extra"
    }
    extra = {k: join([o.extra[k] for o in outs]) for k in outs[0].extra}
    return Outcome(**fields, extra=extra)
